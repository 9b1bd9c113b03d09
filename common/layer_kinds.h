// The layer kinds of a sequential model (model.layers), one definition each.
//
// A kind is a struct of its settings (the fields of its YAML mapping besides
// `type`) that knows how to read and print them and how to infer, from its
// per-sample input shape, its output shape and the tensors it owns. Kinds
// are looked up by their type name (LayerKinds()); the worker builds each
// one on oneDNN from a table keyed by the same names (worker/nn/builders.h).
// Adding a kind: a struct here, its definition in layer_kinds.cc and a line
// in its table, a builder in the worker's table, and op-test cases.
//
// Per-sample shapes are [channels, height, width] for images, [features]
// for vectors and [positions, features] for sequences.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace psforge {
namespace config_internal {
class MapReader;
}
class LayerShaper;  // common/model_spec.h

// The settings of one layer, as read from its YAML mapping.
class LayerSettings {
 public:
  virtual ~LayerSettings() = default;
  // The kind's name: the YAML `type`.
  virtual const char* type() const = 0;
  // Adds the settings' fields to the layer's JSON (which has its type), as
  // they read back.
  virtual void ToJson(nlohmann::json* j) const = 0;
  virtual bool Equals(const LayerSettings& other) const = 0;
  // Declares the layer's output shape, name and tensors from its input; an
  // error names the layer and why its input does not suit it.
  virtual Status Infer(LayerShaper& s) const = 0;
  // Whether evaluation needs batch statistics estimated first (batchnorm).
  virtual bool batch_statistics() const { return false; }
};

// One layer of a sequential model: its kind and settings (shared and
// immutable once read, so copies of a config are cheap).
struct LayerOptions {
  std::shared_ptr<const LayerSettings> settings;
  const char* type() const { return settings->type(); }
  // The settings as kind S, or null when the layer is of another kind.
  template <typename S>
  const S* As() const {
    return dynamic_cast<const S*>(settings.get());
  }
  bool operator==(const LayerOptions& other) const { return settings->Equals(*other.settings); }
};

template <typename S>
LayerOptions MakeLayer(S settings = {}) {
  return {std::make_shared<const S>(std::move(settings))};
}

// The part every kind shares: its type and a field-wise comparison.
template <typename Self>
struct LayerKind : LayerSettings {
  const char* type() const override { return Self::kType; }
  bool Equals(const LayerSettings& other) const override {
    const auto* o = dynamic_cast<const Self*>(&other);
    return o != nullptr && *o == static_cast<const Self&>(*this);
  }
  bool operator==(const LayerKind&) const { return true; }
};

// A kind's entry in the table: its name and how its settings are read.
struct LayerKindInfo {
  const char* type;
  // Reads the settings from the layer's mapping (`type` already taken); an
  // error is left in the reader's status.
  std::shared_ptr<const LayerSettings> (*read)(config_internal::MapReader& r);
};

const std::vector<LayerKindInfo>& LayerKinds();
const LayerKindInfo* FindLayerKind(std::string_view type);

// linear: y = x W^T + b on [features] (or at each position of a sequence).
// Tensors: weight [out, in], bias [out]; U(+-1/sqrt(in)) as PyTorch's
// Linear (zeros in a regression model).
struct LinearLayer final : LayerKind<LinearLayer> {
  static constexpr const char* kType = "linear";
  int64_t out = 0;  // YAML `out`; 0 (absent): the number of classes
  // Tied to the model's embedding (GPT-2's and BERT's output projection):
  // its weight is the embedding table's first `out` rows (as PyTorch's
  // `head.weight = embedding.weight`), so only the bias is its own tensor.
  bool tied = false;
  LinearLayer() = default;
  explicit LinearLayer(int64_t out_) : out(out_) {}
  bool operator==(const LinearLayer&) const = default;
  void ToJson(nlohmann::json* j) const override;
  Status Infer(LayerShaper& s) const override;
};

// conv: a 2-D convolution of [channels, height, width]. Tensors: weight
// [filters, channels, kernel, kernel], bias [filters]; U(+-1/sqrt(fan_in)).
struct ConvLayer final : LayerKind<ConvLayer> {
  static constexpr const char* kType = "conv";
  int64_t filters = 0;  // output channels (required)
  int64_t kernel = 3;   // the square window's side
  int64_t stride = 1;
  int64_t padding = 0;  // zeros added on each side
  ConvLayer() = default;
  ConvLayer(int64_t filters_, int64_t kernel_, int64_t stride_, int64_t padding_)
      : filters(filters_), kernel(kernel_), stride(stride_), padding(padding_) {}
  bool operator==(const ConvLayer&) const = default;
  void ToJson(nlohmann::json* j) const override;
  Status Infer(LayerShaper& s) const override;
};

