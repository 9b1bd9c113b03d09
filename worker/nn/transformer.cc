#include "worker/nn/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/split_mix.h"
#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

using dnnl::memory;

// ---- PositionEmbedding ------------------------------------------------------

void PositionEmbedding::Bind(const float* weight, float* dweight) {
  weight_ = weight;
  dweight_ = dweight;
}

memory::desc PositionEmbedding::Prepare(int64_t n, const memory::desc&) { return Matrix(n * positions_, dim_); }

void PositionEmbedding::Forward(const float* x, float* y, int64_t n, Pass) {
  const int64_t per_sample = positions_ * dim_;
  for (int64_t s = 0; s < n; ++s)
    for (int64_t i = 0; i < per_sample; ++i) y[s * per_sample + i] = x[s * per_sample + i] + weight_[i];
}

void PositionEmbedding::Backward(const float*, const float*, const float* dy, float* dx, int64_t n) {
  const int64_t per_sample = positions_ * dim_;
  std::fill(dweight_, dweight_ + per_sample, 0.0f);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t i = 0; i < per_sample; ++i) dweight_[i] += dy[s * per_sample + i];
  if (dx != nullptr) std::memcpy(dx, dy, static_cast<std::size_t>(n * per_sample) * sizeof(float));
}

// ---- MeanPool ---------------------------------------------------------------

memory::desc MeanPool::Prepare(int64_t n, const memory::desc&) { return Matrix(n, dim_); }

void MeanPool::Forward(const float* x, float* y, int64_t n, Pass) {
  const float inv = 1.0f / static_cast<float>(positions_);
  for (int64_t s = 0; s < n; ++s) {
    float* out = y + s * dim_;
    std::fill(out, out + dim_, 0.0f);
    for (int64_t t = 0; t < positions_; ++t) {
      const float* row = x + (s * positions_ + t) * dim_;
      for (int64_t c = 0; c < dim_; ++c) out[c] += row[c];
    }
    for (int64_t c = 0; c < dim_; ++c) out[c] *= inv;
  }
}

void MeanPool::Backward(const float*, const float*, const float* dy, float* dx, int64_t n) {
  if (dx == nullptr) return;
  const float inv = 1.0f / static_cast<float>(positions_);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t t = 0; t < positions_; ++t)
      for (int64_t c = 0; c < dim_; ++c) dx[(s * positions_ + t) * dim_ + c] = dy[s * dim_ + c] * inv;
}

// ---- LayerNorm --------------------------------------------------------------

struct LayerNorm::Plan {
  dnnl::layer_normalization_forward fwd;
  dnnl::layer_normalization_backward bwd;
  memory x, y, dy, dx, scale, shift, dscale, dshift, mean, variance;
  Buffer scratch_dx;  // when the caller needs no input gradient
  Args fwd_args, bwd_args;
};

LayerNorm::LayerNorm(DnnlContext* ctx, int64_t features) : ctx_(ctx), features_(features) {}
LayerNorm::~LayerNorm() = default;

void LayerNorm::Bind(const float* scale, const float* shift, float* dscale, float* dshift) {
  scale_ = scale;
  shift_ = shift;
  dscale_ = dscale;
  dshift_ = dshift;
}

memory::desc LayerNorm::Prepare(int64_t n, const memory::desc&) {
  Plan& plan = FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    using flags = dnnl::normalization_flags;
    const auto affine = flags::use_scale | flags::use_shift;
    const memory::desc md = Matrix(n, features_);
    dnnl::layer_normalization_forward::primitive_desc fwd_pd(
        {dnnl::prop_kind::forward_training, md, kEpsilon, affine}, eng);
    dnnl::layer_normalization_backward::primitive_desc bwd_pd({dnnl::prop_kind::backward, md, md, kEpsilon, affine},
                                                               eng, fwd_pd);
    auto p = std::make_unique<Plan>();
    p->fwd = dnnl::layer_normalization_forward(fwd_pd);
    p->bwd = dnnl::layer_normalization_backward(bwd_pd);
    const memory::desc c_md = Vector(features_);
    for (memory* m : {&p->x, &p->y, &p->dy, &p->dx}) *m = Unbound(md, eng);
    for (memory* m : {&p->scale, &p->shift, &p->dscale, &p->dshift}) *m = Unbound(c_md, eng);
    p->mean = memory(fwd_pd.mean_desc(), eng);
    p->variance = memory(fwd_pd.variance_desc(), eng);
    p->fwd_args = {{DNNL_ARG_SRC, p->x},     {DNNL_ARG_DST, p->y},          {DNNL_ARG_SCALE, p->scale},
                   {DNNL_ARG_SHIFT, p->shift}, {DNNL_ARG_MEAN, p->mean}, {DNNL_ARG_VARIANCE, p->variance}};
    p->bwd_args = {{DNNL_ARG_SRC, p->x},           {DNNL_ARG_DIFF_DST, p->dy},      {DNNL_ARG_MEAN, p->mean},
                   {DNNL_ARG_VARIANCE, p->variance}, {DNNL_ARG_SCALE, p->scale},      {DNNL_ARG_SHIFT, p->shift},
                   {DNNL_ARG_DIFF_SRC, p->dx},     {DNNL_ARG_DIFF_SCALE, p->dscale}, {DNNL_ARG_DIFF_SHIFT, p->dshift}};
    return p;
  });
  Record("layer_normalization forward", ImplOf(plan.fwd));
  Record("layer_normalization backward", ImplOf(plan.bwd));
  return Matrix(n, features_);
}

