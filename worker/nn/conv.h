// Convolution and max pooling on oneDNN, over nchw tensors.
//
// Like Linear, each layer owns its primitives (a Plan per batch size, made
// once) and no tensors: inputs, outputs and gradients are caller-owned, and
// the convolution's parameters are views into the model's flattened weight
// and gradient buffers (weight [out, in, k, k], PyTorch's layout; bias
// [out]). The pooling workspace (where each maximum came from) is owned per
// plan. Hot-path calls allocate nothing once a batch size has been seen.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "worker/nn/layers.h"

namespace psforge::nn {

// The geometry of a square-window layer over [channels, height, width] samples.
struct Window {
  int64_t in_c, in_h, in_w;
  int64_t out_c;
  int64_t kernel, stride, padding;
  int64_t out_h() const { return (in_h + 2 * padding - kernel) / stride + 1; }
  int64_t out_w() const { return (in_w + 2 * padding - kernel) / stride + 1; }
};

// 2-D convolution (cross-correlation, as in PyTorch) with bias.
class Conv2d final : public Layer {
 public:
  Conv2d(DnnlContext* ctx, Window window);
  ~Conv2d() override;

  void Bind(const float* weight, const float* bias, float* dweight, float* dbias);
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  struct Plan;
  Plan& PlanFor(int64_t n);

  DnnlContext* ctx_;
  Window w_;
  const float* weight_ = nullptr;
  const float* bias_ = nullptr;
  float* dweight_ = nullptr;
  float* dbias_ = nullptr;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

// Max pooling per channel (out_c == in_c); padding counts as -infinity.
class MaxPool2d final : public Layer {
 public:
  MaxPool2d(DnnlContext* ctx, Window window);
  ~MaxPool2d() override;

  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  // Uses the workspace of the last Forward of this n.
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  struct Plan;
  Plan& PlanFor(int64_t n);

  DnnlContext* ctx_;
  Window w_;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

}  // namespace psforge::nn
