// Each optimizer against steps computed by hand from torch.optim's definitions.
#include "paramserver/optimizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <string>
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
  // The config's defaults for these kinds (ReadOptimizer).
  if (kind == OptimizerKind::kAdaGrad) o.epsilon = 1e-10;
  if (kind == OptimizerKind::kAdamW) o.weight_decay = 0.01;
  if (kind == OptimizerKind::kRmsProp) o.momentum = 0;
  return o;
}

// fp32 results against references computed in doubles: within 1e-6 of
// `want`, or of `scale` for a value that sums terms of that size which cancel.
void ExpectClose(float got, double want, double scale = 0) {
  EXPECT_NEAR(got, want, 1e-6 * std::max(std::abs(want), scale));
}

// Hyperparameters exact in fp32, so that a reference in doubles differs from
// the fp32 update by roundings only.
constexpr double kBeta1 = 0.875, kBeta2 = 0.984375, kAlpha = 0.9375;

// Three steps' gradients for two weights, signs changing.
const std::vector<std::vector<float>> kGrads{{0.5f, 1.0f}, {-1.0f, 0.25f}, {0.25f, -0.75f}};

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

// torch.optim.AdamW in doubles (torch 1.13 in float64 gives these numbers
// to the bit): the weight shrinks by 1 - lr * weight_decay, then takes
// Adam's step on the raw gradient.
TEST(AdamW, DecaysTheWeightsBeforeTheStepNotThroughTheGradient) {
  const double lr = 0.1, wd = 0.5;
  auto o = Options(OptimizerKind::kAdamW, lr);
  o.beta1 = kBeta1;
  o.beta2 = kBeta2;
  o.weight_decay = wd;
  auto opt = Make(o, 2);
  std::vector<float> w{1, -2};
  double x[2] = {1, -2}, m[2] = {0, 0}, v[2] = {0, 0};
  for (int t = 1; t <= 3; ++t) {
    opt->Apply(w, kGrads[t - 1]);
    for (int i = 0; i < 2; ++i) {
      const double g = kGrads[t - 1][i];
      x[i] *= 1 - lr * wd;
      m[i] = kBeta1 * m[i] + (1 - kBeta1) * g;
      v[i] = kBeta2 * v[i] + (1 - kBeta2) * g * g;
      const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(kBeta2, t)) + 1e-8;
      x[i] -= lr / (1 - std::pow(kBeta1, t)) * m[i] / denom;
      ExpectClose(w[i], x[i]);
    }
  }
  ASSERT_EQ(opt->state().size(), 4u);  // Adam's two moments
  for (int i = 0; i < 2; ++i) {
    ExpectClose(opt->state()[i], m[i]);
    ExpectClose(opt->state()[2 + i], v[i]);
  }

  // Adam with the same weight_decay adds it to the gradient: another result.
  auto a = o;
  a.kind = OptimizerKind::kAdam;
  auto adam = Make(a, 2);
  std::vector<float> w_adam{1, -2};
  for (const auto& g : kGrads) adam->Apply(w_adam, g);
  EXPECT_GT(std::abs(w_adam[0] - w[0]), 0.01f);
  EXPECT_GT(std::abs(w_adam[1] - w[1]), 0.01f);
  // Without decay the two are one rule, to the bit.
  o.weight_decay = a.weight_decay = 0;
  auto plain_w = Make(o, 2), plain_adam = Make(a, 2);
  std::vector<float> w1{1, -2}, w2{1, -2};
  for (const auto& g : kGrads) {
    plain_w->Apply(w1, g);
    plain_adam->Apply(w2, g);
  }
  EXPECT_EQ(w1, w2);
}

