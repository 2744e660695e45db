/* main.c: the device project's harness. Runs RCTC_MODEL_STEPS training steps of the model and
 * prints, one record a line (rctc parses these: native/device/run.py):
 *
 *   rctc model <name> arena_bytes <n> state_bytes <n>
 *   digest_init <8 hex>       the state digest after rctc_model_init()
 *   steps <first_step> <n>
 *   digest <8 hex>            the state digest after the n steps
 *   instructions <count>      executed by the n steps (only where the port counts them)
 *   rctc done
 *
 * Needs rctc_model.h (the model API) and rctc_port.h (console and counter). Only integer
 * arithmetic: no printf, so no float formatting code is linked.
 */
#include <stddef.h>
#include <stdint.h>

#include "rctc_model.h"
#include "rctc_port.h"

static void put(const char *text)
{
    size_t n = 0;
    while (text[n] != '\0') {
        n++;
    }
    rctc_port_write(text, n);
}

static void put_hex32(uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    char buf[8];
    int i;
    for (i = 7; i >= 0; i--) {
        buf[i] = digits[v & 0xFu];
        v >>= 4;
    }
    rctc_port_write(buf, sizeof buf);
}

static void put_u64(uint64_t v)
{
    char buf[20];
    int i = (int)sizeof buf;
    do {
        buf[--i] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    rctc_port_write(buf + i, sizeof buf - (size_t)i);
}

int main(void)
{
    uint64_t before;
    uint64_t after;

    rctc_port_init();
    put("rctc model " RCTC_MODEL_NAME " arena_bytes ");
    put_u64((uint64_t)RCTC_MODEL_ARENA_BYTES);
    put(" state_bytes ");
    put_u64((uint64_t)RCTC_MODEL_STATE_BYTES);
    put("\n");

    rctc_model_init();
    put("digest_init ");
    put_hex32(rctc_model_digest());
    put("\nsteps ");
    put_u64((uint64_t)RCTC_MODEL_FIRST_STEP);
    put(" ");
    put_u64((uint64_t)RCTC_MODEL_STEPS);
    put("\n");

    before = rctc_port_instructions();
    rctc_model_train_steps((uint32_t)RCTC_MODEL_FIRST_STEP, (uint32_t)RCTC_MODEL_STEPS);
    after = rctc_port_instructions();

    put("digest ");
    put_hex32(rctc_model_digest());
    put("\n");
    if (rctc_port_has_instruction_counter()) {
        put("instructions ");
        put_u64(after - before);
        put("\n");
    }
    put("rctc done\n");
    return 0;
}
