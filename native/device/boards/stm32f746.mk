# stm32f746.mk: a memory budget only (320 KB SRAM, 1 MB flash); no emulator runs it.
QEMU_MACHINE =
NS_PER_TICK = 40
ICOUNT_SHIFT = 6
