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

#include "worker/nn/dnnl_util.h"
#include "worker/nn/layout_harness.h"
#include "worker/nn/norm.h"

namespace psforge::nn {
namespace {

// Evaluation's statistics are the average over the statistics passes of
// each batch's mean and unbiased variance, and inference normalises with them.
TEST(BatchNormStatistics, InferenceUsesTheAveragedBatchStatistics) {
  DnnlContext ctx;
  const int64_t n = 4, c = 2, hw = 3;
  BatchNorm bn(&ctx, c, 1, hw);
  Vec scale{1.5f, 0.5f}, shift{0.25f, -1.0f}, dscale(c), dshift(c);
  bn.Bind(scale.data(), shift.data(), dscale.data(), dshift.data());
  LayoutHarness io(&ctx, &bn, n, c, 1, hw, InputLayout::kPlain);
  std::mt19937_64 rng(8);
  std::vector<double> mean(c), var(c);
  Vec y(n * c * hw);
  bn.BeginStatistics();
  for (int batch = 0; batch < 3; ++batch) {
    Vec x = Random(rng, n * c * hw, -1.0f + batch, 2.0f + batch);
    io.Forward(x, y, Pass::kStatistics);
    for (int64_t ch = 0; ch < c; ++ch) {
      double s = 0, s2 = 0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < hw; ++j) s += x[(i * c + ch) * hw + j];
      double m = s / (n * hw);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < hw; ++j) s2 += std::pow(x[(i * c + ch) * hw + j] - m, 2);
      mean[ch] += m / 3;
      var[ch] += s2 / (n * hw - 1) / 3;
    }
  }
  bn.EndStatistics();
  for (int64_t ch = 0; ch < c; ++ch) {
    EXPECT_NEAR(bn.mean()[ch], mean[ch], 1e-5);
    EXPECT_NEAR(bn.variance()[ch], var[ch], 1e-5);
  }
  Vec x = Random(rng, n * c * hw, -3, 3);
  io.Forward(x, y, Pass::kInference);
  for (std::size_t i = 0; i < x.size(); ++i) {
    int64_t ch = static_cast<int64_t>(i) / hw % c;
    double want = scale[ch] * (x[i] - mean[ch]) / std::sqrt(var[ch] + BatchNorm::kEpsilon) + shift[ch];
    EXPECT_NEAR(y[i], want, 1e-4) << i;
  }
}

TEST(DropoutOutsideTraining, PassesValuesThrough) {
  DnnlContext ctx;
  Dropout d(&ctx, 0.5, 10, 1);
  d.Prepare(3, Tensor(3, 10, 0, 0));
  std::mt19937_64 rng(9);
  Vec x = Random(rng, 30, -1, 1), y(30);
  for (Pass p : {Pass::kInference, Pass::kStatistics}) {
    d.Forward(x.data(), y.data(), 3, p);
    EXPECT_EQ(y, x);
  }
}

}  // namespace
}  // namespace psforge::nn
