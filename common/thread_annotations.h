// Clang's thread-safety annotations (-Wthread-safety): which mutex guards a
// field, which a function needs held. They make locking a compile-time
// contract instead of a comment; the clang build (scripts/fuzz.sh, in CI)
// turns a violation into an error. Other compilers ignore them.
//
// libstdc++'s std::mutex carries no annotations: annotated state is
// guarded by psforge::Mutex (common/mutex.h).
#pragma once

#if defined(__clang__)
#define PSF_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define PSF_THREAD_ANNOTATION(x)
#endif

#define PSF_CAPABILITY(x) PSF_THREAD_ANNOTATION(capability(x))
#define PSF_SCOPED_CAPABILITY PSF_THREAD_ANNOTATION(scoped_lockable)
#define PSF_GUARDED_BY(x) PSF_THREAD_ANNOTATION(guarded_by(x))
#define PSF_PT_GUARDED_BY(x) PSF_THREAD_ANNOTATION(pt_guarded_by(x))
#define PSF_REQUIRES(...) PSF_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define PSF_EXCLUDES(...) PSF_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define PSF_ACQUIRE(...) PSF_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define PSF_RELEASE(...) PSF_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define PSF_RETURN_CAPABILITY(x) PSF_THREAD_ANNOTATION(lock_returned(x))
#define PSF_NO_THREAD_SAFETY_ANALYSIS PSF_THREAD_ANNOTATION(no_thread_safety_analysis)
