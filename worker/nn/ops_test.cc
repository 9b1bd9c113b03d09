// The op-test harness: every case in op_cases.cc, forward and backward
// against its naive reference, and backward against finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "worker/nn/op_cases.h"

namespace psforge::nn {
namespace {

double RelErr(double a, double b) { return std::abs(a - b) / (1.0 + std::abs(b)); }

void ExpectClose(const Vec& got, const Vec& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << "[" << i << "]";
    double e = RelErr(got[i], want[i]);
    if (e > worst) worst = e, at = i;
  }
  EXPECT_LE(worst, tol) << what << "[" << at << "]: " << got[at] << " vs " << want[at];
}

class OpTest : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpTest, ForwardMatchesReference) {
  auto op = GetParam().make(1);
  ExpectClose(op->Forward(), op->ReferenceForward(), GetParam().forward_tol, "forward");
}

TEST_P(OpTest, BackwardMatchesReference) {
  auto op = GetParam().make(2);
  std::mt19937_64 rng(3);
  Vec dy = op->Forward();
  for (float& v : dy) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  std::vector<Vec> got = op->Backward(dy);
  auto want = op->ReferenceBackward(dy);
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t k = 0; k < got.size(); ++k)
    ExpectClose(got[k], want[k], GetParam().backward_tol, "gradient of input " + std::to_string(k));
}

TEST_P(OpTest, BackwardMatchesFiniteDifferences) {
  const OpCase& c = GetParam();
  auto op = c.make(4);
  std::mt19937_64 rng(5);
  Vec dy = op->Forward();
  for (float& v : dy) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  std::vector<Vec> grads = op->Backward(dy);
  auto objective = [&] {
    const Vec& y = op->Forward();
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i) s += double(y[i]) * dy[i];
    return s;
  };
  for (std::size_t k = 0; k < grads.size(); ++k) {
    if (grads[k].empty()) continue;  // not computed by this case (first-layer input)
    Vec& input = op->inputs()[k];
    // Up to 40 sampled elements per input keeps the large cases fast.
    for (int sample = 0; sample < 40; ++sample) {
      std::size_t i = input.size() <= 40 ? sample : rng() % input.size();
      if (i >= input.size()) break;
      float saved = input[i];
      input[i] = saved + static_cast<float>(c.fd_eps);
      double plus = objective();
      input[i] = saved - static_cast<float>(c.fd_eps);
      double minus = objective();
      input[i] = saved;
      double fd = (plus - minus) / (2 * c.fd_eps);
      EXPECT_LE(RelErr(grads[k][i], fd), c.fd_tol)
          << "input " << k << "[" << i << "]: analytic " << grads[k][i] << " vs finite difference " << fd;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllLayers, OpTest, ::testing::ValuesIn(AllOpCases()),
                         [](const auto& param_info) { return param_info.param.name; });

}  // namespace
}  // namespace psforge::nn
