/* port_host.c: the harness's console on the host (stdout); the host has no instruction counter
 * (rctc never reports host time as instructions). Plain C99. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rctc_port.h"

void rctc_port_init(void)
{
}

void rctc_port_write(const char *text, size_t n)
{
    fwrite(text, 1, n, stdout);
    fflush(stdout);
}

int rctc_port_has_instruction_counter(void)
{
    return 0;
}

uint64_t rctc_port_instructions(void)
{
    return 0u;
}
