/* linear_sgd.c: a test fixture implementing rctc_model.h, a small integer training program.
 *
 * A linear model y = (W x + b) >> 4 with int16 weights, trained by integer SGD on the samples
 * of rctc_data.c (sample step % SAMPLES at each step): error clipped to int8, weight update
 * floor((err * x + r) / 64) with r a 6-bit random offset (stochastic rounding), bias update
 * floor((err + r') / 4), weights clipped to [-2048, 2047]. The random offsets come from a
 * counter-based hash of (seed, step, element), so any step range gives the same bits. The
 * digest is CRC-32 over W (int16, little-endian) then b (int32, little-endian).
 * tests/native/test_device.py computes the same in int64 numpy. With SGD_FLOAT_LR defined the
 * update goes through a float learning rate (for the float-helper check); with SGD_BIG_TABLE
 * the initial bias also adds one element of the (all-zero) const array big_table, so the array
 * is linked (for the flash fit check); with SGD_FAULT the first step executes an undefined
 * instruction (for the fault handler).
 */
#include <stdint.h>

#include "rctc_data.h"
#include "rctc_model.h"

#define IN 8
#define OUT 4
#define SAMPLES (RCTC_DATA_SGD_X_LEN / IN)
#define W_MIN (-2048)
#define W_MAX 2047

struct sgd_state {
    int16_t w[OUT * IN];
    int32_t b[OUT];
};

union sgd_state_block {
    int64_t align;
    struct sgd_state s;
};

union sgd_arena_block {
    int64_t align;
    uint8_t bytes[RCTC_MODEL_ARENA_BYTES];
};

typedef char sgd_state_size_check[(sizeof(struct sgd_state) == RCTC_MODEL_STATE_BYTES) ? 1 : -1];
typedef char sgd_arena_size_check[(RCTC_MODEL_ARENA_BYTES >= 2 * OUT * sizeof(int32_t)) ? 1 : -1];

union sgd_state_block rctc_state;
union sgd_arena_block rctc_arena;

static int32_t asr(int32_t v, int s) /* floor(v / 2^s), portable for negative v */
{
    return v >= 0 ? (v >> s) : -(int32_t)(((uint32_t)(-(v + 1)) >> s) + 1u);
}

static int32_t clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static uint32_t mix(uint32_t step, uint32_t j) /* murmur3's finaliser of a keyed counter */
{
    uint32_t h = sgd_seed[0] ^ (step * 0x9E3779B1u) ^ (j * 0x85EBCA77u);
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

void rctc_model_init(void)
{
    int k;
    for (k = 0; k < OUT * IN; k++) {
        rctc_state.s.w[k] = sgd_w0[k];
    }
    for (k = 0; k < OUT; k++) {
        rctc_state.s.b[k] = sgd_b0[k];
    }
#ifdef SGD_BIG_TABLE
    rctc_state.s.b[0] += big_table[sgd_seed[0] % RCTC_DATA_BIG_TABLE_LEN];
#endif
}

static void train_step(uint32_t step)
{
    int32_t *acc = (int32_t *)(void *)rctc_arena.bytes;
    int32_t *err = acc + OUT;
    const int8_t *x = &sgd_x[(step % SAMPLES) * IN];
    const int16_t *y = &sgd_y[(step % SAMPLES) * OUT];
    int o;
    int i;
#ifdef SGD_FAULT
    __asm__ volatile(".inst.n 0xde00"); /* udf #0 */
#endif
    for (o = 0; o < OUT; o++) {
        int32_t a = rctc_state.s.b[o];
        for (i = 0; i < IN; i++) {
            a += (int32_t)rctc_state.s.w[o * IN + i] * (int32_t)x[i];
        }
        acc[o] = a;
        err[o] = clamp(asr(a, 4) - (int32_t)y[o], -127, 127);
    }
    for (o = 0; o < OUT; o++) {
        for (i = 0; i < IN; i++) {
            uint32_t r = mix(step, (uint32_t)(o * IN + i));
            int32_t g = err[o] * (int32_t)x[i];
#ifdef SGD_FLOAT_LR
            volatile float lr = 1.0f;
            g = (int32_t)(lr * (float)g);
#endif
            int32_t w = (int32_t)rctc_state.s.w[o * IN + i] - asr(g + (int32_t)(r & 63u), 6);
            rctc_state.s.w[o * IN + i] = (int16_t)clamp(w, W_MIN, W_MAX);
        }
        {
            uint32_t r = mix(step, (uint32_t)(OUT * IN + o));
            rctc_state.s.b[o] -= asr(err[o] + (int32_t)(r & 3u), 2);
        }
    }
}

void rctc_model_train_steps(uint32_t first_step, uint32_t n)
{
    uint32_t t;
    for (t = 0; t < n; t++) {
        train_step(first_step + t);
    }
}

static uint32_t crc32_update(uint32_t crc, uint8_t byte)
{
    int k;
    crc ^= byte;
    for (k = 0; k < 8; k++) {
        crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc;
}

uint32_t rctc_model_digest(void)
{
    uint32_t crc = 0xFFFFFFFFu;
    int k;
    for (k = 0; k < OUT * IN; k++) {
        uint16_t v = (uint16_t)rctc_state.s.w[k];
        crc = crc32_update(crc, (uint8_t)(v & 0xFFu));
        crc = crc32_update(crc, (uint8_t)(v >> 8));
    }
    for (k = 0; k < OUT; k++) {
        uint32_t v = (uint32_t)rctc_state.s.b[k];
        crc = crc32_update(crc, (uint8_t)(v & 0xFFu));
        crc = crc32_update(crc, (uint8_t)((v >> 8) & 0xFFu));
        crc = crc32_update(crc, (uint8_t)((v >> 16) & 0xFFu));
        crc = crc32_update(crc, (uint8_t)(v >> 24));
    }
    return crc ^ 0xFFFFFFFFu;
}