void LayerNorm::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = Find(plans_, n);
  Point(p.x, x);
  Point(p.y, y);
  Point(p.scale, scale_);
  Point(p.shift, shift_);
  p.fwd.execute(ctx_->stream, p.fwd_args);
  ctx_->stream.wait();
}

void LayerNorm::Backward(const float* x, const float*, const float* dy, float* dx, int64_t n) {
  Plan& p = Find(plans_, n);
  if (dx == nullptr) {
    if (!p.scratch_dx) p.scratch_dx = AllocateFloats(n * features_);
    dx = p.scratch_dx.get();
  }
  Point(p.x, x);
  Point(p.dy, dy);
  Point(p.dx, dx);
  Point(p.scale, scale_);
  Point(p.shift, shift_);
  Point(p.dscale, dscale_);
  Point(p.dshift, dshift_);
  p.bwd.execute(ctx_->stream, p.bwd_args);
  ctx_->stream.wait();
}

// ---- Attention --------------------------------------------------------------

struct Attention::Plan {
  // B = n * heads batches of [positions, head_dim] (q, k, v, o and their
  // gradients) or [positions, positions] (the probabilities p and the
  // gradients dp of p and ds of the scores).
  // With dropout, pd = p * mask is what mixes the values.
  Buffer qkv, q, k, v, p, pd, mask, o, heads;
  Buffer dheads, dout, dp, ds, dq, dk, dv, dqkv;
  dnnl::matmul scores, mix, dprobs, dvalues, dqueries, dkeys;
  dnnl::softmax_forward softmax;
  Args scores_args, mix_args, dprobs_args, dvalues_args, dqueries_args, dkeys_args, softmax_args;
};

Attention::Attention(DnnlContext* ctx, int64_t positions, int64_t dim, int64_t heads, bool causal, double dropout,
                     uint64_t seed)
    : ctx_(ctx), positions_(positions), dim_(dim), heads_(heads), head_dim_(dim / heads), causal_(causal),
      rate_(dropout), seed_(SplitMix64(seed)),
      threshold_(static_cast<uint16_t>(std::min(65535.0, std::round(dropout * 65536.0)))),
      in_(ctx, dim, 3 * dim), out_(ctx, dim, dim) {}

const float* Attention::dropout_mask(int64_t n) { return Find(plans_, n).mask.get(); }
Attention::~Attention() = default;

void Attention::Bind(const float* in_proj, const float* in_bias, const float* out_proj, const float* out_bias,
                     float* din_proj, float* din_bias, float* dout_proj, float* dout_bias) {
  in_.Bind(in_proj, in_bias, din_proj, din_bias);
  out_.Bind(out_proj, out_bias, dout_proj, dout_bias);
}

