#include "common/model_spec.h"

#include <gtest/gtest.h>

#include <cmath>

namespace psforge {
namespace {

ModelSpec Mlp(std::vector<int64_t> hidden, int64_t inputs = 784) {
  ModelOptions o;
  o.hidden = std::move(hidden);
  auto r = ModelSpec::FromConfig(o, inputs);
  EXPECT_TRUE(r.ok());
  return std::move(r).value();
}

TEST(ModelSpec, Mlp784x500x10Layout) {
  ModelSpec s = Mlp({500});
  EXPECT_EQ(s.num_params(), 397510);
  ASSERT_EQ(s.tensors().size(), 4u);
  EXPECT_EQ(s.tensors()[0].name, "fc0.weight");
  EXPECT_EQ(s.tensors()[0].shape, (std::vector<int64_t>{500, 784}));
  EXPECT_EQ(s.tensors()[1].offset, 392000);
  EXPECT_EQ(s.tensors()[3].name, "fc1.bias");
  EXPECT_EQ(s.tensors()[3].offset + 10, s.num_params());
  EXPECT_EQ(s.outputs(), 10);
  EXPECT_EQ(s.loss(), LossKind::kSoftmaxCrossEntropy);
}

ModelOptions Sequential(std::vector<LayerOptions> layers, std::vector<int64_t> input_shape = {}) {
  ModelOptions o;
  o.kind = ModelKind::kSequential;
  o.layers = std::move(layers);
  o.input_shape = std::move(input_shape);
  return o;
}

// A residual block's layers are named under it, its tensors sit in the key
// space where the block is, and its output keeps its input's shape.
TEST(ModelSpec, ResidualBlocksNameTheirLayersUnderTheBlock) {
  auto o = Sequential({MakeLayer(LinearLayer(8)),
                       MakeLayer(ResidualLayer({MakeLayer(LinearLayer(16)), MakeLayer<ReluLayer>(),
                                                MakeLayer(LinearLayer(8))})),
                       MakeLayer(ResidualLayer({MakeLayer<BatchNormLayer>(), MakeLayer(LinearLayer(8))})),
                       MakeLayer(LinearLayer())});
  auto s = ModelSpec::FromConfig(o, 5);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  std::vector<std::string> names;
  for (const TensorSpec& t : s->tensors()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"fc0.weight", "fc0.bias", "res0.fc0.weight", "res0.fc0.bias",
                                             "res0.fc1.weight", "res0.fc1.bias", "res1.bn0.weight", "res1.bn0.bias",
                                             "res1.fc0.weight", "res1.fc0.bias", "fc1.weight", "fc1.bias"}));
  ASSERT_EQ(s->layers().size(), 4u);
  const LayerSpec& block = s->layers()[1];
  EXPECT_EQ(block.name, "res0");
  EXPECT_TRUE(block.tensors.empty());
  ASSERT_EQ(block.body.size(), 3u);
  EXPECT_EQ(block.body[0].out_shape, (std::vector<int64_t>{16}));
  EXPECT_EQ(block.out_shape, (std::vector<int64_t>{8}));
  EXPECT_EQ(block.AllTensors(), (std::vector<int>{2, 3, 4, 5}));
  EXPECT_EQ(s->tensors()[2].shape, (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(s->tensors()[11].offset + 10, s->num_params());
  EXPECT_TRUE(s->has_batch_statistics());  // a batchnorm inside a block counts
}

// A Transformer block is two residual blocks of the layers it stands for,
// with PyTorch's names for the attention's tensors.
TEST(ModelSpec, TransformerBlocksExpandIntoNamedResidualBlocks) {
  auto o = Sequential({MakeLayer(EmbeddingLayer(8)), MakeLayer<PositionLayer>(),
                       MakeLayer(TransformerLayer(2, true, 0, 0.1)), MakeLayer<LayerNormLayer>(),
                       MakeLayer(LinearLayer())});
  auto s = ModelSpec::FromConfig(o, 5, 11);  // windows of 5, a vocabulary of 11
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  std::vector<std::string> names;
  for (const TensorSpec& t : s->tensors()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "embedding0.weight", "pos0.weight", "block0.res0.ln0.weight", "block0.res0.ln0.bias",
                       "block0.res0.attn0.in_proj_weight", "block0.res0.attn0.in_proj_bias",
                       "block0.res0.attn0.out_proj.weight", "block0.res0.attn0.out_proj.bias",
                       "block0.res1.ln0.weight", "block0.res1.ln0.bias", "block0.res1.fc0.weight",
                       "block0.res1.fc0.bias", "block0.res1.fc1.weight", "block0.res1.fc1.bias", "ln0.weight",
                       "ln0.bias", "fc0.weight", "fc0.bias"}));
  EXPECT_EQ(s->tensors()[1].shape, (std::vector<int64_t>{5, 8}));
  EXPECT_EQ(s->tensors()[4].shape, (std::vector<int64_t>{24, 8}));
  EXPECT_EQ(s->tensors()[10].shape, (std::vector<int64_t>{32, 8}));  // mlp 0: 4 dim
  const LayerSpec& block = s->layers()[2];
  ASSERT_EQ(block.body.size(), 2u);
  EXPECT_EQ(block.body[0].body.size(), 3u);  // layernorm, attention, dropout
  EXPECT_EQ(s->loss(), LossKind::kSequenceSoftmaxCrossEntropy);
  // Heads must divide the features.
  o.layers[2] = MakeLayer(TransformerLayer(3, true, 0, 0.1));
  auto bad = ModelSpec::FromConfig(o, 5, 11);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("model.layers[2].layers[0].layers[1] (attention, input [5, 8]): 3 heads do "
                                        "not divide its 8 features"),
            std::string::npos)
      << bad.status().message();
}

