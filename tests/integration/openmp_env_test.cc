// ps-worker and ps-server bound OpenMP's idle spin (common/openmp_env.h):
// started with neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT, the process runs
// with GOMP_SPINCOUNT=10000 (set before libgomp loads: it starts itself
// again, keeping its pid); a user's own setting is kept as it is.
#include <gtest/gtest.h>

#include <string>

#include "tests/support/subprocess.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;

std::string Probe(const std::vector<std::string>& env) {
  std::vector<std::string> argv{"/usr/bin/env", "-u", "GOMP_SPINCOUNT", "-u", "OMP_WAIT_POLICY"};
  argv.insert(argv.end(), env.begin(), env.end());
  argv.push_back(testing::BinPath("openmp_env_probe"));
  auto r = testing::RunProcess(argv, 30s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

TEST(OpenMpEnv, AClusterProcessBoundsTheSpinUnlessTheUserChose) {
  EXPECT_EQ(Probe({}).rfind("GOMP_SPINCOUNT=10000 OMP_WAIT_POLICY=unset pid=", 0), 0u) << Probe({});
  EXPECT_EQ(Probe({"GOMP_SPINCOUNT=5"}).rfind("GOMP_SPINCOUNT=5 OMP_WAIT_POLICY=unset", 0), 0u);
  EXPECT_EQ(Probe({"OMP_WAIT_POLICY=passive"}).rfind("GOMP_SPINCOUNT=unset OMP_WAIT_POLICY=passive", 0), 0u);
}

}  // namespace
}  // namespace psforge
