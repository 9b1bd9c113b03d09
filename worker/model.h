// A trainable model: the layer stack a ModelSpec describes, on oneDNN.
//
// Owns the flattened weight and gradient buffers (one float per key of the
// spec's key space, in key order, so a gradient is one contiguous buffer that
// can be sliced per server) and every activation buffer, all sized once for
// `max_batch` rows. TrainStep and EvaluateBatch allocate nothing for batches
// of up to max_batch rows. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/model_spec.h"
#include "worker/nn/buffer.h"
#include "worker/nn/layers.h"
#include "worker/nn/scores.h"

namespace psforge {
namespace nn {
class Stack;
}  // namespace nn

class Model {
 public:
  // `seed` seeds the dropout masks (which also depend on the step).
  // `choose_layouts` false keeps every image activation plain (nchw)
  // instead of the layouts oneDNN picks for this CPU (nn/conv.h), which a
  // test compares with them.
  static Result<std::unique_ptr<Model>> Create(const ModelSpec& spec, int64_t max_batch, uint64_t seed = 0,
                                               bool choose_layouts = true);
  ~Model();

  const ModelSpec& spec() const { return spec_; }
  int64_t max_batch() const { return max_batch_; }
  std::span<float> weights() { return {weights_.get(), static_cast<std::size_t>(spec_.num_params())}; }
  std::span<const float> gradients() const {
    return {grads_in_use_, static_cast<std::size_t>(spec_.num_params())};
  }
  // Where the next TrainSteps write the gradient: `buffer` (num_params
  // floats, which must outlive its use), or the model's own buffer when
  // empty. A parameter client that sends a gradient in place while the
  // next step computes hands out alternate buffers (ParameterClient::
  // GradientBuffer). Every step writes the whole gradient, so nothing
  // carries over from one buffer to the other.
  void UseGradientBuffer(std::span<float> buffer);

  // What a training step tells its caller while it runs, so that weights
  // and gradients can travel while it computes.
  struct StepHooks {
    // Before the forward pass reads any key below `end`: those keys must
    // hold the step's weights when it returns. Called with ascending ends,
    // the last time with num_params (before backward writes gradients()).
    std::function<void(int64_t end)> weights_needed;
    // During backward: the gradient of keys [begin, end) has become final
    // (each key once, never the whole key space in one call), so that it
    // can be sent while the rest of backward runs.
    std::function<void(int64_t begin, int64_t end)> gradient_final;
  };

  // Forward, loss and backward on n <= max_batch rows of x ([n, inputs]);
  // fills gradients() with the gradient of the mean loss; returns that loss.
  // `step` and `rows` (each sample's record; null: its index) select the
  // dropout masks (nn::PassSamples).
  float TrainStep(const float* x, const float* targets, int64_t n, int64_t step = 0, const int64_t* rows = nullptr,
                  const StepHooks& hooks = {});

  // Keys where a parameter client's parts begin (ascending; see
  // ParameterClient::part_starts). A first layer that is linear (on plain
  // rows, without an input gradient) and spans several parts then trains
  // in blocks of its output rows cut there (nn::Linear::SetRowBlocks):
  // forward waits for each block's weights only (the first parts' come
  // back first), backward makes each block's gradient final on its own,
  // first block first. Same results to rounding; a reference that must
  // match a cluster's bits sets the same starts. Empty: whole again.
  void SetPartStarts(std::span<const int64_t> starts);

  // The gradient of the last TrainStep's mean loss with respect to its
  // input, [n, inputs]: kept for models with sparse embeddings (their rows'
  // gradient is gathered from it), empty otherwise.
  std::span<const float> input_gradient(int64_t n) const {
    return input_grad_ ? std::span<const float>(input_grad_.get(), static_cast<std::size_t>(n * spec_.inputs()))
                       : std::span<const float>();
  }

  // gradients() *= factor (0 clears them).
  void ScaleGradients(float factor);

  // Forward only; returns the batch's metric sum (correct predictions for
  // classifiers, squared error for regression), over how many, and the
  // second metric's sum (nn::Scores).
  nn::Scores EvaluateBatch(const float* x, const float* targets, int64_t n);

  // Forward only (as in evaluation); the model's outputs for the n rows,
  // [n, outputs] (a sequence model: [n, positions, classes]), valid until
  // the next call.
  std::span<const float> Predict(const float* x, int64_t n);

  // Batch statistics for evaluation (batchnorm; see nn/norm.h): Begin, a
  // forward pass per training batch, End. No-ops without batchnorm.
  void BeginStatistics();
  void AccumulateStatistics(const float* x, int64_t n);
  void EndStatistics();

  // The estimated statistics by name ("bn0.running_mean", "bn0.running_var"),
  // PyTorch's names, for export.
  std::vector<std::pair<std::string, std::vector<float>>> Statistics() const;

  // What oneDNN chose for every primitive of the batch sizes used so far,
  // as "layer: primitive: implementation" ("conv0: convolution forward:
  // jit:avx2"); a test fails on reference kernels.
  std::vector<std::string> Implementations() const;

 private:
  Model(const ModelSpec& spec, int64_t max_batch);
  // Prepares every layer for batches of n (once per n), growing the
  // activation buffers where a layout needs more room.
  void PrepareFor(int64_t n);
  const float* ForwardPass(const float* x, int64_t n, int pass);

  ModelSpec spec_;
  int64_t max_batch_;
  std::unique_ptr<nn::DnnlContext> ctx_;
  nn::Buffer weights_, grads_, input_grad_;
  float* grads_in_use_ = nullptr;  // grads_, or UseGradientBuffer's
  std::unique_ptr<nn::Stack> stack_;
  // Per layer: once its backward has run, the gradient of keys
  // [final_from_[i], num_params) is final (-1: not a boundary: a layer
  // with no parameters, or one whose keys sit among later layers').
  std::vector<int64_t> final_from_;
  // Per layer: the keys of it and every layer before it lie below this
  // (0: no parameters up to it).
  std::vector<int64_t> needed_to_;
  std::vector<int64_t> prepared_;  // batch sizes PrepareFor has seen
  // The first layer in row blocks (SetPartStarts), and what its hooks call
  // into: the running TrainStep's hooks (null between steps).
  bool first_in_blocks_ = false;
  std::unique_ptr<nn::Linear::RowBlockHooks> row_hooks_;
  const StepHooks* step_hooks_ = nullptr;
  std::unique_ptr<nn::Loss> loss_;
};

}  // namespace psforge
