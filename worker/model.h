// A trainable model: the layer stack a ModelSpec describes, on oneDNN.
//
// Owns the flattened weight and gradient buffers (one float per key of the
// spec's key space, in key order, so a gradient is one contiguous buffer that
// can be sliced per server) and every activation buffer, all sized once for
// `max_batch` rows. TrainStep and EvaluateBatch allocate nothing for batches
// of up to max_batch rows. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/model_spec.h"

namespace psforge {
namespace nn {
struct DnnlContext;
class Linear;
class Eltwise;
class Loss;
}  // namespace nn

class Model {
 public:
  static Result<std::unique_ptr<Model>> Create(const ModelSpec& spec, int64_t max_batch);
  ~Model();

  const ModelSpec& spec() const { return spec_; }
  int64_t max_batch() const { return max_batch_; }
  std::span<float> weights() { return {weights_.get(), static_cast<std::size_t>(spec_.num_params())}; }
  std::span<const float> gradients() const {
    return {grads_.get(), static_cast<std::size_t>(spec_.num_params())};
  }

  // Forward, loss and backward on n <= max_batch rows of x ([n, inputs]);
  // fills gradients() with the gradient of the mean loss; returns that loss.
  float TrainStep(const float* x, const float* targets, int64_t n);

  // gradients() *= factor (0 clears them).
  void ScaleGradients(float factor);

  // Forward only; returns the batch's metric sum (correct predictions for
  // classifiers, squared error for regression).
  double EvaluateBatch(const float* x, const float* targets, int64_t n);

 private:
  struct FreeDeleter {
    void operator()(float* p) const;
  };
  using Buffer = std::unique_ptr<float[], FreeDeleter>;
  static Buffer Allocate(int64_t floats);

  Model(const ModelSpec& spec, int64_t max_batch);
  const float* ForwardPass(const float* x, int64_t n);

  ModelSpec spec_;
  int64_t max_batch_;
  std::unique_ptr<nn::DnnlContext> ctx_;
  Buffer weights_, grads_;
  std::vector<nn::Linear> linears_;
  std::vector<nn::Eltwise> activations_;  // one per hidden layer
  std::unique_ptr<nn::Loss> loss_;
  // Per layer i: z = linear output, a = activation output, and their gradients.
  std::vector<Buffer> z_, a_, dz_, da_;
};

}  // namespace psforge
