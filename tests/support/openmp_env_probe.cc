// openmp_env_probe: starts as ps-worker and ps-server do (common/openmp_env.h)
// and prints the OpenMP settings it then runs with, and its pid:
//   GOMP_SPINCOUNT=<value or unset> OMP_WAIT_POLICY=<value or unset> pid=<pid>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "common/openmp_env.h"

int main(int, char** argv) {
  psforge::BoundOpenMpSpinning(argv);
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  std::printf("GOMP_SPINCOUNT=%s OMP_WAIT_POLICY=%s pid=%d\n", spin ? spin : "unset", policy ? policy : "unset",
              static_cast<int>(::getpid()));
  return 0;
}
