/* rctc_model.h: the model API a device project's harness calls.
 *
 * Needs: rctc_model_config.h, written by rctc into the project's src/ folder, defining
 *   RCTC_MODEL_NAME         the model's name (a string literal)
 *   RCTC_MODEL_ARENA_BYTES  bytes of the static arena (the memory plan's peak)
 *   RCTC_MODEL_STATE_BYTES  bytes of the training state (parameters, exponents, slots)
 *   RCTC_MODEL_FIRST_STEP   the step counter of the first step the harness runs
 *   RCTC_MODEL_STEPS        how many training steps the harness runs
 *
 * The generated code (or a test fixture) implements the three functions below and defines
 * two objects with external linkage, of any type and exactly these sizes:
 *   rctc_arena  RCTC_MODEL_ARENA_BYTES bytes: every tensor of a step is an offset in it
 *   rctc_state  RCTC_MODEL_STATE_BYTES bytes: the whole trainable state, in RAM
 * rctc reads both sizes back from the linked image's symbol table, so the reported arena is the
 * one the linker placed, not a number copied from the plan. No malloc, no float in an
 * integer-only graph (the soft-float image is checked for float helpers).
 */
#ifndef RCTC_MODEL_H
#define RCTC_MODEL_H

#include <stdint.h>

#include "rctc_model_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Load the initial state (from the const data in flash) into rctc_state. Called once, first. */
void rctc_model_init(void);

/* Run training steps first_step .. first_step + n - 1 in order. The step counter keys the
 * random number generator (stochastic rounding) and picks the step's samples, so running
 * (0, 3) equals running (0, 1), (1, 1), (2, 1). */
void rctc_model_train_steps(uint32_t first_step, uint32_t n);

/* The digest of the current state: CRC-32 (IEEE 802.3, as zlib.crc32) over the state in the
 * record format of rctc/digest.py. The host computes the same value from its trained state. */
uint32_t rctc_model_digest(void);

#ifdef __cplusplus
}
#endif

#endif /* RCTC_MODEL_H */
