// Batch normalisation (oneDNN) and dropout.
//
// BatchNorm normalises each channel (each feature of a vector) over the
// batch and the spatial positions, then scales and shifts it with learned
// parameters (views into the model's buffers, as for Linear). Evaluation
// needs the population's statistics; a parameter server holds weights, not
// running averages that each worker would update differently, so they are
// estimated when needed ("precise BN"): passes with Pass::kStatistics over
// training batches between BeginStatistics and EndStatistics accumulate
// each batch's mean and (unbiased) variance, and EndStatistics averages
// them. Until then evaluation uses mean 0 and variance 1.
//
// Dropout zeroes each unit with probability `rate` in training passes and
// scales the rest by 1 / (1 - rate); its mask is a hash of (seed, step,
// record, logical position in the sample: nchw order for images, whatever
// their layout; PassSamples), so a repeated forward pass of the same step
// gives the same mask, on any CPU and in any process.
//
// Buffers are made once per batch size; not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "worker/nn/layers.h"

namespace psforge::nn {

class BatchNorm final : public Layer {
 public:
  // Samples of [channels, height, width], or of [channels] when height =
  // width = 0. `fuse_relu`: y = ReLU(batchnorm(x)) in the same pass (oneDNN's
  // fuse_norm_relu; a model fuses a batchnorm followed by a ReLU, which
  // saves a pass over the activations each way).
  BatchNorm(DnnlContext* ctx, int64_t channels, int64_t height, int64_t width, bool fuse_relu = false);
  ~BatchNorm() override;

  void Bind(const float* scale, const float* shift, float* dscale, float* dshift);
  void MoveGradients(const float* from, float* to) override {
    dscale_ = MovedTo(dscale_, from, to);
    dshift_ = MovedTo(dshift_, from, to);
  }
  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

  void BeginStatistics() override;
  void EndStatistics() override;
  // name.running_mean and name.running_var, PyTorch's names.
  void AppendStatistics(const std::string& name, NamedValues* out) const override;
  std::span<const float> mean() const { return mean_; }
  std::span<const float> variance() const { return variance_; }

  static constexpr float kEpsilon = 1e-5f;  // PyTorch's default

 private:
  struct Plan;

  DnnlContext* ctx_;
  int64_t channels_, height_, width_;
  bool fuse_relu_;
  const float* scale_ = nullptr;
  const float* shift_ = nullptr;
  float* dscale_ = nullptr;
  float* dshift_ = nullptr;
  std::vector<float> mean_, variance_;             // what evaluation uses
  std::vector<double> sum_mean_, sum_variance_;    // kStatistics accumulators
  double sum_samples_ = 0;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

// `width` is the logical size of a sample.
class Dropout final : public Layer {
 public:
  Dropout(DnnlContext* ctx, double rate, int64_t width, uint64_t seed);
  ~Dropout() override;

  void set_samples(const PassSamples& samples) override { samples_ = samples; }
  // Works in the layout it is handed.
  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  struct Plan;

  DnnlContext* ctx_;
  double rate_;
  int64_t width_;
  uint64_t seed_;
  PassSamples samples_;
  uint16_t threshold_;  // a unit is kept when its 16 random bits are >= this
  float scale_;         // 1 / (1 - rate)
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

}  // namespace psforge::nn
