/*
 * cpu_probe.c - this core's clock and its int8 multiply-add instruction rates, measured.
 *
 * Needs: an x86-64 CPU with AVX2, GCC or Clang (inline assembly); built by native_gemm.py with
 * the system compiler (-O2 -mavx2). Leaves: one "name value" line per measurement on stdout.
 *
 * Each figure is the best of many short runs (about 0.1 ms each) of a fixed instruction
 * sequence, timed with CLOCK_MONOTONIC: on a shared machine a run that the OS interrupts is
 * slower, never faster, so the best run is the undisturbed one.
 *   ghz              4 dependent 64-bit register-register adds per loop trip: 1 add per cycle
 *                    (latency 1), so adds per nanosecond is the clock in GHz. (Add-immediate chains
 *                    are no use: Golden Cove class cores fold them at rename, 14 "GHz" measured.)
 *   vpmaddwd         10 independent vpmaddwd ymm chains: instructions per ns (16 exact MACs each).
 *   vpmaddwd_vpaddd  vpmaddwd ymm + vpaddd into 10 accumulators, the exact int8 GEMM's inner
 *                    step: pairs per ns.
 *   vpmaddubsw       10 independent vpmaddubsw ymm chains: per ns (32 MACs each, saturating).
 * Built with the AVX-512 VNNI flags (-mavx512f -mavx512bw -mavx512vl -mavx512vnni; native_gemm.py
 * adds them when /proc/cpuinfo lists avx512_vnni), also the exact (non-saturating) VNNI steps,
 * each 16 independent accumulator chains (the instruction adds into its destination):
 *   vpdpbusd_zmm     vpdpbusd zmm: per ns (64 u8 x s8 MACs each, exact int32 sums).
 *   vpdpwssd_zmm     vpdpwssd zmm: per ns (32 s16 x s16 MACs each).
 *   vpdpbusd_ymm     vpdpbusd ymm: per ns (32 MACs each; whether 512-bit ops issue at half rate).
 * (native_gemm.py divides the rates by the clock: instructions per cycle.)
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define TRIPS 25000L
#define RUNS 2000

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define X10(S) S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9)
#define OPS_OUT [c0] "+x"(c0), [c1] "+x"(c1), [c2] "+x"(c2), [c3] "+x"(c3), [c4] "+x"(c4), \
    [c5] "+x"(c5), [c6] "+x"(c6), [c7] "+x"(c7), [c8] "+x"(c8), [c9] "+x"(c9)
#define MADD(i) "vpmaddwd %[b], %[c" #i "], %[c" #i "]\n\t"
#define MADDUBS(i) "vpmaddubsw %[b], %[c" #i "], %[c" #i "]\n\t"
#define DPBUSD(i) "vpdpbusd %[b], %[a], %[c" #i "]\n\t"
#define DPWSSD(i) "vpdpwssd %[b], %[a], %[c" #i "]\n\t"
#define PAIR(i) "vpmaddwd %[b], %[a], %[t]\n\tvpaddd %[t], %[c" #i "], %[c" #i "]\n\t"

/* Best seconds of one run of TRIPS trips of the sequence chosen by kind. */
static double best_run(int kind) {
    double best = 1e30;
    for (int r = 0; r < RUNS; ++r) {
        __m256i c0 = _mm256_set1_epi16(1), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0,
                c9 = c0, t, a = c0, b = c0;
        unsigned long x = 0, one = (unsigned long)r | 1u; /* a register operand: no immediate folding */
        const double t0 = now();
        for (long i = 0; i < TRIPS; ++i) {
            if (kind == 0)
                __asm__ volatile("add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0" : "+r"(x) : "r"(one));
            else if (kind == 1)
                __asm__ volatile(X10(MADD) : OPS_OUT : [b] "x"(b));
            else if (kind == 2)
                __asm__ volatile(X10(PAIR) : OPS_OUT, [t] "=&x"(t) : [a] "x"(a), [b] "x"(b));
            else
                __asm__ volatile(X10(MADDUBS) : OPS_OUT : [b] "x"(b));
        }
        const double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

#ifdef __AVX512VNNI__
/* The VNNI instructions: 16 independent accumulators (10 are too few to cover their latency),
 * named registers (an asm has at most 30 operands); the sources' contents do not matter.
 * kind 0 vpdpbusd zmm, 1 vpdpwssd zmm, 2 vpdpbusd ymm. */
#define X16(S) S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9) S(10) S(11) S(12) S(13) S(14) S(15)
#define DPBUSD_Z(i) "vpdpbusd %%zmm30, %%zmm31, %%zmm" #i "\n\t"
#define DPWSSD_Z(i) "vpdpwssd %%zmm30, %%zmm31, %%zmm" #i "\n\t"
#define DPBUSD_Y(i) "vpdpbusd %%ymm30, %%ymm31, %%ymm" #i "\n\t"
#define CLOBBER16 "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
    "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
static double best_run_vnni(int kind) {
    double best = 1e30;
    for (int r = 0; r < RUNS; ++r) {
        const double t0 = now();
        for (long i = 0; i < TRIPS; ++i) {
            if (kind == 0)
                __asm__ volatile(X16(DPBUSD_Z) ::: CLOBBER16);
            else if (kind == 1)
                __asm__ volatile(X16(DPWSSD_Z) ::: CLOBBER16);
            else
                __asm__ volatile(X16(DPBUSD_Y) ::: CLOBBER16);
        }
        const double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}
#endif

int main(void) {
    const char *names[] = {"ghz", "vpmaddwd", "vpmaddwd_vpaddd", "vpmaddubsw"};
    for (int kind = 0; kind <= 3; ++kind)
        printf("%s %.4f\n", names[kind], (kind ? 10.0 : 4.0) * (double)TRIPS / best_run(kind) / 1e9);
#ifdef __AVX512VNNI__
    const char *vnni[] = {"vpdpbusd_zmm", "vpdpwssd_zmm", "vpdpbusd_ymm"};
    for (int kind = 0; kind <= 2; ++kind) printf("%s %.4f\n", vnni[kind], 16.0 * (double)TRIPS / best_run_vnni(kind) / 1e9);
#endif
    return 0;
}
