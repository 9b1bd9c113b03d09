// PSF_OMP_PARALLEL_FOR(clauses): an OpenMP parallel loop over disjoint ranges.
//
// ThreadSanitizer cannot see the barrier that ends an OpenMP region (Debian's
// libgomp is not instrumented) and reports every write made inside one and
// read after it. ThreadSanitizer builds (PSFORGE_SANITIZER=thread) therefore
// run these loops on one thread; they must only ever partition disjoint
// element ranges, which keeps them race-free by construction.
#pragma once

#define PSF_PRAGMA(x) _Pragma(#x)
#if defined(PSFORGE_TSAN)
#define PSF_OMP_PARALLEL_FOR(...)
#else
#define PSF_OMP_PARALLEL_FOR(...) PSF_PRAGMA(omp parallel for __VA_ARGS__)
#endif
