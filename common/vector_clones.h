// PSF_VECTOR_CLONES: compile a hot loop three times, for AVX-512
// (x86-64-v4), AVX2 with FMA (x86-64-v3) and the baseline, and pick the
// widest the CPU has when the program loads (GCC's target_clones, an ifunc).
//
// psforge is built for the x86-64 baseline by default, so one binary runs on
// every node of a cluster (a build shared over NFS, or copied, must not die
// with SIGILL on an older CPU); oneDNN dispatches its own kernels at run
// time, and our few loops over whole key ranges (optimizers, a server's
// sums and checks) carry this attribute. -ffp-contract=off keeps every
// clone's results the same bits as the others'.
//
// Not under ThreadSanitizer (PSFORGE_TSAN): the ifunc resolver GCC emits is
// instrumented too, and runs while the dynamic loader relocates the program,
// before the TSan runtime is up: every binary with a clone crashed at load.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(PSFORGE_TSAN)
#define PSF_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PSF_VECTOR_CLONES
#endif
