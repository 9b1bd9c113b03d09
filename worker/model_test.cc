#include "worker/model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace psforge {
namespace {

// The whole model's gradient (every layer chained) against finite differences
// of its loss, for every activation.
TEST(Model, GradientMatchesFiniteDifferences) {
  for (Activation act : {Activation::kRelu, Activation::kSigmoid, Activation::kTanh}) {
    ModelOptions o;
    o.hidden = {7, 5};
    o.activation = act;
    o.classes = 3;
    auto spec = ModelSpec::FromConfig(o, 4);
    ASSERT_TRUE(spec.ok());
    auto model = Model::Create(*spec, 6);
    ASSERT_TRUE(model.ok());
    Model& m = **model;
    spec->Initialize({0, spec->num_params()}, m.weights());
    std::mt19937_64 rng(1);
    std::vector<float> x(6 * 4), t(6);
    for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
    for (auto& v : t) v = static_cast<float>(rng() % 3);
    m.TrainStep(x.data(), t.data(), 6);
    std::vector<float> grad(m.gradients().begin(), m.gradients().end());
    // Small enough that a ReLU input rarely crosses its kink, large enough for fp32.
    const float eps = 1e-3f;
    for (int64_t k = 0; k < spec->num_params(); ++k) {
      float saved = m.weights()[k];
      m.weights()[k] = saved + eps;
      double plus = m.TrainStep(x.data(), t.data(), 6);
      m.weights()[k] = saved - eps;
      double minus = m.TrainStep(x.data(), t.data(), 6);
      m.weights()[k] = saved;
      double fd = (plus - minus) / (2 * eps);
      EXPECT_NEAR(grad[k], fd, 2e-3 * (1 + std::abs(fd))) << ActivationName(act) << " key " << k;
    }
  }
}

TEST(Model, PartialBatchesUseTheirOwnShape) {
  ModelOptions o;
  o.hidden = {8};
  o.classes = 4;
  auto spec = ModelSpec::FromConfig(o, 5);
  auto model = Model::Create(*spec, 16);
  ASSERT_TRUE(model.ok());
  spec->Initialize({0, spec->num_params()}, (*model)->weights());
  std::vector<float> x(16 * 5, 0.5f), t(16, 1.0f);
  float full = (*model)->TrainStep(x.data(), t.data(), 16);
  float part = (*model)->TrainStep(x.data(), t.data(), 3);
  // Identical rows: the mean loss does not depend on how many there are.
  EXPECT_NEAR(full, part, 1e-6);
  EXPECT_EQ((*model)->EvaluateBatch(x.data(), t.data(), 16) / 16,
            (*model)->EvaluateBatch(x.data(), t.data(), 3) / 3);
}

}  // namespace
}  // namespace psforge