TEST(ModelSpec, ALayerThatDoesNotFitItsInputIsNamedWhereverItIs) {
  auto expect = [](const ModelOptions& o, int64_t inputs, const std::string& what) {
    auto s = ModelSpec::FromConfig(o, inputs);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find(what), std::string::npos) << s.status().message();
  };
  // A block must give its input's shape back.
  expect(Sequential({MakeLayer(ResidualLayer({MakeLayer(LinearLayer(4))})), MakeLayer(LinearLayer())}), 5,
         "model.layers[0] (residual, input [5]): its layers give [4] per sample; a residual block must give its "
         "input's shape [5]");
  // Errors inside a block name the path to the layer.
  expect(Sequential({MakeLayer(ResidualLayer({MakeLayer(ConvLayer(3, 3, 1, 1))})), MakeLayer(LinearLayer())}), 5,
         "model.layers[0].layers[0] (conv, input [5]): needs [channels, height, width]");
  expect(Sequential({MakeLayer<FlattenLayer>(), MakeLayer(LinearLayer())}, {1, 2, 3}), 5,
         "model.input_shape [1, 2, 3] has 6 values per sample");
  expect(Sequential({MakeLayer<FlattenLayer>(), MakeLayer(LinearLayer(3))}), 5, "the last layer gives [3]");
}

TEST(ModelSpec, RegressionModels) {
  ModelOptions o;
  o.kind = ModelKind::kLogisticRegression;
  auto s = ModelSpec::FromConfig(o, 6);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->num_params(), 7);
  EXPECT_EQ(s->loss(), LossKind::kSigmoidBinaryCrossEntropy);
  EXPECT_FALSE(ModelSpec::FromConfig(o, 0).ok());
}

TEST(ModelSpec, InitialisationIsDeterministicBoundedAndRangeIndependent) {
  ModelSpec s = Mlp({50, 20}, 30);
  std::vector<float> all(s.num_params());
  s.Initialize({0, s.num_params()}, all);
  for (const TensorSpec& t : s.tensors()) {
    EXPECT_FLOAT_EQ(t.bound, 1.0f / std::sqrt(static_cast<float>(t.name.ends_with("weight") ? t.shape[1] : s.layers()[2 * (t.name[2] - '0')].in_size())));
    double sum = 0;
    for (int64_t i = 0; i < t.size(); ++i) {
      float v = all[t.offset + i];
      EXPECT_LE(std::abs(v), t.bound);
      sum += v;
    }
    EXPECT_LT(std::abs(sum / t.size()), t.bound / 2) << t.name;
  }
  // Any split of the key space gives the same values.
  for (int64_t parts : {2, 3, 7}) {
    for (int64_t p = 0; p < parts; ++p) {
      KeyRange r = PartitionKeys(s.num_params(), parts, p);
      std::vector<float> piece(r.size());
      s.Initialize(r, piece);
      for (int64_t i = 0; i < r.size(); ++i) ASSERT_EQ(piece[i], all[r.begin + i]);
    }
  }
  // A different seed gives different weights.
  ModelOptions o;
  o.hidden = {50, 20};
  o.init_seed = 43;
  auto other = ModelSpec::FromConfig(o, 30);
  std::vector<float> all2(s.num_params());
  other->Initialize({0, s.num_params()}, all2);
  EXPECT_NE(all, all2);
}