// torch.optim.RMSprop in doubles, in its four variants (torch 1.13 in
// float64 gives these numbers to the bit); the state holds what a variant
// uses, in order: v, then g_avg (centered), then buf (momentum).
TEST(RmsProp, PlainCenteredAndWithMomentum) {
  const double lr = 0.01, eps = 1e-8;
  for (bool centered : {false, true})
    for (double mu : {0.0, 0.5}) {
      SCOPED_TRACE(testing::Message() << "centered " << centered << " momentum " << mu);
      auto o = Options(OptimizerKind::kRmsProp, lr);
      o.alpha = kAlpha;
      o.centered = centered;
      o.momentum = mu;
      auto opt = Make(o, 2);
      const std::size_t parts = 1 + centered + (mu > 0);
      ASSERT_EQ(opt->state().size(), 2 * parts);
      std::vector<float> w{1, -2};
      double x[2] = {1, -2}, v[2] = {0, 0}, g_avg[2] = {0, 0}, buf[2] = {0, 0};
      for (const auto& grad : kGrads) {
        opt->Apply(w, grad);
        for (int i = 0; i < 2; ++i) {
          const double g = grad[i];
          v[i] = kAlpha * v[i] + (1 - kAlpha) * g * g;
          double avg = std::sqrt(v[i]) + eps;
          if (centered) {
            g_avg[i] = kAlpha * g_avg[i] + (1 - kAlpha) * g;
            avg = std::sqrt(v[i] - g_avg[i] * g_avg[i]) + eps;
          }
          if (mu > 0) {
            buf[i] = mu * buf[i] + g / avg;
            x[i] -= lr * buf[i];
          } else {
            x[i] -= lr * g / avg;
          }
          ExpectClose(w[i], x[i]);
        }
      }
      const auto state = opt->state();
      for (int i = 0; i < 2; ++i) {
        ExpectClose(state[i], v[i]);
        if (centered) ExpectClose(state[2 + i], g_avg[i]);
        // Terms g / avg of about 1 / sqrt(1 - alpha) = 4, of both signs.
        if (mu > 0) ExpectClose(state[2 * (parts - 1) + i], buf[i], 4);
      }
    }
}

// The first step of plain RMSprop moves by lr / sqrt(1 - alpha) whatever
// the gradient's size: a number to check the reference above by.
TEST(RmsProp, FirstStepIsLearningRateOverTheSquareRootOfOneMinusAlpha) {
  auto o = Options(OptimizerKind::kRmsProp, 0.01);
  o.alpha = kAlpha;  // 1 - alpha = 1/16: the step is 4 lr
  auto opt = Make(o, 2);
  std::vector<float> w{1, -2}, g{0.5f, -3.0f};
  opt->Apply(w, g);
  ExpectClose(w[0], 0.96);
  ExpectClose(w[1], -1.96);
}

TEST(Optimizer, L1AddsItsWeightTimesTheSignOfEachWeightToTheGradient) {
  auto o = Options(OptimizerKind::kSgd, 0.1);
  o.l1 = 0.1;
  o.weight_decay = 0.05;
  auto opt = Make(o, 4);
  // sign(0) = 0: a weight at 0 with no gradient stays there.
  std::vector<float> w{1, -2, 0, 0}, g{0.5f, 1, 0.25f, 0};
  opt->Apply(w, g);  // g + 0.05 w + 0.1 sign(w) = (0.65, 0.8, 0.25, 0)
  ExpectClose(w[0], 0.935);
  ExpectClose(w[1], -2.08);
  ExpectClose(w[2], -0.025);
  EXPECT_EQ(w[3], 0.0f);
  // Every kind sees it: Adam's first step moves by lr * sign(g + 0.1 sign(w)).
  auto a = Options(OptimizerKind::kAdam, 0.1);
  a.beta2 = kBeta2;
  a.l1 = 0.1;
  auto adam = Make(a, 3);
  std::vector<float> wa{1, -1, 0}, ga{-0.05f, 0.05f, 0};
  adam->Apply(wa, ga);  // gradients (0.05, -0.05, 0): against the given ones
  ExpectClose(wa[0], 0.9);
  ExpectClose(wa[1], -0.9);
  EXPECT_EQ(wa[2], 0.0f);
}

