# mps2-an386.mk: what the Makefile needs to know about the board beyond its linker script.
# QEMU runs it (-M mps2-an386); its core clock, which SysTick counts, is 25 MHz (40 ns a tick);
# with -icount shift=6 every executed instruction advances QEMU's virtual clock 64 ns.
QEMU_MACHINE = mps2-an386
NS_PER_TICK = 40
ICOUNT_SHIFT = 6
