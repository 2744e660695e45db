/* port_cortex_m.c: the harness's console and instruction counter on a Cortex-M core.
 *
 * Needs newlib's rdimon (linked with --specs=rdimon.specs): write() goes out through Arm
 * semihosting, which QEMU prints with -semihosting-config enable=on,target=native.
 *
 * The counter is SysTick on the core clock (24-bit, wraps counted by SysTick_Handler). Under
 * QEMU with `-icount shift=S` the virtual clock advances exactly 2^S ns per executed
 * instruction, so SysTick ticks convert back to an exact instruction count:
 * instructions = ticks * RCTC_NS_PER_TICK / RCTC_NS_PER_INSN (rounded up). These are
 * instructions of the emulated core, not time: on a real chip the same counter counts core
 * cycles and the conversion does not apply. The board's makefile fragment defines both
 * constants (mps2-an386: core clock 25 MHz, 40 ns; shift 6, 64 ns).
 */
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include "rctc_port.h"

#ifndef RCTC_NS_PER_TICK
#define RCTC_NS_PER_TICK 40u
#endif
#ifndef RCTC_NS_PER_INSN
#define RCTC_NS_PER_INSN 64u
#endif

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_CSR_ENABLE 1u
#define SYST_CSR_TICKINT 2u
#define SYST_CSR_CLKSOURCE 4u
#define SYST_RELOAD 0x00FFFFFFu

extern void initialise_monitor_handles(void);

static volatile uint32_t systick_wraps;

void SysTick_Handler(void)
{
    systick_wraps++;
}

void rctc_port_init(void)
{
    initialise_monitor_handles();
    SYST_CSR = 0u;
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0u; /* any write clears the counter; it reloads on the next tick */
    systick_wraps = 0u;
    SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE;
}

void rctc_port_write(const char *text, size_t n)
{
    while (n > 0u) {
        ssize_t done = write(1, text, n);
        if (done <= 0) {
            return;
        }
        text += done;
        n -= (size_t)done;
    }
}

int rctc_port_has_instruction_counter(void)
{
    return 1;
}

uint64_t rctc_port_instructions(void)
{
    uint32_t wraps;
    uint32_t value;
    uint64_t ticks;
    do { /* a wrap between the two reads is taken as an interrupt before the re-check */
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    ticks = ((uint64_t)wraps << 24) + (uint64_t)(SYST_RELOAD - value);
    return (ticks * RCTC_NS_PER_TICK + (RCTC_NS_PER_INSN - 1u)) / RCTC_NS_PER_INSN;
}
