// Each optimizer against steps computed by hand from torch.optim's definitions.
#include "paramserver/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>

#include <vector>

namespace psforge {
namespace {

std::unique_ptr<Optimizer> Make(OptimizerOptions o, int64_t size) {
  auto r = Optimizer::Create(o, size);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(r).value();
}

OptimizerOptions Options(OptimizerKind kind, double lr) {
  OptimizerOptions o;
  o.kind = kind;
  o.learning_rate = lr;
  if (kind == OptimizerKind::kAdaGrad) o.epsilon = 1e-10;
  return o;
}

TEST(Sgd, StepIsLearningRateTimesGradient) {
  auto opt = Make(Options(OptimizerKind::kSgd, 0.1), 2);
  std::vector<float> w{1, -2}, g{0.5, 1};
  opt->Apply(w, g);
  EXPECT_FLOAT_EQ(w[0], 0.95f);
  EXPECT_FLOAT_EQ(w[1], -2.1f);
  EXPECT_EQ(opt->steps(), 1);
}

TEST(Sgd, LearningRateDecaysExponentiallyWithTheUpdateCount) {
  auto o = Options(OptimizerKind::kSgd, 0.1);
  o.lr_schedule = LrSchedule::kExponential;
  o.lr_decay_rate = 0.25;
  o.lr_decay_steps = 2;
  auto opt = Make(o, 1);
  std::vector<float> w{0}, g{1};
  for (double want_lr : {0.1, 0.05, 0.025}) {  // 0.1 * 0.25^(t/2), t = 0, 1, 2
    EXPECT_DOUBLE_EQ(opt->LearningRate(), want_lr);
    float before = w[0];
    opt->Apply(w, g);
    EXPECT_NEAR(before - w[0], want_lr, 1e-7);
  }
}

// As torch.optim.lr_scheduler.CosineAnnealingLR(T_max=4, eta_min=0.01)
// stepped after every update, then flat at eta_min.
TEST(Sgd, CosineScheduleFallsAlongHalfACosineToItsMinimum) {
  auto o = Options(OptimizerKind::kSgd, 0.1);
  o.lr_schedule = LrSchedule::kCosine;
  o.lr_min = 0.01;
  o.lr_schedule_steps = 4;
  auto opt = Make(o, 1);
  std::vector<float> w{0}, g{1};
  const double s2 = 0.5 * std::sqrt(2.0);
  for (double want_lr : {0.1, 0.01 + 0.045 * (1 + s2), 0.055, 0.01 + 0.045 * (1 - s2), 0.01, 0.01}) {
    EXPECT_NEAR(opt->LearningRate(), want_lr, 1e-12);
    float before = w[0];
    opt->Apply(w, g);
    EXPECT_NEAR(before - w[0], want_lr, 1e-7);
  }
}

TEST(Sgd, WeightDecayAddsL2Term) {
  auto o = Options(OptimizerKind::kSgd, 0.1);
  o.weight_decay = 0.1;
  auto opt = Make(o, 2);
  std::vector<float> w{1, -2}, g{0.5, 1};
  opt->Apply(w, g);  // g + 0.1 w = (0.6, 0.8)
  EXPECT_FLOAT_EQ(w[0], 0.94f);
  EXPECT_FLOAT_EQ(w[1], -2.08f);
}

TEST(Sgd, ClipValueClampsEachElement) {
  auto o = Options(OptimizerKind::kSgd, 0.1);
  o.clip_value = 0.3;
  auto opt = Make(o, 2);
  std::vector<float> w{1, -2}, g{0.5, -1};
  opt->Apply(w, g);
  EXPECT_FLOAT_EQ(w[0], 0.97f);
  EXPECT_FLOAT_EQ(w[1], -1.97f);
}

TEST(Sgd, ClipNormRescalesToTheBound) {
  auto o = Options(OptimizerKind::kSgd, 0.1);
  o.clip_norm = 1.0;
  auto opt = Make(o, 2);
  std::vector<float> w{1, -2}, g{3, 4};  // norm 5 -> (0.6, 0.8)
  opt->Apply(w, g);
  EXPECT_NEAR(w[0], 0.94f, 1e-6);
  EXPECT_NEAR(w[1], -2.08f, 1e-6);
  // A gradient inside the bound is untouched.
  std::vector<float> small{0.3f, 0.4f};
  opt->Apply(w, small);
  EXPECT_NEAR(w[0], 0.91f, 1e-6);
}

TEST(Momentum, AccumulatesVelocity) {
  auto opt = Make(Options(OptimizerKind::kMomentum, 0.1), 1);
  std::vector<float> w{1}, g{1};
  opt->Apply(w, g);  // buf = 1
  EXPECT_FLOAT_EQ(w[0], 0.9f);
  opt->Apply(w, g);  // buf = 1.9
  EXPECT_FLOAT_EQ(w[0], 0.71f);
  EXPECT_FLOAT_EQ(opt->state()[0], 1.9f);
}

TEST(Momentum, Nesterov) {
  auto o = Options(OptimizerKind::kMomentum, 0.1);
  o.nesterov = true;
  auto opt = Make(o, 1);
  std::vector<float> w{1}, g{1};
  opt->Apply(w, g);  // w -= 0.1 * (1 + 0.9 * 1)
  EXPECT_FLOAT_EQ(w[0], 0.81f);
  opt->Apply(w, g);  // buf = 1.9; w -= 0.1 * (1 + 0.9 * 1.9)
  EXPECT_FLOAT_EQ(w[0], 0.539f);
}

TEST(Adam, TwoStepsWithBiasCorrection) {
  auto opt = Make(Options(OptimizerKind::kAdam, 0.1), 1);
  std::vector<float> w{1}, g{0.5};
  opt->Apply(w, g);  // first step moves by lr * sign(g)
  EXPECT_NEAR(w[0], 0.9f, 1e-6);
  g[0] = -1;
  opt->Apply(w, g);
  EXPECT_NEAR(w[0], 0.93661035f, 1e-6);
  ASSERT_EQ(opt->state().size(), 2u);
  // Moments in fp32: (1 - 0.999f) is 0.99998713e-3, not 1e-3.
  EXPECT_NEAR(opt->state()[0], -0.055f, 1e-7);                // m
  EXPECT_NEAR(opt->state()[1], 0.00124975f, 0.00124975 * 1e-4);  // v
}

TEST(AdaGrad, DividesBySquareRootOfSummedSquares) {
  auto opt = Make(Options(OptimizerKind::kAdaGrad, 0.1), 1);
  std::vector<float> w{1}, g{0.5};
  opt->Apply(w, g);
  EXPECT_NEAR(w[0], 0.9f, 1e-6);
  g[0] = -1;
  opt->Apply(w, g);
  EXPECT_NEAR(w[0], 0.98944272f, 1e-6);
  EXPECT_FLOAT_EQ(opt->state()[0], 1.25f);
}

TEST(Optimizer, ApplyingToSlicesEqualsApplyingToTheWhole) {
  // A server applies the optimizer to its key range; the split must not matter.
  for (auto kind : {OptimizerKind::kSgd, OptimizerKind::kMomentum, OptimizerKind::kAdam,
                    OptimizerKind::kAdaGrad}) {
    auto o = Options(kind, 0.01);
    o.weight_decay = 0.01;
    auto whole = Make(o, 10);
    auto left = Make(o, 4), right = Make(o, 6);
    std::vector<float> w1(10), w2(10), g(10);
    for (int i = 0; i < 10; ++i) w1[i] = w2[i] = 0.1f * i - 0.3f;
    for (int step = 0; step < 5; ++step) {
      for (int i = 0; i < 10; ++i) g[i] = 0.05f * ((i * 7 + step * 3) % 11) - 0.2f;
      whole->Apply(w1, g);
      left->Apply(std::span(w2).first(4), std::span<const float>(g).first(4));
      right->Apply(std::span(w2).last(6), std::span<const float>(g).last(6));
    }
    for (int i = 0; i < 10; ++i) EXPECT_EQ(w1[i], w2[i]) << OptimizerKindName(kind) << " " << i;
  }
}

TEST(Optimizer, RejectsNonPositiveLearningRate) {
  auto o = Options(OptimizerKind::kSgd, 0.0);
  auto r = Optimizer::Create(o, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("learning_rate"), std::string::npos);
}

}  // namespace
}  // namespace psforge
