// Convolution and max pooling on oneDNN, and the flatten that ends a stack
// of image layers.
//
// Image activations are in the layouts oneDNN chooses for this CPU
// (nn/layers.h): a convolution picks its input and output layouts
// (format_tag::any) and reorders its input when the previous layer's output
// is laid out otherwise; pooling and batch normalisation work in the layout
// they are handed unless oneDNN has only a reference kernel for it, and then
// reorder into the layout this CPU's convolutions use. Flatten turns any
// layout into the plain [c*h*w] row (nchw order) a Linear layer reads, and
// back for gradients.
//
// Like Linear, each layer owns its primitives (a Plan per batch size, made
// by Prepare) and no activation tensors: inputs, outputs and gradients are
// caller-owned, and the convolution's parameters are views into the model's
// flattened weight and gradient buffers (weight [out, in, k, k], PyTorch's
// layout; bias [out]), reordered into (and the gradient out of) the layout
// the primitives chose, once per step, in buffers the plan owns. The
// pooling workspace (where each maximum came from) is owned per plan too.
// Hot-path calls allocate nothing once a batch size has been prepared. Not
// thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "worker/nn/layers.h"

namespace psforge::nn {

// The layout this CPU's convolutions produce for n images of [c, h, w]
// (what a 3x3 convolution from c to c channels picks): where pooling or
// batch normalisation have only reference kernels for the layout handed
// to them, they work in this one.
dnnl::memory::desc PreferredImageLayout(const dnnl::engine& engine, int64_t n, int64_t c, int64_t h, int64_t w);

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
  // `choose_layouts` false: plain nchw input and output (for a test that
  // compares the chosen layouts with the plain ones).
  Conv2d(DnnlContext* ctx, Window window, bool choose_layouts = true);
  ~Conv2d() override;

  void Bind(const float* weight, const float* bias, float* dweight, float* dbias);
  void MoveGradients(const float* from, float* to) override {
    dweight_ = MovedTo(dweight_, from, to);
    dbias_ = MovedTo(dbias_, from, to);
  }
  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  struct Plan;

  DnnlContext* ctx_;
  Window w_;
  bool choose_layouts_;
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

  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;

  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  // Uses the workspace of the last Forward of this n.
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  struct Plan;

  DnnlContext* ctx_;
  Window w_;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

// [c, h, w] samples in any layout to plain rows of c*h*w (nchw order): a
// reorder, or a copy when the input is plain already.
class Flatten final : public Layer {
 public:
  Flatten(DnnlContext* ctx, int64_t channels, int64_t height, int64_t width);
  ~Flatten() override;

  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;

  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  struct Plan;

  DnnlContext* ctx_;
  int64_t c_, h_, w_;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

}  // namespace psforge::nn
