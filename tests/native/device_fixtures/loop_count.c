/* loop_count.c: a test fixture implementing rctc_model.h whose "training step" is a loop of a
 * known instruction count, to check the harness's instruction counter.
 *
 * rctc_model_train_steps(first, n) runs LOOP_ITERATIONS * n iterations of a two-instruction
 * Thumb loop (subs; bne), so the n steps execute 2 * LOOP_ITERATIONS * n instructions plus a
 * constant call overhead. The digest is the number of iterations run (a cross-check that the
 * loop ran). LOOP_ITERATIONS comes from rctc_model_config.h.
 */
#include <stdint.h>

#include "rctc_model.h"

union loop_block {
    int64_t align;
    uint8_t bytes[RCTC_MODEL_ARENA_BYTES];
};

union loop_block rctc_arena;
uint32_t rctc_state[1];

void rctc_model_init(void)
{
    rctc_state[0] = 0u;
}

void rctc_model_train_steps(uint32_t first_step, uint32_t n)
{
    uint32_t count = (uint32_t)LOOP_ITERATIONS * n;
    (void)first_step;
    if (count == 0u) {
        return;
    }
    rctc_state[0] += count;
#if defined(__thumb__)
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(count) : : "cc");
#else
    while (count != 0u) {
        count--;
    }
#endif
}

uint32_t rctc_model_digest(void)
{
    return rctc_state[0];
}