memory::desc Attention::Prepare(int64_t n, const memory::desc&) {
  const int64_t rows = n * positions_;
  in_.Prepare(rows, Matrix(rows, dim_));
  out_.Prepare(rows, Matrix(rows, dim_));
  Plan& plan = FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    const int64_t b = n * heads_, t = positions_, hd = head_dim_;
    auto p = std::make_unique<Plan>();
    for (Buffer* buf : {&p->qkv, &p->dqkv}) *buf = AllocateFloats(rows * 3 * dim_);
    for (Buffer* buf : {&p->heads, &p->dheads}) *buf = AllocateFloats(rows * dim_);
    for (Buffer* buf : {&p->q, &p->k, &p->v, &p->o, &p->dout, &p->dq, &p->dk, &p->dv}) *buf = AllocateFloats(b * t * hd);
    for (Buffer* buf : {&p->p, &p->dp, &p->ds}) *buf = AllocateFloats(b * t * t);
    if (rate_ > 0)
      for (Buffer* buf : {&p->pd, &p->mask}) *buf = AllocateFloats(b * t * t);
    const Buffer& mixed = rate_ > 0 ? p->pd : p->p;  // the probabilities the values are mixed with
    const auto f32 = memory::data_type::f32;
    // [b, rows, cols] plain, and its transpose as a strided view.
    auto plain = [&](int64_t r, int64_t c) { return memory::desc({b, r, c}, f32, memory::dims{r * c, c, 1}); };
    auto transposed = [&](int64_t r, int64_t c) { return memory::desc({b, c, r}, f32, memory::dims{r * c, 1, c}); };
    auto bound = [&](const memory::desc& md, const Buffer& buf) { return memory(md, eng, buf.get()); };
    auto make = [&](dnnl::matmul* mm, Args* args, const memory::desc& a, const Buffer& abuf, const memory::desc& w,
                    const Buffer& wbuf, const memory::desc& c, const Buffer& cbuf) {
      *mm = dnnl::matmul(dnnl::matmul::primitive_desc({a, w, c}, eng));
      *args = {{DNNL_ARG_SRC, bound(a, abuf)}, {DNNL_ARG_WEIGHTS, bound(w, wbuf)}, {DNNL_ARG_DST, bound(c, cbuf)}};
    };
    make(&p->scores, &p->scores_args, plain(t, hd), p->q, transposed(t, hd), p->k, plain(t, t), p->p);  // q k^T
    make(&p->mix, &p->mix_args, plain(t, t), mixed, plain(t, hd), p->v, plain(t, hd), p->o);           // p v
    make(&p->dprobs, &p->dprobs_args, plain(t, hd), p->dout, transposed(t, hd), p->v, plain(t, t), p->dp);  // do v^T
    make(&p->dvalues, &p->dvalues_args, transposed(t, t), mixed, plain(t, hd), p->dout, plain(t, hd), p->dv);  // p^T do
    make(&p->dqueries, &p->dqueries_args, plain(t, t), p->ds, plain(t, hd), p->k, plain(t, hd), p->dq);   // ds k
    make(&p->dkeys, &p->dkeys_args, transposed(t, t), p->ds, plain(t, hd), p->q, plain(t, hd), p->dk);    // ds^T q
    const memory::desc rows_md = Matrix(b * t, t);
    dnnl::softmax_forward::primitive_desc softmax_pd({dnnl::prop_kind::forward_training, rows_md, 1}, eng);
    p->softmax = dnnl::softmax_forward(softmax_pd);
    p->softmax_args = {{DNNL_ARG_SRC, bound(rows_md, p->p)}, {DNNL_ARG_DST, bound(rows_md, p->p)}};
    return p;
  });
  Record("matmul q k^T", ImplOf(plan.scores));
  Record("matmul p v", ImplOf(plan.mix));
  Record("matmul do v^T", ImplOf(plan.dprobs));
  Record("matmul p^T do", ImplOf(plan.dvalues));
  Record("matmul ds k", ImplOf(plan.dqueries));
  Record("matmul ds^T q", ImplOf(plan.dkeys));
  Record("softmax forward", ImplOf(plan.softmax));
  return Matrix(rows, dim_);
}

