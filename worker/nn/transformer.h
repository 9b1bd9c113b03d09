// The layers of a Transformer on sequences ([positions, features] per
// sample, plain rows): a learned position embedding, layer normalisation,
// multi-head self-attention, and the mean over positions. GELU is an Eltwise (nn/layers.h); a block
// is residual stacks of these (nn/stack.h).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "worker/nn/buffer.h"
#include "worker/nn/layers.h"

namespace psforge::nn {

// y[s, t] = x[s, t] + weight[t]: weight [positions, dim].
class PositionEmbedding final : public Layer {
 public:
  PositionEmbedding(int64_t positions, int64_t dim) : positions_(positions), dim_(dim) {}

  void Bind(const float* weight, float* dweight);
  void MoveGradients(const float* from, float* to) override { dweight_ = MovedTo(dweight_, from, to); }
  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  int64_t positions_, dim_;
  const float* weight_ = nullptr;
  float* dweight_ = nullptr;
};

// y[s] = the mean of x[s, t] over the positions t: [n, positions, dim] to [n, dim].
class MeanPool final : public Layer {
 public:
  MeanPool(int64_t positions, int64_t dim) : positions_(positions), dim_(dim) {}

  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

 private:
  int64_t positions_, dim_;
};

// Layer normalisation over the last dimension of each of n rows of
// `features` (oneDNN's layer_normalization), with a scale and a shift per
// feature; the same in training and inference (each row's own statistics).
class LayerNorm final : public Layer {
 public:
  LayerNorm(DnnlContext* ctx, int64_t features);
  ~LayerNorm() override;

  void Bind(const float* scale, const float* shift, float* dscale, float* dshift);
  void MoveGradients(const float* from, float* to) override {
    dscale_ = MovedTo(dscale_, from, to);
    dshift_ = MovedTo(dshift_, from, to);
  }
  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;

  static constexpr float kEpsilon = 1e-5f;  // PyTorch's default

 private:
  struct Plan;

  DnnlContext* ctx_;
  int64_t features_;
  const float* scale_ = nullptr;
  const float* shift_ = nullptr;
  float* dscale_ = nullptr;
  float* dshift_ = nullptr;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

// Multi-head self-attention over [positions, dim] per sample, as PyTorch's
// nn.MultiheadAttention with batch_first and the query, key and value all
// the input: qkv = x in_proj^T + in_bias (in_proj [3 dim, dim], the query's
// rows first); per head h (dim / heads features each) softmax(q k^T /
// sqrt(dim / heads)) v, with position i seeing only positions <= i when
// `causal`; the heads side by side through out_proj [dim, dim] and its
// bias. In training, `dropout` zeroes each attention probability with that
// rate (and scales the rest by 1 / (1 - rate)), a mask drawn from (seed,
// step, record; PassSamples). Products are oneDNN batched matmuls, the
// softmax oneDNN's; their backward passes are matmuls on transposed views
// (and a loop for the softmax's). They run a few samples at a time, so
// that each reads what the last wrote from the cache.
class Attention final : public Layer {
 public:
  Attention(DnnlContext* ctx, int64_t positions, int64_t dim, int64_t heads, bool causal, double dropout = 0.0,
            uint64_t seed = 0);
  ~Attention() override;

  void Bind(const float* in_proj, const float* in_bias, const float* out_proj, const float* out_bias,
            float* din_proj, float* din_bias, float* dout_proj, float* dout_bias);
  void MoveGradients(const float* from, float* to) override {
    in_.MoveGradients(from, to);
    out_.MoveGradients(from, to);
  }
  dnnl::memory::desc Prepare(int64_t n, const dnnl::memory::desc& in) override;
  void Forward(const float* x, float* y, int64_t n, Pass pass) override;
  void Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) override;
  void AppendImplementations(const std::string& name, std::vector<std::string>* out) const override;
  void set_samples(const PassSamples& samples) override { samples_ = samples; }
  // The last training pass's dropout mask for batches of n, [n, heads,
  // positions, positions] (0 or 1 / (1 - rate)); for tests.
  const float* dropout_mask(int64_t n);

 private:
  struct Plan;
  // Points the products at the queries, keys and values of the chunk from sample s0.
  void PointHeads(Plan& p, int64_t s0);

  DnnlContext* ctx_;
  int64_t positions_, dim_, heads_, head_dim_;
  bool causal_;
  double rate_;
  uint64_t seed_;
  PassSamples samples_;
  uint16_t threshold_;  // a probability is kept when its 16 random bits are >= this
  Linear in_, out_;
  std::vector<std::pair<int64_t, std::unique_ptr<Plan>>> plans_;
};

}  // namespace psforge::nn
