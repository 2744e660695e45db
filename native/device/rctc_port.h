/* rctc_port.h: what the harness needs from the platform, one implementation per target.
 *
 * port_cortex_m.c: semihosting output (newlib's rdimon) and an instruction counter that is
 * exact under QEMU's -icount (see there). port_host.c: stdout, and no counter.
 */
#ifndef RCTC_PORT_H
#define RCTC_PORT_H

#include <stddef.h>
#include <stdint.h>

/* Prepare output and start the counter. Called once, before anything else. */
void rctc_port_init(void);

/* Write n bytes of text to the console (semihosting on the device, stdout on the host). */
void rctc_port_write(const char *text, size_t n);

/* 1 when rctc_port_instructions() counts executed instructions, 0 when there is no counter. */
int rctc_port_has_instruction_counter(void);

/* Instructions executed since rctc_port_init() (0 without a counter). */
uint64_t rctc_port_instructions(void);

#endif /* RCTC_PORT_H */