void Attention::Forward(const float* x, float* y, int64_t n, Pass pass) {
  Plan& p = Find(plans_, n);
  const int64_t t = positions_, hd = head_dim_, rows = n * positions_;
  in_.Forward(x, p.qkv.get(), rows, pass);
  // Each head's queries (scaled by 1/sqrt(head_dim) here, once), keys and
  // values side by side: [sample, head, position, head_dim].
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t s = 0; s < n; ++s)
    for (int64_t h = 0; h < heads_; ++h)
      for (int64_t i = 0; i < t; ++i) {
        const float* row = p.qkv.get() + (s * t + i) * 3 * dim_ + h * hd;
        const int64_t at = ((s * heads_ + h) * t + i) * hd;
        for (int64_t c = 0; c < hd; ++c) p.q[at + c] = row[c] * scale;
        std::memcpy(p.k.get() + at, row + dim_, static_cast<std::size_t>(hd) * sizeof(float));
        std::memcpy(p.v.get() + at, row + 2 * dim_, static_cast<std::size_t>(hd) * sizeof(float));
      }
  p.scores.execute(ctx_->stream, p.scores_args);
  ctx_->stream.wait();
  if (causal_) {
    constexpr float kMasked = -std::numeric_limits<float>::infinity();  // exp gives exactly 0
    for (int64_t bi = 0; bi < n * heads_; ++bi)
      for (int64_t i = 0; i < t; ++i) std::fill(p.p.get() + (bi * t + i) * t + i + 1, p.p.get() + (bi * t + i + 1) * t, kMasked);
  }
  p.softmax.execute(ctx_->stream, p.softmax_args);
  ctx_->stream.wait();
  if (rate_ > 0) {
    const int64_t size = n * heads_ * t * t;
    if (pass == Pass::kTraining) {
      const float keep_scale = static_cast<float>(1.0 / (1.0 - rate_));
      float* mask = p.mask.get();
      DrawDropoutMask(seed_, samples_, threshold_, keep_scale, mask, size);
      for (int64_t i = 0; i < size; ++i) p.pd[i] = p.p[i] * mask[i];
    } else {
      std::memcpy(p.pd.get(), p.p.get(), static_cast<std::size_t>(size) * sizeof(float));
    }
  }
  p.mix.execute(ctx_->stream, p.mix_args);
  ctx_->stream.wait();
  for (int64_t s = 0; s < n; ++s)
    for (int64_t h = 0; h < heads_; ++h)
      for (int64_t i = 0; i < t; ++i)
        std::memcpy(p.heads.get() + (s * t + i) * dim_ + h * hd, p.o.get() + ((s * heads_ + h) * t + i) * hd,
                    static_cast<std::size_t>(hd) * sizeof(float));
  out_.Forward(p.heads.get(), y, rows, pass);
}

void Attention::Backward(const float* x, const float*, const float* dy, float* dx, int64_t n) {
  Plan& p = Find(plans_, n);
  const int64_t t = positions_, hd = head_dim_, rows = n * positions_;
  out_.Backward(p.heads.get(), nullptr, dy, p.dheads.get(), rows);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t h = 0; h < heads_; ++h)
      for (int64_t i = 0; i < t; ++i)
        std::memcpy(p.dout.get() + ((s * heads_ + h) * t + i) * hd, p.dheads.get() + (s * t + i) * dim_ + h * hd,
                    static_cast<std::size_t>(hd) * sizeof(float));
  p.dprobs.execute(ctx_->stream, p.dprobs_args);
  p.dvalues.execute(ctx_->stream, p.dvalues_args);
  ctx_->stream.wait();
  if (rate_ > 0)  // the gradient of the probabilities before dropout
    for (int64_t i = 0; i < n * heads_ * t * t; ++i) p.dp[i] *= p.mask[i];
  // The softmax's backward, ds = p (dp - sum(p dp)) per row, here: oneDNN
  // 2.6 has only a reference kernel for it below AVX-512. Masked scores
  // have p = 0, so their gradient comes out 0.
  for (int64_t row = 0; row < n * heads_ * t; ++row) {
    const float* pr = p.p.get() + row * t;
    const float* dpr = p.dp.get() + row * t;
    float* dsr = p.ds.get() + row * t;
    float dot = 0;
    for (int64_t j = 0; j < t; ++j) dot += pr[j] * dpr[j];
    for (int64_t j = 0; j < t; ++j) dsr[j] = pr[j] * (dpr[j] - dot);
  }
  p.dqueries.execute(ctx_->stream, p.dqueries_args);
  p.dkeys.execute(ctx_->stream, p.dkeys_args);
  ctx_->stream.wait();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int64_t s = 0; s < n; ++s)
    for (int64_t h = 0; h < heads_; ++h)
      for (int64_t i = 0; i < t; ++i) {
        float* row = p.dqkv.get() + (s * t + i) * 3 * dim_ + h * hd;
        const int64_t at = ((s * heads_ + h) * t + i) * hd;
        for (int64_t c = 0; c < hd; ++c) row[c] = p.dq[at + c] * scale;
        std::memcpy(row + dim_, p.dk.get() + at, static_cast<std::size_t>(hd) * sizeof(float));
        std::memcpy(row + 2 * dim_, p.dv.get() + at, static_cast<std::size_t>(hd) * sizeof(float));
      }
  in_.Backward(x, nullptr, p.dqkv.get(), dx, rows);
}

void Attention::AppendImplementations(const std::string& name, std::vector<std::string>* out) const {
  Layer::AppendImplementations(name, out);
  in_.AppendImplementations(name + ".in_proj", out);
  out_.AppendImplementations(name + ".out_proj", out);
}

}  // namespace psforge::nn
