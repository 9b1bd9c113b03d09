#include "worker/model.h"
#include "worker/nn/stack.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace psforge {
namespace {

// How many keys' gradients (from the TrainStep just run) differ from the
// central finite difference of the loss by more than 3e-3 (relative).
int64_t KeysOffFiniteDifferences(Model& m, const std::vector<float>& grad, const std::vector<float>& x,
                                 const std::vector<float>& t, int64_t n, int64_t step = 0) {
  const float eps = 1e-3f;
  int64_t off = 0;
  for (std::size_t k = 0; k < grad.size(); ++k) {
    float saved = m.weights()[k];
    m.weights()[k] = saved + eps;
    double plus = m.TrainStep(x.data(), t.data(), n, step);
    m.weights()[k] = saved - eps;
    double minus = m.TrainStep(x.data(), t.data(), n, step);
    m.weights()[k] = saved;
    double fd = (plus - minus) / (2 * eps);
    off += std::abs(grad[k] - fd) > 3e-3 * (1 + std::abs(fd));
  }
  return off;
}

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

// An MLP's first layer cut into row blocks where a client's parts begin
// (Model::SetPartStarts): the forward pass asks for each block's weights
// just before it reads them, and reads nothing it has not asked for (the
// weights arrive only when asked here: a key read early would still be
// zero); backward reports each block's gradient, first block first, and
// the loss and gradient are the whole layer's to rounding.
TEST(Model, FirstLayerInRowBlocksWaitsForEachBlockAndReportsEach) {
  ModelOptions o;
  o.hidden = {12};
  o.classes = 3;
  auto spec = ModelSpec::FromConfig(o, 20);
  ASSERT_TRUE(spec.ok());
  // fc0.weight [0, 240), fc0.bias [240, 252), fc1.weight [252, 288), fc1.bias [288, 291).
  ASSERT_EQ(spec->num_params(), 291);
  auto whole = Model::Create(*spec, 9), blocked = Model::Create(*spec, 9);
  ASSERT_TRUE(whole.ok() && blocked.ok());
  spec->Initialize({0, spec->num_params()}, (*whole)->weights());
  const std::vector<float> arrived((*whole)->weights().begin(), (*whole)->weights().end());
  std::mt19937_64 rng(4);
  std::vector<float> x(9 * 20), t(9);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  for (auto& v : t) v = static_cast<float>(rng() % 3);
  const float expected_loss = (*whole)->TrainStep(x.data(), t.data(), 9);

  // Parts begin at 50 and 130 (inside the first weight) and at 245 (after
  // it): forward blocks of rows [0, 2), [2, 6), [6, 12) (cut below a part's
  // start), backward ones [0, 3), [3, 7), [7, 12) (cut above).
  Model& m = **blocked;
  const std::vector<int64_t> starts{0, 50, 130, 245, 270};
  m.SetPartStarts(starts);
  std::vector<int64_t> needed;
  std::vector<std::pair<int64_t, int64_t>> finals;
  Model::StepHooks hooks;
  std::fill(m.weights().begin(), m.weights().end(), 0.0f);
  hooks.weights_needed = [&](int64_t end) {
    const int64_t from = needed.empty() ? 0 : needed.back();
    EXPECT_GE(end, from) << "asked for weights out of order";
    std::copy(arrived.begin() + from, arrived.begin() + std::max(from, end), m.weights().begin() + from);
    needed.push_back(std::max(from, end));
  };
  hooks.gradient_final = [&](int64_t begin, int64_t end) { finals.emplace_back(begin, end); };
  const float loss = m.TrainStep(x.data(), t.data(), 9, 0, nullptr, hooks);
  EXPECT_NEAR(loss, expected_loss, 1e-6 * (1 + std::abs(expected_loss)));
  EXPECT_EQ(needed, (std::vector<int64_t>{40, 120, 240, 252, 291}));
  EXPECT_EQ(finals, (std::vector<std::pair<int64_t, int64_t>>{{252, 291}, {240, 252}, {0, 60}, {60, 140}, {140, 240}}));
  for (int64_t k = 0; k < spec->num_params(); ++k)
    EXPECT_NEAR(m.gradients()[k], (*whole)->gradients()[k], 1e-6 * (1 + std::abs((*whole)->gradients()[k])))
        << "key " << k;
  bool blocks = false;
  for (const std::string& e : m.Implementations()) blocks |= e.find("matmul forward rows") != std::string::npos;
  EXPECT_TRUE(blocks);

  // Evaluation reads the layer whole; no part inside the first weight: whole again.
  EXPECT_EQ(m.EvaluateBatch(x.data(), t.data(), 9).sum, (*whole)->EvaluateBatch(x.data(), t.data(), 9).sum);
  m.SetPartStarts(std::vector<int64_t>{0, 245});
  needed.clear();
  m.TrainStep(x.data(), t.data(), 9, 0, nullptr, hooks);
  EXPECT_EQ(needed, (std::vector<int64_t>{252, 291}));
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
  EXPECT_EQ((*model)->EvaluateBatch(x.data(), t.data(), 16).sum / 16,
            (*model)->EvaluateBatch(x.data(), t.data(), 3).sum / 3);
}

}  // namespace
}  // namespace psforge

