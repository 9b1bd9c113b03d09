#include "common/layer_kinds.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "common/config_reader.h"
#include "common/model_spec.h"

namespace psforge {
namespace {

using config_internal::MapReader;

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

float InverseSqrt(int64_t n) { return 1.0f / std::sqrt(static_cast<float>(n)); }

// A kind whose settings Read fills from the layer's mapping.
template <typename S, void (*Read)(MapReader&, S*)>
LayerKindInfo Kind() {
  return {S::kType, [](MapReader& r) -> std::shared_ptr<const LayerSettings> {
            auto s = std::make_shared<S>();
            Read(r, s.get());
            return s;
          }};
}

template <typename S>
void NoSettings(MapReader&, S*) {}

void ReadLinear(MapReader& r, LinearLayer* l) {
  r.Int("out", &l->out, 1, 1 << 24);
  r.Bool("tied", &l->tied);
}

void ReadConv(MapReader& r, ConvLayer* l) {
  r.Int("filters", &l->filters, 1, 1 << 16);
  if (!r.Has("filters")) r.Fail(r.Field("filters"), "required for a conv layer: its output channels");
  r.Int("kernel", &l->kernel, 1, 64);
  r.Int("stride", &l->stride, 1, 64);
  r.Int("padding", &l->padding, 0, 64);
}

void ReadMaxPool(MapReader& r, MaxPoolLayer* l) {
  r.Int("kernel", &l->kernel, 1, 64);
  l->stride = l->kernel;
  r.Int("stride", &l->stride, 1, 64);
  r.Int("padding", &l->padding, 0, 64);
  if (r.ok() && l->padding >= l->kernel)
    r.Fail(r.Field("padding"), "must be smaller than the kernel (" + std::to_string(l->kernel) + ")");
}

void ReadDropout(MapReader& r, DropoutLayer* l) { r.Double("rate", &l->rate, 0.0, 1.0); }

void ReadEmbedding(MapReader& r, EmbeddingLayer* l) {
  r.Int("dim", &l->dim, 1, 1 << 16);
  r.Double("std", &l->std, 1e-6, 100.0);
  if (!r.Has("dim")) r.Fail(r.Field("dim"), "required for an embedding: the size of each character's vector");
}

void ReadLstm(MapReader& r, LstmLayer* l) {
  r.Int("hidden", &l->hidden, 1, 1 << 16);
  if (!r.Has("hidden")) r.Fail(r.Field("hidden"), "required for an lstm layer: its hidden units");
}

void ReadAttention(MapReader& r, AttentionLayer* l) {
  r.Int("heads", &l->heads, 1, 1024);
  if (!r.Has("heads")) r.Fail(r.Field("heads"), "required for an attention layer: its number of heads");
  r.Bool("causal", &l->causal);
  r.Double("dropout", &l->dropout, 0.0, 1.0);
}

void ReadTransformer(MapReader& r, TransformerLayer* l) {
  r.Int("heads", &l->heads, 1, 1024);
  if (!r.Has("heads")) r.Fail(r.Field("heads"), "required for a transformer block: its attention's heads");
  r.Bool("causal", &l->causal);
  r.Int("mlp", &l->mlp, 0, 1 << 20);
  r.Double("dropout", &l->dropout, 0.0, 1.0);
}

void ReadResidual(MapReader& r, ResidualLayer* l) {
  // Blocks in blocks are read, shaped and built recursively: a bound on the
  // depth keeps a hostile config from exhausting the stack.
  constexpr int kMaxDepth = 16;
  const std::string field = r.Field("layers");
  int depth = -1;  // "model.layers[0].layers": one block deep
  for (std::size_t at = field.find(".layers"); at != std::string::npos; at = field.find(".layers", at + 1)) ++depth;
  if (depth > kMaxDepth)
    return r.Fail(field, "residual blocks nested more than " + std::to_string(kMaxDepth) + " deep");
  config_internal::ReadLayers(r.Node("layers"), field, &l->layers, r.error());
}

}  // namespace

const std::vector<LayerKindInfo>& LayerKinds() {
  static const std::vector<LayerKindInfo> kinds = {
      Kind<LinearLayer, ReadLinear>(),
      Kind<ConvLayer, ReadConv>(),
      Kind<MaxPoolLayer, ReadMaxPool>(),
      Kind<BatchNormLayer, NoSettings<BatchNormLayer>>(),
      Kind<DropoutLayer, ReadDropout>(),
      Kind<FlattenLayer, NoSettings<FlattenLayer>>(),
      Kind<ReluLayer, NoSettings<ReluLayer>>(),
      Kind<SigmoidLayer, NoSettings<SigmoidLayer>>(),
      Kind<TanhLayer, NoSettings<TanhLayer>>(),
      Kind<EmbeddingLayer, ReadEmbedding>(),
      Kind<LstmLayer, ReadLstm>(),
      Kind<PositionLayer, NoSettings<PositionLayer>>(),
      Kind<LayerNormLayer, NoSettings<LayerNormLayer>>(),
      Kind<GeluLayer, NoSettings<GeluLayer>>(),
      Kind<AttentionLayer, ReadAttention>(),
      Kind<TransformerLayer, ReadTransformer>(),
      Kind<MeanPoolLayer, NoSettings<MeanPoolLayer>>(),
      Kind<ResidualLayer, ReadResidual>(),
  };
  return kinds;
}

const LayerKindInfo* FindLayerKind(std::string_view type) {
  for (const LayerKindInfo& k : LayerKinds())
    if (type == k.type) return &k;
  return nullptr;
}

// ---- linear -----------------------------------------------------------------

void LinearLayer::ToJson(nlohmann::json* j) const {
  if (out > 0) (*j)["out"] = out;
  if (tied) (*j)["tied"] = true;
}

Status LinearLayer::Infer(LayerShaper& s) const {
  if (s.in().size() == 3) return s.Error("needs one feature vector per sample; put a flatten layer before it");
  const int64_t in = s.in().back(), n = out > 0 ? out : s.classes();
  std::vector<int64_t> shape = s.in();  // [features] -> [out]; [positions, features] -> [positions, out]
  shape.back() = n;
  s.SetOut(std::move(shape));
  // PyTorch's default for Linear: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
  // Regression models start at zero, the usual choice for a convex problem.
  if (tied) {
    s.Name("fc");
    PSF_RETURN_IF_ERROR(s.TieToEmbedding(in, n));
    s.AddTensor("bias", {n}, InitKind::kUniform, InverseSqrt(in));
  } else if (s.regression()) {
    s.SetName("linear");
    s.AddTensor("weight", {n, in}, InitKind::kZeros, 0.0f);
    s.AddTensor("bias", {n}, InitKind::kZeros, 0.0f);
  } else {
    s.Name("fc");
    s.AddTensor("weight", {n, in}, InitKind::kUniform, InverseSqrt(in));
    s.AddTensor("bias", {n}, InitKind::kUniform, InverseSqrt(in));
  }
  return Status::Ok();
}

// ---- conv and maxpool -------------------------------------------------------

namespace {

// The output shape of a square window over an image, or an error.
Result<std::vector<int64_t>> Windowed(const LayerShaper& s, int64_t channels, int64_t kernel, int64_t stride,
                                      int64_t padding) {
  const std::vector<int64_t>& in = s.in();
  if (in.size() != 3) return s.Error("needs [channels, height, width] per sample; set model.input_shape");
  if (in[1] + 2 * padding < kernel || in[2] + 2 * padding < kernel)
    return s.Error("the " + std::to_string(kernel) + "x" + std::to_string(kernel) +
                   " kernel is larger than the padded input");
  return std::vector<int64_t>{channels, (in[1] + 2 * padding - kernel) / stride + 1,
                              (in[2] + 2 * padding - kernel) / stride + 1};
}

}  // namespace

void ConvLayer::ToJson(nlohmann::json* j) const {
  j->update({{"filters", filters}, {"kernel", kernel}, {"stride", stride}, {"padding", padding}});
}

Status ConvLayer::Infer(LayerShaper& s) const {
  PSF_ASSIGN_OR_RETURN(auto out, Windowed(s, filters, kernel, stride, padding));
  const int64_t channels = s.in()[0];
  s.SetOut(std::move(out));
  // PyTorch's default for Conv2d, as for Linear: U(+-1/sqrt(fan_in)).
  const float bound = InverseSqrt(channels * kernel * kernel);
  s.Name("conv");
  s.AddTensor("weight", {filters, channels, kernel, kernel}, InitKind::kUniform, bound);
  s.AddTensor("bias", {filters}, InitKind::kUniform, bound);
  return Status::Ok();
}

void MaxPoolLayer::ToJson(nlohmann::json* j) const {
  j->update({{"kernel", kernel}, {"stride", stride}, {"padding", padding}});
}

Status MaxPoolLayer::Infer(LayerShaper& s) const {
  if (s.in().size() != 3) return s.Error("needs [channels, height, width] per sample; set model.input_shape");
  PSF_ASSIGN_OR_RETURN(auto out, Windowed(s, s.in()[0], kernel, stride, padding));
  s.SetOut(std::move(out));
  return Status::Ok();
}

// ---- batchnorm, dropout, flatten, activations -------------------------------

Status BatchNormLayer::Infer(LayerShaper& s) const {
  if (s.in().size() == 2) return s.Error("batch normalisation of sequences is not supported");
  s.SetOut(s.in());
  // Per channel for images, per feature for vectors; scale 1, shift 0.
  s.Name("bn");
  s.AddTensor("weight", {s.in()[0]}, InitKind::kOnes, 0.0f);
  s.AddTensor("bias", {s.in()[0]}, InitKind::kZeros, 0.0f);
  return Status::Ok();
}

void DropoutLayer::ToJson(nlohmann::json* j) const { (*j)["rate"] = rate; }

Status DropoutLayer::Infer(LayerShaper& s) const {
  s.SetOut(s.in());
  return Status::Ok();
}

Status FlattenLayer::Infer(LayerShaper& s) const {
  s.SetOut({Product(s.in())});
  return Status::Ok();
}

template <typename Self>
Status ActivationKind<Self>::Infer(LayerShaper& s) const {
  s.SetOut(s.in());
  return Status::Ok();
}
template struct ActivationKind<ReluLayer>;
template struct ActivationKind<SigmoidLayer>;
template struct ActivationKind<TanhLayer>;
template struct ActivationKind<GeluLayer>;

// ---- embedding and lstm -----------------------------------------------------

void EmbeddingLayer::ToJson(nlohmann::json* j) const {
  (*j)["dim"] = dim;
  if (std != 1.0) (*j)["std"] = std;  // (absent before it existed: older runs keep their identity)
}

Status EmbeddingLayer::Infer(LayerShaper& s) const {
  if (s.in().size() != 1) return s.Error("needs one sequence of character ids per sample");
  s.SetOut({s.in()[0], dim});
  // PyTorch's default for Embedding: N(0, 1). A row per id the input may
  // hold: the vocabulary's (the loss's classes for a language model), and
  // [MASK] for the tasks masked and classify.
  s.Name("embedding");
  s.AddTensor("weight", {s.tokens(), dim}, InitKind::kNormal, static_cast<float>(std));
  return Status::Ok();
}

void LstmLayer::ToJson(nlohmann::json* j) const { (*j)["hidden"] = hidden; }

Status LstmLayer::Infer(LayerShaper& s) const {
  if (s.in().size() != 2) return s.Error("needs a sequence of vectors per sample ([positions, features])");
  const int64_t in = s.in()[1];
  s.SetOut({s.in()[0], hidden});
  // PyTorch's default for LSTM: U(+-1/sqrt(hidden)) for every tensor.
  const float bound = InverseSqrt(hidden);
  s.Name("lstm");
  s.AddTensor("weight_ih", {4 * hidden, in}, InitKind::kUniform, bound);
  s.AddTensor("weight_hh", {4 * hidden, hidden}, InitKind::kUniform, bound);
  s.AddTensor("bias", {4 * hidden}, InitKind::kUniform, bound);
  return Status::Ok();
}

// ---- Transformer layers -----------------------------------------------------

Status PositionLayer::Infer(LayerShaper& s) const {
  if (s.in().size() != 2) return s.Error("needs a sequence of vectors per sample ([positions, features])");
  s.SetOut(s.in());
  s.Name("pos");
  s.AddTensor("weight", s.in(), InitKind::kNormal, 0.02f);
  return Status::Ok();
}

Status LayerNormLayer::Infer(LayerShaper& s) const {
  if (s.in().size() == 3) return s.Error("needs vectors or sequences of vectors; use batchnorm on images");
  s.SetOut(s.in());
  s.Name("ln");
  s.AddTensor("weight", {s.in().back()}, InitKind::kOnes, 0.0f);
  s.AddTensor("bias", {s.in().back()}, InitKind::kZeros, 0.0f);
  return Status::Ok();
}

void AttentionLayer::ToJson(nlohmann::json* j) const {
  j->update({{"heads", heads}, {"causal", causal}, {"dropout", dropout}});
}

Status AttentionLayer::Infer(LayerShaper& s) const {
  if (s.in().size() != 2) return s.Error("needs a sequence of vectors per sample ([positions, features])");
  const int64_t dim = s.in()[1];
  if (dim % heads != 0)
    return s.Error(std::to_string(heads) + " heads do not divide its " + std::to_string(dim) + " features");
  s.SetOut(s.in());
  s.Name("attn");
  // PyTorch's nn.MultiheadAttention: Xavier uniform over the [3 dim, dim]
  // projection, zero biases, the output projection as a Linear's weight.
  s.AddTensor("in_proj_weight", {3 * dim, dim}, InitKind::kUniform,
              std::sqrt(6.0f / static_cast<float>(4 * dim)));
  s.AddTensor("in_proj_bias", {3 * dim}, InitKind::kZeros, 0.0f);
  s.AddTensor("out_proj.weight", {dim, dim}, InitKind::kUniform, InverseSqrt(dim));
  s.AddTensor("out_proj.bias", {dim}, InitKind::kZeros, 0.0f);
  return Status::Ok();
}

void TransformerLayer::ToJson(nlohmann::json* j) const {
  j->update({{"heads", heads}, {"causal", causal}, {"mlp", mlp}, {"dropout", dropout}});
}

Status TransformerLayer::Infer(LayerShaper& s) const {
  if (s.in().size() != 2) return s.Error("needs a sequence of vectors per sample ([positions, features])");
  const int64_t dim = s.in()[1];
  std::vector<LayerOptions> attention = {MakeLayer<LayerNormLayer>(), MakeLayer(AttentionLayer(heads, causal, dropout))};
  std::vector<LayerOptions> mlp_layers = {MakeLayer<LayerNormLayer>(), MakeLayer(LinearLayer(mlp > 0 ? mlp : 4 * dim)),
                                          MakeLayer<GeluLayer>(), MakeLayer(LinearLayer(dim))};
  if (dropout > 0) {
    attention.push_back(MakeLayer(DropoutLayer(dropout)));
    mlp_layers.push_back(MakeLayer(DropoutLayer(dropout)));
  }
  s.Name("block");
  PSF_ASSIGN_OR_RETURN(auto out, s.AddBody({MakeLayer(ResidualLayer(std::move(attention))),
                                            MakeLayer(ResidualLayer(std::move(mlp_layers)))}));
  s.SetOut(std::move(out));
  return Status::Ok();
}

Status MeanPoolLayer::Infer(LayerShaper& s) const {
  if (s.in().size() != 2) return s.Error("needs a sequence of vectors per sample ([positions, features])");
  s.SetOut({s.in()[1]});
  return Status::Ok();
}

// ---- residual ---------------------------------------------------------------

void ResidualLayer::ToJson(nlohmann::json* j) const {
  nlohmann::json body = nlohmann::json::array();
  for (const LayerOptions& l : layers) body.push_back(config_internal::LayerToJson(l));
  (*j)["layers"] = body;
}

Status ResidualLayer::Infer(LayerShaper& s) const {
  s.Name("res");
  PSF_ASSIGN_OR_RETURN(auto out, s.AddBody(layers));
  if (out != s.in()) {
    std::string got = "[", want = "[";
    for (std::size_t i = 0; i < out.size(); ++i) got += (i ? ", " : "") + std::to_string(out[i]);
    for (std::size_t i = 0; i < s.in().size(); ++i) want += (i ? ", " : "") + std::to_string(s.in()[i]);
    return s.Error("its layers give " + got + "] per sample; a residual block must give its input's shape " +
                   want + "]");
  }
  s.SetOut(std::move(out));
  return Status::Ok();
}

bool ResidualLayer::batch_statistics() const {
  return std::any_of(layers.begin(), layers.end(),
                     [](const LayerOptions& l) { return l.settings->batch_statistics(); });
}

}  // namespace psforge
