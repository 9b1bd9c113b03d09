// Convolution and max pooling on oneDNN, and the flatten that ends a stack
// of image layers.
//
// Image activations are stored either plain (nchw, PyTorch's layout) or
// channel-blocked (nChw16c: 16 channels of a pixel side by side, the layout
// oneDNN's vectorised kernels run fastest on; only for channel counts that
// are multiples of 16, so no padding and the same byte count). Each layer is
// told the layout of its input and output; Flatten turns a blocked tensor
// into the plain [c*h*w] row a Linear layer reads (and back for gradients).
//
// Like Linear, each layer owns its primitives (a Plan per batch size, made
// once) and no activation tensors: inputs, outputs and gradients are
// caller-owned, and the convolution's parameters are views into the model's
// flattened weight and gradient buffers (weight [out, in, k, k], PyTorch's
// layout; bias [out]), reordered into (and the gradient out of) the layout
// the primitives prefer, in buffers the plan owns. The pooling workspace
// (where each maximum came from) is owned per plan too. Hot-path calls
// allocate nothing once a batch size has been seen. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "worker/nn/layers.h"

namespace psforge::nn {

enum class ImageLayout { kPlain, kBlocked };

// kBlocked when the channel count allows it (a multiple of 16), else kPlain.
ImageLayout PreferredLayout(int64_t channels);

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
  Conv2d(DnnlContext* ctx, Window window, ImageLayout in = ImageLayout::kPlain,
         ImageLayout out = ImageLayout::kPlain);
  ~Conv2d() override;

  void Bind(const float* weight, const float* bias, float* dweight, float* dbias);
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  struct Plan;
  Plan& PlanFor(int64_t n);

  DnnlContext* ctx_;
  Window w_;
  ImageLayout in_, out_;
  const float* weight_ = nullptr;
  const float* bias_ = nullptr;
  float* dweight_ = nullptr;
  float* dbias_ = nullptr;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

// Max pooling per channel (out_c == in_c); padding counts as -infinity.
class MaxPool2d final : public Layer {
 public:
  MaxPool2d(DnnlContext* ctx, Window window, ImageLayout layout = ImageLayout::kPlain);
  ~MaxPool2d() override;

  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  // Uses the workspace of the last Forward of this n.
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  struct Plan;
  Plan& PlanFor(int64_t n);

  DnnlContext* ctx_;
  Window w_;
  ImageLayout layout_;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

// [c, h, w] channel-blocked samples to plain rows of c*h*w (nchw order).
class Flatten final : public Layer {
 public:
  Flatten(DnnlContext* ctx, int64_t channels, int64_t height, int64_t width);
  ~Flatten() override;

  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  struct Plan;
  Plan& PlanFor(int64_t n);

  DnnlContext* ctx_;
  int64_t c_, h_, w_;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

}  // namespace psforge::nn