namespace psforge {
namespace {

ModelOptions SmallCnn() {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.classes = 3;
  o.input_shape = {2, 6, 6};
  o.layers = {MakeLayer(ConvLayer(3, 3, 1, 1)), MakeLayer<BatchNormLayer>(), MakeLayer<ReluLayer>(),
              MakeLayer(MaxPoolLayer(2, 2, 0)),  MakeLayer<FlattenLayer>(),    MakeLayer(DropoutLayer(0.3)),
              MakeLayer(LinearLayer(5)),         MakeLayer<TanhLayer>(),       MakeLayer(LinearLayer(3))};
  return o;
}

// Every layer kind of a sequential model chained (conv, batchnorm, pooling,
// flatten, dropout with a fixed step's mask, linear): the gradient against
// finite differences of the loss.
TEST(Model, SequentialCnnGradientMatchesFiniteDifferences) {
  auto spec = ModelSpec::FromConfig(SmallCnn(), 72);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->num_params(), (3 * 2 * 9 + 3) + (3 + 3) + (27 * 5 + 5) + (5 * 3 + 3));
  auto model = Model::Create(*spec, 5, 9);
  ASSERT_TRUE(model.ok());
  Model& m = **model;
  spec->Initialize({0, spec->num_params()}, m.weights());
  std::mt19937_64 rng(2);
  std::vector<float> x(5 * 72), t(5);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  for (auto& v : t) v = static_cast<float>(rng() % 3);
  m.TrainStep(x.data(), t.data(), 5, 11);
  std::vector<float> grad(m.gradients().begin(), m.gradients().end());
  const int64_t off = KeysOffFiniteDifferences(m, grad, x, t, 5, 11);
  // A ReLU or a pooling window may switch inside +-eps for a key or two.
  EXPECT_LE(off, 2) << "of " << spec->num_params() << " keys";
  // Another step draws another dropout mask, so another loss.
  EXPECT_NE(m.TrainStep(x.data(), t.data(), 5, 11), m.TrainStep(x.data(), t.data(), 5, 12));
}

TEST(Model, SequentialShapesAreCheckedWithTheLayerNamed) {
  ModelOptions o = SmallCnn();
  EXPECT_FALSE(ModelSpec::FromConfig(o, 71).ok());  // input_shape does not match the data
  o.layers.erase(o.layers.begin() + 4);               // no flatten before the linear layer
  auto r = ModelSpec::FromConfig(o, 72);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model.layers[5] (linear, input [3, 3, 3])"), std::string::npos)
      << r.status().ToString();
  o = SmallCnn();
  o.layers.back() = MakeLayer(LinearLayer(4));  // not model.classes
  EXPECT_FALSE(ModelSpec::FromConfig(o, 72).ok());
  o = SmallCnn();
  o.layers[0] = MakeLayer(ConvLayer(3, 9, 1, 1));  // larger than the padded 6x6 input
  EXPECT_FALSE(ModelSpec::FromConfig(o, 72).ok());
  o = SmallCnn();
  o.input_shape.clear();  // a conv needs [c, h, w]
  EXPECT_FALSE(ModelSpec::FromConfig(o, 72).ok());
}

}  // namespace
}  // namespace psforge

