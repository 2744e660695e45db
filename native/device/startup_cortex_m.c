/* startup_cortex_m.c: reset and vector table for an Armv7-M / Armv7E-M core (linked with
 * -nostartfiles: nothing of crt0 runs).
 *
 * Needs the symbols of boards/sections.ld (_sidata, _sdata, _edata, _sbss, _ebss, _estack).
 * Leaves: .data copied from flash, .bss zeroed, then main()'s return value passed to exit(),
 * which newlib's rdimon turns into a semihosting exit (QEMU ends with that status). A fault
 * prints one line and exits with status 70, so a broken image never hangs the emulator.
 */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

extern uint32_t _sidata;
extern uint32_t _sdata;
extern uint32_t _edata;
extern uint32_t _sbss;
extern uint32_t _ebss;
extern uint32_t _estack;

extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Fault_Handler(void);
void NMI_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Fault_Handler")));
void IRQ_Handler(void) __attribute__((weak, alias("Fault_Handler")));

typedef void (*vector_t)(void);

#define RCTC_EXTERNAL_IRQS 32 /* mps2-an386 has 32; a larger board may list more */
#define IRQ4 IRQ_Handler, IRQ_Handler, IRQ_Handler, IRQ_Handler

__attribute__((section(".isr_vector"), used))
const vector_t rctc_vector_table[16 + RCTC_EXTERNAL_IRQS] = {
    (vector_t)(uintptr_t)&_estack, /* initial stack pointer */
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0, 0, 0, 0,
    SVC_Handler,
    DebugMon_Handler,
    0,
    PendSV_Handler,
    SysTick_Handler,
    IRQ4, IRQ4, IRQ4, IRQ4, IRQ4, IRQ4, IRQ4, IRQ4,
};

void Reset_Handler(void)
{
    const uint32_t *src = &_sidata;
    uint32_t *dst;
    for (dst = &_sdata; dst < &_edata; dst++) {
        *dst = *src++;
    }
    for (dst = &_sbss; dst < &_ebss; dst++) {
        *dst = 0u;
    }
    exit(main());
}

void Fault_Handler(void)
{
    static const char msg[] = "rctc fault: the core took an exception it has no handler for\n";
    initialise_monitor_handles();
    write(2, msg, sizeof msg - 1u);
    _exit(70);
}