// A ctr model's input: the dense features, then each categorical field's
// embedding (one shared table, or one per field); one logit.
TEST(ModelSpec, CtrInputsAreTheDenseFeaturesThenEachFieldsEmbedding) {
  ModelOptions o;
  o.kind = ModelKind::kCtr;
  o.hidden = {32};
  TableOptions t;
  t.name = "ids";
  t.dim = 4;
  o.tables = {t};
  auto shared = ModelSpec::FromConfig(o, 13, 0, 26);
  ASSERT_TRUE(shared.ok()) << shared.status().ToString();
  EXPECT_EQ(shared->dense_inputs(), 13);
  EXPECT_EQ(shared->inputs(), 13 + 26 * 4);
  EXPECT_EQ(shared->categorical(), 26);
  EXPECT_EQ(shared->field_table(25), 0);
  EXPECT_EQ(shared->field_offset(0), 13);
  EXPECT_EQ(shared->field_offset(25), 13 + 25 * 4);
  EXPECT_EQ(shared->outputs(), 1);
  EXPECT_EQ(shared->loss(), LossKind::kSigmoidBinaryCrossEntropy);
  EXPECT_EQ(shared->num_params(), (13 + 26 * 4) * 32 + 32 + 32 + 1);
  EXPECT_NE(shared->tables()[0].seed, 0u) << "a table without a seed gets one derived from init_seed";

  o.tables.clear();
  for (int f = 0; f < 3; ++f) {
    t.name = "field" + std::to_string(f);
    t.dim = f + 1;
    o.tables.push_back(t);
  }
  auto per_field = ModelSpec::FromConfig(o, 2, 0, 3);
  ASSERT_TRUE(per_field.ok()) << per_field.status().ToString();
  EXPECT_EQ(per_field->inputs(), 2 + 1 + 2 + 3);
  EXPECT_EQ(per_field->field_table(2), 2);
  EXPECT_EQ(per_field->field_offset(2), 2 + 1 + 2);
  auto mismatched = ModelSpec::FromConfig(o, 2, 0, 26);
  ASSERT_FALSE(mismatched.ok());
  EXPECT_NE(mismatched.status().message().find("3 tables for 26 categorical fields"), std::string::npos)
      << mismatched.status().message();
  EXPECT_FALSE(ModelSpec::FromConfig(o, 2, 0, 0).ok()) << "a ctr model needs categorical fields";
}

TEST(PartitionKeys, CoversTheSpaceInBalancedContiguousRanges) {
  for (int64_t total : {0, 1, 10, 397510}) {
    for (int64_t parts : {1, 2, 3, 16}) {
      int64_t next = 0;
      for (int64_t p = 0; p < parts; ++p) {
        KeyRange r = PartitionKeys(total, parts, p);
        EXPECT_EQ(r.begin, next);
        EXPECT_LE(r.size(), total / parts + 1);
        EXPECT_GE(r.size(), total / parts);
        next = r.end;
      }
      EXPECT_EQ(next, total);
    }
  }
}

TEST(PartitionKeys, PartOfKeyFindsTheRangeHoldingEachKey) {
  for (int64_t total : {1, 10, 2600, 397510}) {
    for (int64_t parts : {1, 2, 3, 7}) {
      if (parts > total) continue;
      for (int64_t p = 0; p < parts; ++p) {
        KeyRange r = PartitionKeys(total, parts, p);
        EXPECT_EQ(PartOfKey(total, parts, r.begin), p) << total << " keys, " << parts << " parts";
        EXPECT_EQ(PartOfKey(total, parts, r.end - 1), p) << total << " keys, " << parts << " parts";
      }
    }
  }
}

TEST(PartitionKeys, PartCountBringsEachPartNearestTheChunk) {
  EXPECT_EQ(PartCount(397510, 0), 1);           // chunking off
  EXPECT_EQ(PartCount(100000, 512), 1);         // under one chunk (131,072 keys)
  EXPECT_EQ(PartCount(397510, 512), 3);         // the MLP on one server: 3 x 530 KB, not 3 x 512 KB + 9 KB
  EXPECT_EQ(PartCount(198755, 512), 2);         // on each of two servers
  EXPECT_EQ(PartCount(16 << 20, 512), 128);     // 64 MB
  EXPECT_EQ(PartCount(131072 + 65535, 512), 1);
  EXPECT_EQ(PartCount(131072 + 65536, 512), 2);
}

}  // namespace
}  // namespace psforge