namespace psforge {
namespace {

// The layouts oneDNN picks for this CPU's image activations (channel-blocked
// for 16 and 32 channels here) are internal: the same model kept plain
// gives the same loss, gradients and predictions.
TEST(Model, ChosenLayoutsComputeWhatPlainOnesDo) {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.classes = 4;
  o.input_shape = {1, 8, 8};
  // A residual block on images too: its sum is taken in the layout its input has.
  o.layers = {MakeLayer(ConvLayer(16, 3, 1, 1)),
              MakeLayer<BatchNormLayer>(),
              MakeLayer<ReluLayer>(),
              MakeLayer(ResidualLayer({MakeLayer(ConvLayer(16, 3, 1, 1)), MakeLayer<BatchNormLayer>(),
                                       MakeLayer<ReluLayer>(), MakeLayer(ConvLayer(16, 3, 1, 1))})),
              MakeLayer(MaxPoolLayer(2, 2, 0)),
              MakeLayer(ConvLayer(32, 3, 1, 1)),
              MakeLayer<BatchNormLayer>(),
              MakeLayer<ReluLayer>(),
              MakeLayer<FlattenLayer>(),
              MakeLayer(LinearLayer(4))};
  auto spec = ModelSpec::FromConfig(o, 64);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto blocked = Model::Create(*spec, 6, 1, true);
  auto plain = Model::Create(*spec, 6, 1, false);
  ASSERT_TRUE(blocked.ok() && plain.ok());
  for (Model* m : {blocked->get(), plain->get()}) spec->Initialize({0, spec->num_params()}, m->weights());
  std::mt19937_64 rng(3);
  std::vector<float> x(6 * 64), t(6);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  for (auto& v : t) v = static_cast<float>(rng() % 4);
  EXPECT_NEAR((*blocked)->TrainStep(x.data(), t.data(), 6), (*plain)->TrainStep(x.data(), t.data(), 6), 1e-5);
  auto gb = (*blocked)->gradients(), gp = (*plain)->gradients();
  for (std::size_t k = 0; k < gb.size(); ++k) ASSERT_NEAR(gb[k], gp[k], 1e-4 * (1 + std::abs(gp[k]))) << k;
  for (Model* m : {blocked->get(), plain->get()}) {
    m->BeginStatistics();
    m->AccumulateStatistics(x.data(), 6);
    m->EndStatistics();
  }
  EXPECT_EQ((*blocked)->EvaluateBatch(x.data(), t.data(), 6).sum, (*plain)->EvaluateBatch(x.data(), t.data(), 6).sum);
  auto sb = (*blocked)->Statistics(), sp = (*plain)->Statistics();
  ASSERT_EQ(sb.size(), 6u);
  EXPECT_EQ(sb[2].first, "res0.bn0.running_mean");
  for (std::size_t i = 0; i < sb.size(); ++i)
    for (std::size_t c = 0; c < sb[i].second.size(); ++c) EXPECT_NEAR(sb[i].second[c], sp[i].second[c], 1e-4);
}

}  // namespace
}  // namespace psforge