// A linear warm-up over 4 updates into a cosine from 0.1 to 0.01 that falls
// over the 8 updates after it (lr_schedule_steps 12 counts the warm-up).
TEST(Sgd, WarmUpRisesLinearlyThenTheCosineStartsWhereItEnds) {
  auto o = Options(OptimizerKind::kSgd, 0.1);
  o.lr_schedule = LrSchedule::kCosine;
  o.lr_min = 0.01;
  o.lr_schedule_steps = 12;
  o.lr_warmup_steps = 4;
  auto opt = Make(o, 1);
  const double s2 = 0.5 * std::sqrt(2.0);
  // t = 0..3: 0.1 (t + 1) / 4; t = 4: the cosine's top; t = 6: a quarter
  // down (pi / 4); t = 8: halfway; t >= 12: lr_min.
  const std::vector<double> want{0.025, 0.05, 0.075, 0.1, 0.1, 0.01 + 0.045 * (1 + std::cos(std::numbers::pi / 8)),
                                 0.01 + 0.045 * (1 + s2), 0.01 + 0.045 * (1 + std::cos(3 * std::numbers::pi / 8)),
                                 0.055};
  std::vector<float> w{0}, g{1};
  for (double want_lr : want) {
    EXPECT_NEAR(opt->LearningRate(), want_lr, 1e-12) << "update " << opt->steps();
    float before = w[0];
    opt->Apply(w, g);
    EXPECT_NEAR(before - w[0], want_lr, 1e-6);
  }
  EXPECT_NEAR(ScheduledLearningRate(o, 11), 0.01 + 0.045 * (1 + std::cos(7 * std::numbers::pi / 8)), 1e-12);
  EXPECT_NEAR(ScheduledLearningRate(o, 12), 0.01, 1e-12);
  EXPECT_NEAR(ScheduledLearningRate(o, 100), 0.01, 1e-12);
  // Other schedules are scaled the same way during the warm-up, and run from
  // update 0 (not from the warm-up's end).
  o.lr_schedule = LrSchedule::kExponential;
  o.lr_decay_rate = 0.5;
  o.lr_decay_steps = 2;
  EXPECT_NEAR(ScheduledLearningRate(o, 0), 0.1 * 0.25, 1e-12);
  EXPECT_NEAR(ScheduledLearningRate(o, 2), 0.1 * 0.5 * 0.75, 1e-12);
  EXPECT_NEAR(ScheduledLearningRate(o, 4), 0.1 * 0.25, 1e-12);
  o.lr_schedule = LrSchedule::kConstant;
  EXPECT_NEAR(ScheduledLearningRate(o, 1), 0.05, 1e-12);
  EXPECT_NEAR(ScheduledLearningRate(o, 3), 0.1, 1e-12);
  EXPECT_NEAR(ScheduledLearningRate(o, 4), 0.1, 1e-12);
}

// Every kind and variant, with every gradient term on.
std::vector<OptimizerOptions> AllKinds() {
  std::vector<OptimizerOptions> all;
  for (auto kind : {OptimizerKind::kSgd, OptimizerKind::kMomentum, OptimizerKind::kAdam, OptimizerKind::kAdaGrad,
                    OptimizerKind::kAdamW, OptimizerKind::kRmsProp}) {
    auto o = Options(kind, 0.01);
    o.weight_decay = 0.01;
    o.l1 = 0.001;
    o.lr_warmup_steps = 2;
    all.push_back(o);
  }
  for (bool centered : {false, true})
    for (double mu : {0.0, 0.9}) {
      auto o = all.back();
      o.centered = centered;
      o.momentum = mu;
      all.push_back(o);
    }
  return all;
}

std::string Describe(const OptimizerOptions& o) {
  return std::string(OptimizerKindName(o.kind)) + (o.centered ? " centered" : "") +
         (o.kind == OptimizerKind::kRmsProp && o.momentum > 0 ? " momentum" : "");
}

TEST(Optimizer, ApplyingToSlicesEqualsApplyingToTheWhole) {
  // A server applies the optimizer to its key range; the split must not matter.
  for (const OptimizerOptions& o : AllKinds()) {
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
    for (int i = 0; i < 10; ++i) EXPECT_EQ(w1[i], w2[i]) << Describe(o) << " " << i;
  }
}

