// How long a cluster process's idle OpenMP threads spin before they sleep.
//
// libgomp's idle threads spin 300,000 rounds (GOMP_SPINCOUNT) after each
// parallel region before they sleep. A worker or server waits on the network
// between its compute bursts, and on a node whose cores it shares with the
// other processes of the job, that spinning takes the core the server, the
// other worker or ZeroMQ's I/O thread needs: configs/ctr_synthetic.yaml
// through 1 worker (2 threads) + 1 server on 2 cores ran at 61-86k samples/s
// with the default spin, 94-98k with 10,000 rounds, 81-86k with no spin at all
// (OMP_WAIT_POLICY=passive, which pays a futex wake-up every region);
// bench/RESULTS.md has the measurement. ps-train keeps libgomp's default: it
// has the cores to itself.
//
// libgomp reads its settings when it is loaded, before main, so the process
// sets the variable and starts its own executable again (the same pid and
// arguments; the path /proc/self/exe names, so that under valgrind, which
// answers with its client's path, the program and not the tool starts).
// A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT is left as it is.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace psforge {

inline constexpr const char* kClusterSpinCount = "10000";

// Call first thing in main: returns only if nothing needs changing or the
// new start failed (then the process goes on with libgomp's default).
inline void BoundOpenMpSpinning(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) return;
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return;
  self[n] = '\0';
  if (::setenv("GOMP_SPINCOUNT", kClusterSpinCount, 1) != 0) return;
  ::execv(self, argv);
  std::fprintf(stderr, "%s: could not start again with GOMP_SPINCOUNT=%s (%s); OpenMP's idle threads spin as long "
               "as libgomp's default\n", argv[0], kClusterSpinCount, std::strerror(errno));
}

}  // namespace psforge
