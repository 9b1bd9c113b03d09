// A stack of layers (a model's, or a residual block's) with the activation
// buffers between them, and the table that builds each layer kind.
//
// Layers are built from their LayerSpec by the builder registered under
// their kind's name (builders.cc), bound to the model's flattened weight
// and gradient buffers. The stack owns each layer's output and
// output-gradient buffers, in the layout the layer chose, grown when a
// batch size needs more room and reused for every step after. Not
// thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/model_spec.h"
#include "worker/nn/buffer.h"
#include "worker/nn/layers.h"

namespace psforge::nn {

// What building a stack's layers needs.
struct BuildContext {
  DnnlContext* ctx;
  const std::vector<TensorSpec>* tensors;  // the model's
  float* weights;                          // the model's flattened weights and gradients
  float* grads;
  uint64_t seed;        // dropout masks: the layer at index i of the stack draws from seed + i
  bool choose_layouts;  // false: image activations stay plain (nn/conv.h)
};

// One layer to build: its spec and its neighbours in its stack.
struct LayerBuild {
  const BuildContext& context;
  const std::vector<LayerSpec>& stack;
  std::size_t index;

  const LayerSpec& spec() const { return stack[index]; }
  const LayerSpec* prev() const { return index > 0 ? &stack[index - 1] : nullptr; }
  const LayerSpec* next() const { return index + 1 < stack.size() ? &stack[index + 1] : nullptr; }
  // The layer's k-th tensor (in its kind's order) and its gradient.
  float* weight(int k) const { return context.weights + (*context.tensors)[spec().tensors[k]].offset; }
  float* grad(int k) const { return context.grads + (*context.tensors)[spec().tensors[k]].offset; }
};

// A built layer. `layer` null: the layer before it computes this one's
// output too (a ReLU fused into a batchnorm; an LSTM that embeds its ids
// itself, built in the embedding's place). `rows`: rows per sample the
// layer sees (a linear layer on a sequence: its positions).
struct BuiltLayer {
  std::unique_ptr<Layer> layer;
  int64_t rows = 1;
};
using LayerBuilder = BuiltLayer (*)(const LayerBuild&);
// The builder of a layer kind (common/layer_kinds.h), or null.
LayerBuilder FindLayerBuilder(std::string_view type);

class Stack {
 public:
  // Builds `specs`' layers (which must outlive the stack). `name_prefix`
  // names unnamed layers in implementations() ("res0.").
  static std::unique_ptr<Stack> Build(const std::vector<LayerSpec>& specs, const BuildContext& context,
                                      std::string name_prefix = "");

  // Makes every layer's primitives for batches of n samples whose input
  // is laid out as `in` (used as given only for images; anything else is
  // plain rows), growing the buffers where n needs more room; returns the
  // last layer's output layout. Once per n, before Forward of that n.
  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in);
  // Forward through every layer; returns the last layer's output.
  // `before_layer(i)`, when given, is called before layer i's forward (for
  // a fused layer, before the forward of the layer computing it).
  const float* Forward(const float* x, int64_t n, Pass pass,
                       const std::function<void(std::size_t)>& before_layer = {});
  // Layer i (null: fused into the one before) and the rows per sample it sees.
  Layer* layer(std::size_t i) { return layers_[i].get(); }
  int64_t rows(std::size_t i) const { return rows_[i]; }
  // The last layer's output-gradient buffer, for the loss to write.
  float* output_gradient() { return dout_.back(); }
  // Backward through every layer after a kTraining Forward of the same x,
  // from `dy` (the last output's gradient; null: output_gradient()) to dx
  // (null: not wanted). `after_layer(i)`, when given, is called after
  // layer i's backward, i going down.
  void Backward(const float* x, const float* dy, float* dx, int64_t n,
                const std::function<void(std::size_t)>& after_layer = {});

  void set_samples(const PassSamples& samples);
  void BeginStatistics();
  void EndStatistics();
  void AppendStatistics(Layer::NamedValues* out) const;
  // Every layer's (Layer::MoveGradients).
  void MoveGradients(const float* from, float* to) {
    for (auto& l : layers_)
      if (l) l->MoveGradients(from, to);
  }
  void AppendImplementations(std::vector<std::string>* out) const;

 private:
  Stack(const std::vector<LayerSpec>& specs, std::string name_prefix)
      : specs_(specs), name_prefix_(std::move(name_prefix)) {}
  std::string NameOf(std::size_t i) const;

  const std::vector<LayerSpec>& specs_;
  std::string name_prefix_;
  std::vector<std::unique_ptr<Layer>> layers_;  // null: fused into the layer before
  std::vector<int64_t> rows_;
  std::vector<Buffer> out_buffers_, dout_buffers_;
  std::vector<float*> out_, dout_;  // the buffers, or the previous layer's for a fused layer
  std::vector<int64_t> capacity_;   // floats per buffer
  std::size_t last_ = 0;            // the last layer that computes (not fused into the one before)
};

// A block of layers: y = x + body(x) when `residual` (in x's layout: the
// body's output is reordered into it where the two differ), else y = body(x).
class Block final : public Layer {
 public:
  Block(DnnlContext* ctx, std::unique_ptr<Stack> body, bool residual);
  ~Block() override;

  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

  void AppendImplementations(const std::string& name, std::vector<std::string>* out) const override;
  void set_samples(const PassSamples& samples) override { body_->set_samples(samples); }
  void BeginStatistics() override { body_->BeginStatistics(); }
  void EndStatistics() override { body_->EndStatistics(); }
  void AppendStatistics(const std::string&, NamedValues* out) const override { body_->AppendStatistics(out); }
  void MoveGradients(const float* from, float* to) override { body_->MoveGradients(from, to); }

 private:
  struct Plan;

  DnnlContext* ctx_;
  std::unique_ptr<Stack> body_;
  bool residual_;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

}  // namespace psforge::nn