// A server applies each part of its range as it arrives (ApplyRange, then
// CountStep): the same bits as one Apply, and the same state. Pieces cut
// through vector bodies and into scalar tails.
TEST(Optimizer, ApplyRangeInPiecesGivesTheBitsOfOneApply) {
  constexpr int64_t n = 1000;
  const std::vector<int64_t> cuts{0, 1, 37, 38, 500, 999, n};
  for (const OptimizerOptions& o : AllKinds()) {
    auto whole = Make(o, n), pieces = Make(o, n);
    std::vector<float> w1(n), w2(n), g(n);
    for (int64_t i = 0; i < n; ++i) w1[i] = w2[i] = std::sin(0.1f * i) * ((i % 17) ? 1.0f : 0.0f);
    for (int step = 0; step < 4; ++step) {
      for (int64_t i = 0; i < n; ++i) g[i] = std::cos(0.37f * i + 1.1f * step);
      whole->Apply(w1, g, 0.5f);
      for (std::size_t c = 0; c + 1 < cuts.size(); ++c)
        pieces->ApplyRange(w2, g.data() + cuts[c], cuts[c], cuts[c + 1], 0.5f);
      pieces->CountStep();
    }
    EXPECT_EQ(std::memcmp(w1.data(), w2.data(), n * sizeof(float)), 0) << Describe(o);
    const auto s1 = whole->state(), s2 = pieces->state();
    ASSERT_EQ(s1.size(), s2.size());
    EXPECT_EQ(std::memcmp(s1.data(), s2.data(), s1.size_bytes()), 0) << Describe(o);
  }
}

// What a checkpoint does: state() and the step count copied into a fresh
// optimizer continue exactly as the original.
TEST(Optimizer, CopiedStateContinuesExactly) {
  for (const OptimizerOptions& o : AllKinds()) {
    auto a = Make(o, 5), b = Make(o, 5);
    std::vector<float> w{0.5f, -1, 0, 2, -0.25f}, g{0.1f, -0.2f, 0.3f, 0, -0.4f};
    for (int step = 0; step < 3; ++step) a->Apply(w, g);
    std::vector<float> w_b = w;
    ASSERT_EQ(a->state().size(), b->state().size());
    std::copy(a->state().begin(), a->state().end(), b->state().begin());
    b->set_steps(a->steps());
    for (int step = 0; step < 3; ++step) {
      a->Apply(w, g);
      b->Apply(w_b, g);
    }
    EXPECT_EQ(w, w_b) << Describe(o);
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

namespace psforge {
namespace {

// model.freeze: frozen keys keep their values under every rule (AdamW's
// decoupled decay too), the others take the step they take without it,
// and a clip_norm counts only the trainable gradient.
TEST(Optimizer, FrozenKeysKeepTheirValuesAndCountInNoClipNorm) {
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kMomentum, OptimizerKind::kAdam,
                             OptimizerKind::kAdamW, OptimizerKind::kAdaGrad, OptimizerKind::kRmsProp}) {
    auto o = Options(kind, 0.1);
    o.weight_decay = 0.1;
    o.clip_norm = 1.0;
    auto frozen = Make(o, 6);
    frozen->Freeze({{0, 2}, {4, 5}});
    auto plain = Make(o, 3);  // the trainable keys 2, 3, 5 alone
    std::vector<float> w{1, -2, 3, -4, 5, -6}, w3{3, -4, -6};
    for (int step = 0; step < 3; ++step) {
      // Large frozen gradients: a clip_norm that counted them would shrink the step.
      std::vector<float> g{100, -100, 0.5f * (step + 1), -0.25f, 100, 0.75f};
      std::vector<float> g3{g[2], g[3], g[5]};
      frozen->Apply(w, g);
      plain->Apply(w3, g3);
    }
    EXPECT_EQ(w[0], 1.0f) << OptimizerKindName(kind);
    EXPECT_EQ(w[1], -2.0f);
    EXPECT_EQ(w[4], 5.0f);
    EXPECT_EQ(w[2], w3[0]) << OptimizerKindName(kind);
    EXPECT_EQ(w[3], w3[1]);
    EXPECT_EQ(w[5], w3[2]);
    EXPECT_NE(w[2], 3.0f);
  }
}

}  // namespace
}  // namespace psforge
