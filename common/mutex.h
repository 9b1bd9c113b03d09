// Mutex, MutexLock and CondVar: std::mutex, std::lock_guard and
// std::condition_variable with clang's thread-safety annotations
// (common/thread_annotations.h), so that the compiler checks that every
// PSF_GUARDED_BY(mu_) field is touched with mu_ held. Waits take a
// deadline: CondVar has no wait without one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "common/thread_annotations.h"

namespace psforge {

class PSF_CAPABILITY("mutex") Mutex {
 public:
  void Lock() PSF_ACQUIRE() { mu_.lock(); }
  void Unlock() PSF_RELEASE() { mu_.unlock(); }
  // Tells the analysis what a caller's lock already ensures.
  void AssertHeld() const PSF_THREAD_ANNOTATION(assert_capability(this)) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

class PSF_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) PSF_ACQUIRE(mu) : mu_(mu) { mu_.Lock(); }
  ~MutexLock() PSF_RELEASE() { mu_.Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

class CondVar {
 public:
  using Clock = std::chrono::steady_clock;

  // Releases `mu` until notified or `deadline`, then holds it again; false
  // once the deadline has passed. Callers loop on their condition.
  bool WaitUntil(Mutex& mu, Clock::time_point deadline) PSF_REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    const bool notified = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();  // still held: the caller's
    return notified || Clock::now() < deadline;
  }
  template <class Rep, class Period>
  bool WaitFor(Mutex& mu, std::chrono::duration<Rep, Period> limit) PSF_REQUIRES(mu) {
    return WaitUntil(mu, Clock::now() + std::chrono::duration_cast<Clock::duration>(limit));
  }
  void NotifyAll() { cv_.notify_all(); }
  void NotifyOne() { cv_.notify_one(); }

 private:
  std::condition_variable cv_;
};

}  // namespace psforge
