// Optimizers applied to one contiguous range of weights: SGD, SGD with
// momentum, Adam and AdaGrad, with weight decay and gradient clipping.
//
// An Optimizer owns the state of its range (momentum buffer, Adam moments,
// AdaGrad sums), allocated once at construction: Apply allocates nothing.
// The updates follow PyTorch's torch.optim definitions so that results can be
// compared with it. Weight decay adds weight_decay * w to the gradient
// (L2, as torch.optim.SGD/Adam do). clip_value clamps each element;
// clip_norm rescales the gradient the optimizer sees (its whole range) to
// that L2 norm at most. Apply spreads large ranges over the OpenMP threads.
// Not thread-safe: one owner applies updates.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/config.h"

namespace psforge {

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // Creates the optimizer for a range of `size` weights.
  static Result<std::unique_ptr<Optimizer>> Create(const OptimizerOptions& options, int64_t size);

  // One update: weights -= f(grad). Both spans have size() elements.
  void Apply(std::span<float> weights, std::span<const float> grad);

  int64_t size() const { return size_; }
  int64_t steps() const { return steps_; }

  // Optimizer state (moments, sums, buffers), for checkpoints.
  virtual std::span<float> state() = 0;

 protected:
  Optimizer(const OptimizerOptions& options, int64_t size) : options_(options), size_(size) {}

  // Applies the kind-specific rule to w[i] for i in [begin, end), given the
  // preprocessed gradient (clipped by value, scaled by `grad_scale` for
  // clip_norm, plus weight decay). Called concurrently on disjoint ranges.
  virtual void Update(float* w, const float* g, int64_t begin, int64_t end, float grad_scale) = 0;

  const OptimizerOptions options_;
  const int64_t size_;
  int64_t steps_ = 0;  // updates applied so far (Adam's t - 1)
};

}  // namespace psforge