// maxpool: the maximum over square windows of each channel.
struct MaxPoolLayer final : LayerKind<MaxPoolLayer> {
  static constexpr const char* kType = "maxpool";
  int64_t kernel = 2;
  int64_t stride = 2;   // default: the kernel
  int64_t padding = 0;  // smaller than the kernel
  MaxPoolLayer() = default;
  MaxPoolLayer(int64_t kernel_, int64_t stride_, int64_t padding_)
      : kernel(kernel_), stride(stride_), padding(padding_) {}
  bool operator==(const MaxPoolLayer&) const = default;
  void ToJson(nlohmann::json* j) const override;
  Status Infer(LayerShaper& s) const override;
};

// batchnorm: per channel of an image, or per feature of a vector. Tensors:
// weight (scale, ones) and bias (shift, zeros), [channels].
struct BatchNormLayer final : LayerKind<BatchNormLayer> {
  static constexpr const char* kType = "batchnorm";
  bool operator==(const BatchNormLayer&) const = default;
  void ToJson(nlohmann::json*) const override {}
  Status Infer(LayerShaper& s) const override;
  bool batch_statistics() const override { return true; }
};

// dropout: zeroes each unit with probability `rate` in training (and
// scales the rest by 1 / (1 - rate)).
struct DropoutLayer final : LayerKind<DropoutLayer> {
  static constexpr const char* kType = "dropout";
  double rate = 0.5;  // in [0, 1)
  DropoutLayer() = default;
  explicit DropoutLayer(double rate_) : rate(rate_) {}
  bool operator==(const DropoutLayer&) const = default;
  void ToJson(nlohmann::json* j) const override;
  Status Infer(LayerShaper& s) const override;
};

// flatten: any shape to [features].
struct FlattenLayer final : LayerKind<FlattenLayer> {
  static constexpr const char* kType = "flatten";
  bool operator==(const FlattenLayer&) const = default;
  void ToJson(nlohmann::json*) const override {}
  Status Infer(LayerShaper& s) const override;
};

// Elementwise activations (no settings, same shape out).
template <typename Self>
struct ActivationKind : LayerKind<Self> {
  void ToJson(nlohmann::json*) const override {}
  Status Infer(LayerShaper& s) const override;
};
struct ReluLayer final : ActivationKind<ReluLayer> {
  static constexpr const char* kType = "relu";
  bool operator==(const ReluLayer&) const = default;
};
struct SigmoidLayer final : ActivationKind<SigmoidLayer> {
  static constexpr const char* kType = "sigmoid";
  bool operator==(const SigmoidLayer&) const = default;
};
struct TanhLayer final : ActivationKind<TanhLayer> {
  static constexpr const char* kType = "tanh";
  bool operator==(const TanhLayer&) const = default;
};

// embedding: a sequence of character ids [positions] to [positions, dim].
// Tensor: weight [ids, dim], N(0, std^2); std 1 is PyTorch's Embedding,
// 0.02 BERT's and GPT-2's (the position embedding's scale: without a causal
// mask, positions are all an encoder knows of order, and N(0, 1) characters
// drown them).
struct EmbeddingLayer final : LayerKind<EmbeddingLayer> {
  static constexpr const char* kType = "embedding";
  int64_t dim = 0;  // required
  double std = 1.0;
  EmbeddingLayer() = default;
  explicit EmbeddingLayer(int64_t dim_) : dim(dim_) {}
  bool operator==(const EmbeddingLayer&) const = default;
  void ToJson(nlohmann::json* j) const override;
  Status Infer(LayerShaper& s) const override;
};

// lstm: [positions, features] to [positions, hidden]. Tensors (PyTorch's
// layout, gates in the order input, forget, cell, output): weight_ih
// [4 hidden, in], weight_hh [4 hidden, hidden], bias [4 hidden] (PyTorch's
// bias_ih + bias_hh); all U(+-1/sqrt(hidden)).
struct LstmLayer final : LayerKind<LstmLayer> {
  static constexpr const char* kType = "lstm";
  int64_t hidden = 0;  // required
  LstmLayer() = default;
  explicit LstmLayer(int64_t hidden_) : hidden(hidden_) {}
  bool operator==(const LstmLayer&) const = default;
  void ToJson(nlohmann::json* j) const override;
  Status Infer(LayerShaper& s) const override;
};

