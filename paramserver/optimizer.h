// Optimizers applied to one contiguous range of weights: SGD, SGD with
// momentum, Adam, AdaGrad, AdamW and RMSprop, with weight decay, L1
// regularisation and gradient clipping.
//
// An Optimizer owns the state of its range (momentum buffer, Adam moments,
// AdaGrad sums, RMSprop averages), allocated once at construction: Apply
// allocates nothing. The updates follow PyTorch's torch.optim definitions so
// that results can be compared with it. Weight decay adds weight_decay * w to
// the gradient (L2, as torch.optim.SGD/Adam do), except for AdamW, which
// shrinks the weights by 1 - lr * weight_decay before its step (decoupled).
// L1 adds l1 * sign(w) to the gradient. clip_value clamps each element;
// clip_norm rescales the gradient the optimizer sees (its whole range) to
// that L2 norm at most. The learning rate follows the options' schedule and
// warm-up (ScheduledLearningRate). Apply spreads large ranges over the
// OpenMP threads.
// Not thread-safe: one owner applies updates.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/model_spec.h"

namespace psforge {

// The gradient element as an update rule sees it:
// clamp(g * pre, -clip, clip) * post + decay * w + l1 * sign(w).
struct GradientPrep {
  float pre;    // Apply's grad_scale (1/W for a server's sum of W pushes)
  float clip;   // clip_value (+inf when off)
  float post;   // clip_norm's factor (1 when off)
  float decay;  // weight_decay (0 for adamw, which decays the weights itself)
  float l1;     // the L1 term's weight
  float operator()(float g, float w) const {
    // l1 * sign(w) with sign(0) = 0: copysign and one select, which GCC
    // vectorises for every ISA and which cost the least of the forms tried
    // (SGD's loop, the cheapest, took ~14% longer with the term than without
    // on an AVX-512 Xeon; l1 times a sign made of two comparisons, ~45%).
    const float l1_term = w != 0.0f ? std::copysign(l1, w) : 0.0f;
    return WithoutL1(g, w) + l1_term;
  }
  // The same when l1 is 0: for the cheapest rules' loops, which skip the term then.
  float WithoutL1(float g, float w) const { return std::clamp(g * pre, -clip, clip) * post + decay * w; }
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // Creates the optimizer for a range of `size` weights.
  static Result<std::unique_ptr<Optimizer>> Create(const OptimizerOptions& options, int64_t size);

  // One update: weights -= f(grad * grad_scale). Both spans have size()
  // elements. (A server passes 1/W to average a sum of W gradients.)
  void Apply(std::span<float> weights, std::span<const float> grad, float grad_scale = 1.0f);
  // Part of one update, in pieces: keys [begin, end) of `weights` (all
  // size() of them) from grad[0, end - begin), at the current step count;
  // CountStep() once the whole range is done. Pieces that cover the range
  // give the bits one Apply gives. clip_norm needs the whole range at once.
  void ApplyRange(std::span<float> weights, const float* grad, int64_t begin, int64_t end, float grad_scale = 1.0f);
  void CountStep() { ++steps_; }
  // Whether ApplyRange takes pieces smaller than the whole range.
  bool takes_parts() const { return options_.clip_norm <= 0; }

  int64_t size() const { return size_; }
  int64_t steps() const { return steps_; }
  // Keys the updates leave alone (model.freeze): sorted, disjoint ranges of
  // [0, size()). Their gradients count in no clip_norm either.
  void Freeze(const std::vector<KeyRange>& frozen);
  // The rate of the next update: ScheduledLearningRate at steps() (the
  // exponential decay is torch's ExponentialLR stepped every update with
  // gamma = lr_decay_rate^(1/lr_decay_steps)).
  double LearningRate() const;

  // Optimizer state (moments, sums, buffers), for checkpoints.
  virtual std::span<float> state() = 0;
  // Back to a checkpoint's step count (its state is copied into state()).
  void set_steps(int64_t steps) { steps_ = steps; }

 protected:
  Optimizer(const OptimizerOptions& options, int64_t size) : options_(options), size_(size) {
    if (size > 0) trainable_.push_back({0, size});
  }

  // Applies the kind-specific rule to w[i] for i in [begin, end). Called
  // concurrently on disjoint ranges.
  virtual void Update(float* w, const float* g, int64_t begin, int64_t end, const GradientPrep& prep) = 0;

  const OptimizerOptions options_;
  const int64_t size_;
  int64_t steps_ = 0;  // updates applied so far (Adam's t - 1)
  std::vector<KeyRange> trainable_;  // [0, size) less the frozen keys
};

// The index of the first of `n` floats at `bytes` (any alignment) that is
// not finite, or -1: one pass that the compiler vectorises (no early exit),
// a second only when there is one to find. Pushes are checked with it before
// anything is applied.
int64_t FirstNonFinite(const void* bytes, int64_t n);

}  // namespace psforge
