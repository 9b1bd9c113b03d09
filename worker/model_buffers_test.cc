// A model writing its gradient into a buffer it is handed
// (Model::UseGradientBuffer), as a parameter client that sends one step's
// gradient while the next computes asks it to.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "worker/model.h"

namespace psforge {
namespace {

struct Case {
  std::string name;
  ModelOptions options;
  DataShape shape;
  bool ids;  // inputs are token ids below shape.classes
};

std::vector<Case> EveryLayerWithParameters() {
  std::vector<Case> cases;
  {
    ModelOptions o;  // conv, batchnorm (with the ReLU fused), linear after dropout
    o.kind = ModelKind::kSequential;
    o.classes = 3;
    o.input_shape = {2, 6, 6};
    o.layers = {MakeLayer(ConvLayer(4, 3, 1, 1)), MakeLayer<BatchNormLayer>(), MakeLayer<ReluLayer>(),
                MakeLayer<FlattenLayer>(), MakeLayer(DropoutLayer(0.2)), MakeLayer(LinearLayer())};
    cases.push_back({"cnn", o, DataShape{72, 0, 0, 0, false}, false});
  }
  {
    ModelOptions o;  // residual blocks, nested
    o.kind = ModelKind::kSequential;
    o.classes = 3;
    o.layers = {MakeLayer(LinearLayer(6)),
                MakeLayer(ResidualLayer({MakeLayer(LinearLayer(5)), MakeLayer<TanhLayer>(),
                                         MakeLayer(ResidualLayer({MakeLayer(LinearLayer(5))})),
                                         MakeLayer(LinearLayer(6))})),
                MakeLayer(ResidualLayer({MakeLayer<BatchNormLayer>(), MakeLayer(LinearLayer(6))})),
                MakeLayer(LinearLayer())};
    cases.push_back({"residual", o, DataShape{4, 0, 0, 0, false}, false});
  }
  {
    ModelOptions o;  // embedding, LSTM
    o.kind = ModelKind::kSequential;
    o.layers = {MakeLayer(EmbeddingLayer(3)), MakeLayer(LstmLayer(4)), MakeLayer(LinearLayer())};
    cases.push_back({"lstm", o, DataShape{5, 6, 0, 0, false}, true});
  }
  {
    ModelOptions o;  // positions, attention, layer norm, a head tied to the embedding
    o.kind = ModelKind::kSequential;
    LinearLayer head;
    head.tied = true;
    o.layers = {MakeLayer(EmbeddingLayer(4)), MakeLayer<PositionLayer>(), MakeLayer(TransformerLayer(2, true, 8, 0.0)),
                MakeLayer<LayerNormLayer>(), MakeLayer(head)};
    cases.push_back({"tied transformer", o, DataShape{5, 6, 0, 7, true}, true});
  }
  return cases;
}

// The same step written into the model's own buffer and into a buffer it
// is handed: the same bits, every key written, and the buffer not in use
// left alone.
TEST(ModelBuffers, AHandedGradientBufferGetsTheSameBitsAndTheOwnOneIsLeftAlone) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Case& c : EveryLayerWithParameters()) {
    SCOPED_TRACE(c.name);
    auto spec = ModelSpec::FromConfig(c.options, c.shape);
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    const int64_t n = 3, params = spec->num_params();
    auto model = Model::Create(*spec, n, 5);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    Model& m = **model;
    spec->Initialize({0, params}, m.weights());
    std::mt19937_64 rng(9);
    std::vector<float> x(n * spec->inputs()), t(n * spec->target_width());
    for (auto& v : x)
      v = c.ids ? static_cast<float>(rng() % 6) : std::uniform_real_distribution<float>(-1, 1)(rng);
    for (auto& v : t) v = static_cast<float>(rng() % 3);

    m.TrainStep(x.data(), t.data(), n, 4);
    const float* own = m.gradients().data();
    const std::vector<float> expected(m.gradients().begin(), m.gradients().end());
    std::vector<float> handed(params, nan);
    m.UseGradientBuffer(handed);
    EXPECT_EQ(m.gradients().data(), handed.data());
    m.TrainStep(x.data(), t.data(), n, 4);
    EXPECT_EQ(std::memcmp(handed.data(), expected.data(), params * sizeof(float)), 0);
    for (int64_t k = 0; k < params; ++k) ASSERT_FALSE(std::isnan(handed[k])) << "key " << k << " not written";
    EXPECT_EQ(std::memcmp(own, expected.data(), params * sizeof(float)), 0) << "the own buffer was written";

    // Back to the model's own buffer; the handed one is left alone.
    std::fill(handed.begin(), handed.end(), nan);
    m.UseGradientBuffer({});
    EXPECT_EQ(m.gradients().data(), own);
    m.TrainStep(x.data(), t.data(), n, 4);
    EXPECT_EQ(std::memcmp(own, expected.data(), params * sizeof(float)), 0);
    for (int64_t k = 0; k < params; ++k) ASSERT_TRUE(std::isnan(handed[k])) << "key " << k << " written";
  }
  auto spec = ModelSpec::FromConfig(EveryLayerWithParameters()[0].options, DataShape{72, 0, 0, 0, false});
  ASSERT_TRUE(spec.ok());
  auto model = Model::Create(*spec, 2);
  ASSERT_TRUE(model.ok());
  std::vector<float> wrong(spec->num_params() + 1);
  EXPECT_THROW((*model)->UseGradientBuffer(wrong), std::invalid_argument);
}

}  // namespace
}  // namespace psforge