// position: adds a learned vector per position to [positions, dim] (a
// Transformer's position embedding). Tensor: weight [positions, dim],
// N(0, 0.02) as GPT-2's.
struct PositionLayer final : LayerKind<PositionLayer> {
  static constexpr const char* kType = "position";
  bool operator==(const PositionLayer&) const = default;
  void ToJson(nlohmann::json*) const override {}
  Status Infer(LayerShaper& s) const override;
};

// layernorm: normalises each vector (each position of a sequence) over its
// features. Tensors: weight (scale, ones) and bias (shift, zeros) [features].
struct LayerNormLayer final : LayerKind<LayerNormLayer> {
  static constexpr const char* kType = "layernorm";
  bool operator==(const LayerNormLayer&) const = default;
  void ToJson(nlohmann::json*) const override {}
  Status Infer(LayerShaper& s) const override;
};

// gelu: x * Phi(x) elementwise (PyTorch's nn.GELU, the exact erf form).
struct GeluLayer final : ActivationKind<GeluLayer> {
  static constexpr const char* kType = "gelu";
  bool operator==(const GeluLayer&) const = default;
};

// attention: multi-head self-attention over [positions, dim], as PyTorch's
// nn.MultiheadAttention (batch_first) with the input as query, key and
// value. Tensors: in_proj_weight [3 dim, dim] (Xavier uniform),
// in_proj_bias [3 dim] (zeros), out_proj.weight [dim, dim]
// (U(+-1/sqrt(dim))), out_proj.bias [dim] (zeros).
struct AttentionLayer final : LayerKind<AttentionLayer> {
  static constexpr const char* kType = "attention";
  int64_t heads = 0;    // required; divides dim
  bool causal = false;  // position i attends to positions <= i only
  double dropout = 0;   // in training, on the attention probabilities, in [0, 1)
  AttentionLayer() = default;
  AttentionLayer(int64_t heads_, bool causal_, double dropout_ = 0)
      : heads(heads_), causal(causal_), dropout(dropout_) {}
  bool operator==(const AttentionLayer&) const = default;
  void ToJson(nlohmann::json* j) const override;
  Status Infer(LayerShaper& s) const override;
};

// transformer: a pre-norm Transformer block on [positions, dim]: x +
// dropout(attention(layernorm(x))), then x + dropout(linear(gelu(linear(
// layernorm(x))))), the first linear `mlp` wide; the attention drops its
// probabilities at the same rate. Its layers are named under
// it as two residual blocks: block0.res0.attn0.in_proj_weight,
// block0.res1.fc0.weight, ...
struct TransformerLayer final : LayerKind<TransformerLayer> {
  static constexpr const char* kType = "transformer";
  int64_t heads = 0;     // required; divides dim
  bool causal = false;   // as attention's
  int64_t mlp = 0;       // the MLP's hidden width; 0: 4 dim
  double dropout = 0.1;  // in the attention, after it and after the MLP; 0: none
  TransformerLayer() = default;
  TransformerLayer(int64_t heads_, bool causal_, int64_t mlp_, double dropout_)
      : heads(heads_), causal(causal_), mlp(mlp_), dropout(dropout_) {}
  bool operator==(const TransformerLayer&) const = default;
  void ToJson(nlohmann::json* j) const override;
  Status Infer(LayerShaper& s) const override;
};

// meanpool: the mean over a sequence's positions, [positions, features] ->
// [features] (a sequence classifier's pooling).
struct MeanPoolLayer final : LayerKind<MeanPoolLayer> {
  static constexpr const char* kType = "meanpool";
  bool operator==(const MeanPoolLayer&) const = default;
  void ToJson(nlohmann::json*) const override {}
  Status Infer(LayerShaper& s) const override;
};

// residual: a stack of layers whose input is added to its output (which
// must have the input's shape). Its layers' tensors are named under the
// block's name: res0.fc0.weight.
struct ResidualLayer final : LayerKind<ResidualLayer> {
  static constexpr const char* kType = "residual";
  std::vector<LayerOptions> layers;  // at least one
  ResidualLayer() = default;
  explicit ResidualLayer(std::vector<LayerOptions> layers_) : layers(std::move(layers_)) {}
  bool operator==(const ResidualLayer&) const = default;
  void ToJson(nlohmann::json* j) const override;
  Status Infer(LayerShaper& s) const override;
  bool batch_statistics() const override;
};

}  // namespace psforge