namespace psforge {
namespace {

// A character-level language model (embedding, LSTM, a linear layer at every
// position, the per-position loss): its gradient against finite differences.
TEST(Model, SequenceModelGradientMatchesFiniteDifferences) {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.layers = {MakeLayer(EmbeddingLayer(3)), MakeLayer(LstmLayer(4)), MakeLayer<TanhLayer>(), MakeLayer(LinearLayer())};
  auto spec = ModelSpec::FromConfig(o, 5, 6);  // windows of 5, a vocabulary of 6
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->loss(), LossKind::kSequenceSoftmaxCrossEntropy);
  EXPECT_EQ(spec->target_width(), 5);
  EXPECT_EQ(spec->num_params(), 6 * 3 + (16 * 3 + 16 * 4 + 16) + (6 * 4 + 6));
  auto model = Model::Create(*spec, 3);
  ASSERT_TRUE(model.ok());
  Model& m = **model;
  spec->Initialize({0, spec->num_params()}, m.weights());
  std::mt19937_64 rng(4);
  std::vector<float> x(3 * 5), t(3 * 5);
  for (auto& v : x) v = static_cast<float>(rng() % 6);
  for (auto& v : t) v = static_cast<float>(rng() % 6);
  m.TrainStep(x.data(), t.data(), 3);
  std::vector<float> grad(m.gradients().begin(), m.gradients().end());
  const float eps = 1e-3f;
  for (int64_t k = 0; k < spec->num_params(); ++k) {
    float saved = m.weights()[k];
    m.weights()[k] = saved + eps;
    double plus = m.TrainStep(x.data(), t.data(), 3);
    m.weights()[k] = saved - eps;
    double minus = m.TrainStep(x.data(), t.data(), 3);
    m.weights()[k] = saved;
    double fd = (plus - minus) / (2 * eps);
    EXPECT_NEAR(grad[k], fd, 2e-3 * (1 + std::abs(fd))) << "key " << k;
  }
  // The metric is bits per character: the mean loss over positions / ln 2, per sample.
  const double loss = m.TrainStep(x.data(), t.data(), 3);
  EXPECT_NEAR(m.EvaluateBatch(x.data(), t.data(), 3).sum / 3, loss / std::log(2.0), 1e-5);
}

// The LSTM embeds its ids itself (the embedding fused into it): with
// weights that arrive only when asked (priority pulls), the forward pass
// asks for the LSTM's keys before it runs the fused layer, and the step is
// the one with every weight at hand.
TEST(Model, AFusedLayerAsksForTheWeightsOfTheLayerFusedIntoIt) {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.layers = {MakeLayer(EmbeddingLayer(3)), MakeLayer(LstmLayer(4)), MakeLayer(LinearLayer())};
  auto spec = ModelSpec::FromConfig(o, 5, 6);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  // embedding [0, 18), lstm [18, 146), linear [146, 176).
  ASSERT_EQ(spec->num_params(), 176);
  auto whole = Model::Create(*spec, 3), asked = Model::Create(*spec, 3);
  ASSERT_TRUE(whole.ok() && asked.ok());
  bool fused = false;
  for (const std::string& e : (*whole)->Implementations()) fused |= e.find("table^T dP") != std::string::npos;
  EXPECT_TRUE(fused) << "the embedding was not fused into the LSTM";
  spec->Initialize({0, spec->num_params()}, (*whole)->weights());
  const std::vector<float> arrived((*whole)->weights().begin(), (*whole)->weights().end());
  std::mt19937_64 rng(4);
  std::vector<float> x(3 * 5), t(3 * 5);
  for (auto& v : x) v = static_cast<float>(rng() % 6);
  for (auto& v : t) v = static_cast<float>(rng() % 6);
  const float expected = (*whole)->TrainStep(x.data(), t.data(), 3);

  Model& m = **asked;
  std::fill(m.weights().begin(), m.weights().end(), 0.0f);
  std::vector<int64_t> needed;
  Model::StepHooks hooks;
  hooks.weights_needed = [&](int64_t end) {
    const int64_t from = needed.empty() ? 0 : needed.back();
    std::copy(arrived.begin() + from, arrived.begin() + std::max(from, end), m.weights().begin() + from);
    needed.push_back(std::max(from, end));
  };
  hooks.gradient_final = [](int64_t, int64_t) {};
  EXPECT_EQ(m.TrainStep(x.data(), t.data(), 3, 0, nullptr, hooks), expected);
  EXPECT_EQ(needed, (std::vector<int64_t>{18, 146, 176}));
  for (int64_t k = 0; k < spec->num_params(); ++k) EXPECT_EQ(m.gradients()[k], (*whole)->gradients()[k]) << "key " << k;
}

}  // namespace
}  // namespace psforge

namespace psforge {
namespace {

// Residual blocks (nested, with a dropout of a fixed step's mask inside, and
// one whose body starts with a batchnorm) chained into an MLP: the gradient
// against finite differences of the loss, and pushing during backward
// reports a block's keys once its whole body is done.
TEST(Model, ResidualBlocksGradientMatchesFiniteDifferences) {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.classes = 3;
  o.layers = {MakeLayer(LinearLayer(6)),
              MakeLayer(ResidualLayer({MakeLayer(LinearLayer(5)), MakeLayer<TanhLayer>(),
                                       MakeLayer(ResidualLayer({MakeLayer(LinearLayer(5)), MakeLayer<SigmoidLayer>()})),
                                       MakeLayer(DropoutLayer(0.2)), MakeLayer(LinearLayer(6))})),
              MakeLayer(ResidualLayer({MakeLayer<BatchNormLayer>(), MakeLayer<ReluLayer>(), MakeLayer(LinearLayer(6))})),
              MakeLayer(LinearLayer())};
  auto spec = ModelSpec::FromConfig(o, 4);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto model = Model::Create(*spec, 7, 3);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  Model& m = **model;
  spec->Initialize({0, spec->num_params()}, m.weights());
  std::mt19937_64 rng(5);
  std::vector<float> x(7 * 4), t(7);
  for (auto& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  for (auto& v : t) v = static_cast<float>(rng() % 3);
  std::vector<int64_t> finals;
  Model::StepHooks hooks;
  int64_t reported = spec->num_params();
  hooks.gradient_final = [&](int64_t begin, int64_t end) {
    EXPECT_EQ(end, reported) << "ranges reported out of order";
    reported = begin;
    finals.push_back(begin);
  };
  m.TrainStep(x.data(), t.data(), 7, 2, nullptr, hooks);
  std::vector<float> grad(m.gradients().begin(), m.gradients().end());
  // fc1 (the last layer), then each block as a whole: res1, res0; fc0 is the rest.
  const auto& tensors = spec->tensors();
  auto offset = [&](const std::string& name) {
    for (const TensorSpec& ts : tensors)
      if (ts.name == name) return ts.offset;
    ADD_FAILURE() << name;
    return int64_t{-1};
  };
  EXPECT_EQ(finals, (std::vector<int64_t>{offset("fc1.weight"), offset("res1.bn0.weight"), offset("res0.fc0.weight")}));
  EXPECT_EQ(offset("res0.res0.fc0.weight"), offset("res0.fc0.bias") + 5);
  const int64_t off = KeysOffFiniteDifferences(m, grad, x, t, 7, 2);
  // A ReLU may switch inside +-eps for a key or two.
  EXPECT_LE(off, 2) << "of " << spec->num_params() << " keys";
  // The block's dropout draws another mask at another step.
  EXPECT_NE(m.TrainStep(x.data(), t.data(), 7, 2), m.TrainStep(x.data(), t.data(), 7, 3));
  // A block's primitives are listed under its layers' names.
  bool inner = false;
  for (const std::string& e : m.Implementations()) inner |= e.rfind("res0.res0.fc0: ", 0) == 0;
  EXPECT_TRUE(inner);
}

// Dropout masks follow the record, not the process or the batch: the
// gradient of a batch with dropout (a dropout layer and a Transformer's
// attention and residual dropouts) is the record-weighted sum of its two
// halves' gradients, each half trained alone, as two BSP workers do, and
// with its records in another order; other records change the masks.
TEST(Model, DropoutMasksFollowTheRecordSoHalvesAddUpToTheWholeBatch) {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.layers = {MakeLayer(EmbeddingLayer(8)), MakeLayer<PositionLayer>(), MakeLayer(TransformerLayer(2, true, 12, 0.3)),
              MakeLayer(DropoutLayer(0.3)), MakeLayer(LinearLayer())};
  auto spec = ModelSpec::FromConfig(o, 5, 6);  // windows of 5, a vocabulary of 6
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto model = Model::Create(*spec, 4, 3);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  Model& m = **model;
  spec->Initialize({0, spec->num_params()}, m.weights());
  std::mt19937_64 rng(8);
  std::vector<float> x(4 * 5), t(4 * 5);
  for (auto& v : x) v = static_cast<float>(rng() % 6);
  for (auto& v : t) v = static_cast<float>(rng() % 6);
  const std::vector<int64_t> rows{40, 41, 42, 43};
  auto gradient = [&](const std::vector<int64_t>& order, const std::vector<int64_t>& keys) {
    std::vector<float> bx, bt;
    for (int64_t i : order) {
      bx.insert(bx.end(), x.begin() + i * 5, x.begin() + (i + 1) * 5);
      bt.insert(bt.end(), t.begin() + i * 5, t.begin() + (i + 1) * 5);
    }
    m.TrainStep(bx.data(), bt.data(), static_cast<int64_t>(order.size()), 9, keys.data());
    return std::vector<float>(m.gradients().begin(), m.gradients().end());
  };
  const auto whole = gradient({0, 1, 2, 3}, rows);
  const auto first = gradient({0, 1}, {40, 41});
  const auto second = gradient({2, 3}, {42, 43});
  const auto reordered = gradient({2, 0, 3, 1}, {42, 40, 43, 41});
  const auto other_records = gradient({0, 1, 2, 3}, {50, 51, 52, 53});
  double diff = 0, moved = 0, norm = 0;
  for (std::size_t k = 0; k < whole.size(); ++k) {
    diff = std::max<double>(diff, std::abs(whole[k] - (first[k] + second[k]) / 2));
    diff = std::max<double>(diff, std::abs(whole[k] - reordered[k]));
    moved = std::max<double>(moved, std::abs(whole[k] - other_records[k]));
    norm = std::max<double>(norm, std::abs(whole[k]));
  }
  EXPECT_LT(diff, 1e-5 * std::max(1.0, norm));
  EXPECT_GT(moved, 1e-3 * norm) << "the masks do not depend on the records";
}

// A tiny causal Transformer language model (embedding, position, a
// Transformer block without dropout, layer norm, linear at every position):
// the gradient against finite differences, and causality: a change at the
// last position leaves every other position's outputs as they were.
TEST(Model, TransformerGradientMatchesFiniteDifferencesAndIsCausal) {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.layers = {MakeLayer(EmbeddingLayer(8)), MakeLayer<PositionLayer>(), MakeLayer(TransformerLayer(2, true, 12, 0.0)),
              MakeLayer<LayerNormLayer>(), MakeLayer(LinearLayer())};
  auto spec = ModelSpec::FromConfig(o, 6, 7);  // windows of 6, a vocabulary of 7
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto model = Model::Create(*spec, 3);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  Model& m = **model;
  spec->Initialize({0, spec->num_params()}, m.weights());
  std::mt19937_64 rng(6);
  // Larger position vectors than the initial N(0, 0.02), so that their gradient is not lost in rounding.
  const TensorSpec& pos = spec->tensors()[1];
  for (int64_t k = 0; k < pos.size(); ++k) m.weights()[pos.offset + k] = std::uniform_real_distribution<float>(-1, 1)(rng);
  std::vector<float> x(3 * 6), t(3 * 6);
  for (auto& v : x) v = static_cast<float>(rng() % 7);
  for (auto& v : t) v = static_cast<float>(rng() % 7);
  m.TrainStep(x.data(), t.data(), 3);
  std::vector<float> grad(m.gradients().begin(), m.gradients().end());
  const int64_t off = KeysOffFiniteDifferences(m, grad, x, t, 3);
  EXPECT_EQ(off, 0) << "of " << spec->num_params() << " keys";
  std::vector<float> before(m.Predict(x.data(), 3).begin(), m.Predict(x.data(), 3).end());
  x[5] = static_cast<float>((static_cast<int>(x[5]) + 1) % 7);  // sample 0's last position
  auto after = m.Predict(x.data(), 3);
  for (std::size_t i = 0; i < before.size(); ++i) {
    const bool changed_position = i >= 5 * 7 && i < 6 * 7;
    if (!changed_position) {
      EXPECT_EQ(after[i], before[i]) << i;
    }
  }
}

// A sequence classifier: a bidirectional Transformer block, the mean over
// the positions, a linear layer to the classes (one label per sample).
TEST(Model, SequenceClassifierGradientMatchesFiniteDifferences) {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.layers = {MakeLayer(EmbeddingLayer(8)), MakeLayer<PositionLayer>(), MakeLayer(TransformerLayer(2, false, 12, 0.0)),
              MakeLayer<MeanPoolLayer>(), MakeLayer(LinearLayer())};
  auto spec = ModelSpec::FromConfig(o, 6, 5);  // windows of 6; 5 ids, 5 classes
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->loss(), LossKind::kSoftmaxCrossEntropy);
  EXPECT_EQ(spec->layers()[3].out_shape, (std::vector<int64_t>{8}));
  auto model = Model::Create(*spec, 4);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  Model& m = **model;
  spec->Initialize({0, spec->num_params()}, m.weights());
  std::mt19937_64 rng(7);
  std::vector<float> x(4 * 6), t(4);
  for (auto& v : x) v = static_cast<float>(rng() % 5);
  for (auto& v : t) v = static_cast<float>(rng() % 5);
  m.TrainStep(x.data(), t.data(), 4);
  std::vector<float> grad(m.gradients().begin(), m.gradients().end());
  const int64_t off = KeysOffFiniteDifferences(m, grad, x, t, 4);
  EXPECT_EQ(off, 0) << "of " << spec->num_params() << " keys";
}

// Every kind the config reads has a builder on the worker.
TEST(Model, EveryLayerKindHasABuilder) {
  for (const LayerKindInfo& k : LayerKinds()) EXPECT_NE(nn::FindLayerBuilder(k.type), nullptr) << k.type;
}

// A masked language model (data.task masked): only the positions with a
// target count. The gradient matches finite differences; the loss is the
// sum over those positions divided by the expected count (kMaskRate of all),
// so that two halves of a batch weighted by their samples give the whole
// batch's gradient; the metric is the accuracy at those positions, the
// second metric their bits.
TEST(Model, MaskedLossCountsOnlyTheMaskedPositionsAndSplitsByRecords) {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.layers = {MakeLayer(EmbeddingLayer(4)), MakeLayer<PositionLayer>(), MakeLayer(TransformerLayer(2, false, 8, 0.0)),
              MakeLayer(LinearLayer())};
  DataShape shape{5, 6, 0, 7, true};  // windows of 5, a vocabulary of 6 and [MASK]
  auto spec = ModelSpec::FromConfig(o, shape);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->loss(), LossKind::kMaskedSequenceSoftmaxCrossEntropy);
  EXPECT_EQ(spec->tensors()[0].shape, (std::vector<int64_t>{7, 4}));
  auto model = Model::Create(*spec, 4);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  Model& m = **model;
  spec->Initialize({0, spec->num_params()}, m.weights());
  std::mt19937_64 rng(5);
  std::vector<float> x(4 * 5), t(4 * 5);
  for (auto& v : x) v = static_cast<float>(rng() % 7);
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = i % 3 == 0 ? static_cast<float>(rng() % 6) : -1.0f;
  const float loss = m.TrainStep(x.data(), t.data(), 4);
  std::vector<float> grad(m.gradients().begin(), m.gradients().end());
  EXPECT_EQ(KeysOffFiniteDifferences(m, grad, x, t, 4), 0) << "of " << spec->num_params() << " keys";
  // The output at an untargeted position gets no gradient: the last
  // layer's bias sees the targeted positions' softmax only.
  std::vector<float> one_target(t.size(), -1.0f);
  one_target[3] = 2;
  m.TrainStep(x.data(), one_target.data(), 4);
  const TensorSpec& bias = spec->tensors().back();
  double sum = 0;
  for (int64_t k = 0; k < bias.size(); ++k) sum += m.gradients()[bias.offset + k];
  EXPECT_NEAR(sum, 0, 1e-5);  // softmax minus one-hot, at one position only
  EXPECT_LT(m.gradients()[bias.offset + 2], 0);
  // Halves weighted by their samples (what BSP servers do) give the whole.
  std::vector<double> halves(grad.size(), 0.0);
  for (int h = 0; h < 2; ++h) {
    m.TrainStep(x.data() + h * 10, t.data() + h * 10, 2);
    for (std::size_t k = 0; k < grad.size(); ++k) halves[k] += 0.5 * m.gradients()[k];
  }
  for (std::size_t k = 0; k < grad.size(); ++k) EXPECT_NEAR(halves[k], grad[k], 1e-5 * (1 + std::abs(grad[k]))) << k;
  // The metric: correct predictions among the 7 targeted positions.
  const nn::Scores s = m.EvaluateBatch(x.data(), t.data(), 4);
  EXPECT_EQ(s.count, 7);
  EXPECT_GE(s.sum, 0);
  EXPECT_LE(s.sum, 7);
  // Their bits: the summed loss in bits (the loss divides by 20 * kMaskRate).
  EXPECT_NEAR(s.second, loss * 20 * 0.15 / std::log(2.0), 1e-4 * s.second);
}

// model.freeze names tensors by prefix; a prefix that names none, or one
// that freezes everything, is an error.
TEST(ModelSpec, FreezeNamesTensorsByPrefix) {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.layers = {MakeLayer(LinearLayer(4)), MakeLayer<ReluLayer>(), MakeLayer(LinearLayer())};
  o.freeze = {"fc0"};
  auto spec = ModelSpec::FromConfig(o, 3, 2);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->FrozenIn({0, spec->num_params()}), (std::vector<KeyRange>{{0, 16}}));
  EXPECT_EQ(spec->FrozenIn({10, 20}), (std::vector<KeyRange>{{0, 6}}));
  EXPECT_TRUE(spec->FrozenIn({16, 26}).empty());
  o.freeze = {"fc0", "nope"};
  auto bad = ModelSpec::FromConfig(o, 3, 2);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("model.freeze[1]: 'nope'"), std::string::npos) << bad.status().message();
  o.freeze = {"fc"};
  EXPECT_FALSE(ModelSpec::FromConfig(o, 3, 2).ok());
}

// A tied output projection (linear `tied`): the head's weight is the
// embedding table's first rows, one tensor with both layers' gradient
// summed (finite differences of the whole model); the [MASK] row beyond the
// head's outputs gets the embedding's part only. A tied head needs an
// embedding of its input's width.
TEST(Model, TiedHeadSharesTheEmbeddingTable) {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  LinearLayer head;
  head.tied = true;
  o.layers = {MakeLayer(EmbeddingLayer(4)), MakeLayer<PositionLayer>(), MakeLayer(TransformerLayer(2, true, 8, 0.0)),
              MakeLayer<LayerNormLayer>(), MakeLayer(head)};
  DataShape shape{5, 6, 0, 7, true};  // windows of 5, a vocabulary of 6 and [MASK]
  auto spec = ModelSpec::FromConfig(o, shape);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->tensors().back().name, "fc0.bias");
  EXPECT_TRUE(std::none_of(spec->tensors().begin(), spec->tensors().end(),
                           [](const TensorSpec& t) { return t.name == "fc0.weight"; }));
  auto model = Model::Create(*spec, 3);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  Model& m = **model;
  spec->Initialize({0, spec->num_params()}, m.weights());
  std::mt19937_64 rng(6);
  std::vector<float> x(3 * 5), t(3 * 5);
  for (auto& v : x) v = static_cast<float>(rng() % 7);
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = i % 2 == 0 ? static_cast<float>(rng() % 6) : -1.0f;
  m.TrainStep(x.data(), t.data(), 3);
  std::vector<float> grad(m.gradients().begin(), m.gradients().end());
  EXPECT_EQ(KeysOffFiniteDifferences(m, grad, x, t, 3), 0) << "of " << spec->num_params() << " keys";
  // Without [MASK] in the input, its row has no gradient at all.
  for (auto& v : x) v = static_cast<float>(static_cast<int>(v) % 6);
  m.TrainStep(x.data(), t.data(), 3);
  for (int64_t k = 6 * 4; k < 7 * 4; ++k) EXPECT_EQ(m.gradients()[k], 0.0f) << k;

  LinearLayer narrow_head = head;
  o.layers = {MakeLayer(EmbeddingLayer(4)), MakeLayer(LinearLayer(3)), MakeLayer(narrow_head)};
  auto bad = ModelSpec::FromConfig(o, shape);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tied: the embedding's vectors have 4 features, this layer's input 3"),
            std::string::npos)
      << bad.status().message();
  o.layers = {MakeLayer(LinearLayer(3)), MakeLayer(narrow_head)};
  EXPECT_FALSE(ModelSpec::FromConfig(o, 5, 6).ok());
}

}  // namespace
}  // namespace psforge
