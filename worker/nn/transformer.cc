#include "worker/nn/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/split_mix.h"
#include "common/vector_clones.h"
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
  AddToEachSample(y, x, weight_, n, positions_ * dim_);
}

void PositionEmbedding::Backward(const float*, const float*, const float* dy, float* dx, int64_t n) {
  const int64_t per_sample = positions_ * dim_;
  SumSamples(dweight_, dy, n, per_sample);
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

namespace {

// The softmax's backward over rows of t probabilities p and their
// gradients dp: ds = p (dp - sum(p dp)) per row (oneDNN 2.6 has only a
// reference kernel for it below AVX-512). The dot product runs in 16 lanes
// (vectorised without reassociating anything); a masked score has p = 0,
// so its gradient comes out 0.
PSF_VECTOR_CLONES void SoftmaxBackwardRows(const float* __restrict p, const float* __restrict dp,
                                           float* __restrict ds, int64_t rows, int64_t t) {
  constexpr int64_t kLanes = 16;
  for (int64_t r = 0; r < rows; ++r, p += t, dp += t, ds += t) {
    float lanes[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= t; j += kLanes)
      for (int64_t l = 0; l < kLanes; ++l) lanes[l] += p[j + l] * dp[j + l];
    float dot = 0;
    for (int64_t l = 0; l < kLanes; ++l) dot += lanes[l];
    for (; j < t; ++j) dot += p[j] * dp[j];
    for (j = 0; j < t; ++j) ds[j] = p[j] * (dp[j] - dot);
  }
}

PSF_VECTOR_CLONES void MultiplyInto(float* __restrict y, const float* __restrict a, const float* __restrict b,
                                    int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

PSF_VECTOR_CLONES void MultiplyBy(float* __restrict y, const float* __restrict b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= b[i];
}

// The number of samples whose heads go through the attention's products
// together: a divisor of n whose probabilities ([chunk x heads, t, t])
// stay within about 256 KiB, so that each product reads what the one
// before it wrote from the cache rather than from memory.
int64_t ChunkOf(int64_t n, int64_t heads, int64_t t) {
  const int64_t fits = std::max<int64_t>(1, (int64_t{64} << 10) / std::max<int64_t>(1, heads * t * t));
  int64_t chunk = 1;
  for (int64_t d = 1; d <= std::min(n, fits); ++d)
    if (n % d == 0) chunk = d;
  return chunk;
}

}  // namespace

struct Attention::Plan {
  // The samples go through the products `chunk` at a time: c = chunk *
  // heads batches of [positions, head_dim] (q, k, v gathered from the rows
  // of qkv, kept for the backward; the chunk's o and the gradients,
  // scattered to the rows of heads and of dqkv) or [positions, positions]
  // (the chunk's gradients dp of the probabilities and ds of the scores).
  // The probabilities p of every sample are kept for the backward; with
  // dropout, pd = p * mask is what mixes the values.
  int64_t chunk = 0;
  Buffer qkv, q, k, v, p, pd, mask, heads;
  Buffer dheads, dqkv;
  Buffer o, dout, dp, ds, dq, dk, dv;
  dnnl::matmul scores, mix, dprobs, dvalues, dqueries, dkeys;
  dnnl::softmax_forward softmax;
  // Bound to the chunk's part of q, k, v and the probabilities at each chunk.
  dnnl::memory q_m, k_m, k_t, v_m, v_t, scores_p, mix_p, dvalues_p, softmax_p;
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
    const int64_t t = positions_, hd = head_dim_;
    auto p = std::make_unique<Plan>();
    p->chunk = ChunkOf(n, heads_, t);
    const int64_t c = p->chunk * heads_;
    for (Buffer* buf : {&p->qkv, &p->dqkv}) *buf = AllocateFloats(rows * 3 * dim_);
    for (Buffer* buf : {&p->heads, &p->dheads}) *buf = AllocateFloats(rows * dim_);
    p->p = AllocateFloats(n * heads_ * t * t);
    if (rate_ > 0)
      for (Buffer* buf : {&p->pd, &p->mask}) *buf = AllocateFloats(n * heads_ * t * t);
    for (Buffer* buf : {&p->q, &p->k, &p->v}) *buf = AllocateFloats(n * heads_ * t * hd);
    for (Buffer* buf : {&p->o, &p->dout, &p->dq, &p->dk, &p->dv}) *buf = AllocateFloats(c * t * hd);
    for (Buffer* buf : {&p->dp, &p->ds}) *buf = AllocateFloats(c * t * t);
    const auto f32 = memory::data_type::f32;
    // [c, rows, cols] plain, and its transpose as a strided view.
    auto plain = [&](int64_t r, int64_t cols) { return memory::desc({c, r, cols}, f32, memory::dims{r * cols, cols, 1}); };
    auto transposed = [&](int64_t r, int64_t cols) {
      return memory::desc({c, cols, r}, f32, memory::dims{r * cols, 1, cols});
    };
    auto bound = [&](const memory::desc& md, const Buffer& buf) { return memory(md, eng, buf.get()); };
    // The queries' 1 / sqrt(head_dim) is the products' output scale.
    dnnl::primitive_attr scaled;
    scaled.set_output_scales(0, {1.0f / std::sqrt(static_cast<float>(hd))});
    auto make = [&](dnnl::matmul* mm, Args* args, const memory::desc& a, const memory& am, const memory::desc& w,
                    const memory& wm, const memory::desc& out, const memory& outm, const dnnl::primitive_attr& attr) {
      *mm = dnnl::matmul(dnnl::matmul::primitive_desc({a, w, out}, attr, eng));
      *args = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, outm}};
    };
    const dnnl::primitive_attr none;
    p->q_m = Unbound(plain(t, hd), eng);
    p->k_m = Unbound(plain(t, hd), eng);
    p->k_t = Unbound(transposed(t, hd), eng);
    p->v_m = Unbound(plain(t, hd), eng);
    p->v_t = Unbound(transposed(t, hd), eng);
    p->scores_p = Unbound(plain(t, t), eng);
    p->mix_p = Unbound(plain(t, t), eng);
    p->dvalues_p = Unbound(transposed(t, t), eng);
    make(&p->scores, &p->scores_args, plain(t, hd), p->q_m, transposed(t, hd), p->k_t, plain(t, t), p->scores_p,
         scaled);  // q k^T / sqrt(hd)
    make(&p->mix, &p->mix_args, plain(t, t), p->mix_p, plain(t, hd), p->v_m, plain(t, hd),
         bound(plain(t, hd), p->o), none);  // p v
    make(&p->dprobs, &p->dprobs_args, plain(t, hd), bound(plain(t, hd), p->dout), transposed(t, hd), p->v_t,
         plain(t, t), bound(plain(t, t), p->dp), none);  // do v^T
    make(&p->dvalues, &p->dvalues_args, transposed(t, t), p->dvalues_p, plain(t, hd), bound(plain(t, hd), p->dout),
         plain(t, hd), bound(plain(t, hd), p->dv), none);  // p^T do
    make(&p->dqueries, &p->dqueries_args, plain(t, t), bound(plain(t, t), p->ds), plain(t, hd), p->k_m,
         plain(t, hd), bound(plain(t, hd), p->dq), scaled);  // ds k / sqrt(hd)
    make(&p->dkeys, &p->dkeys_args, transposed(t, t), bound(transposed(t, t), p->ds), plain(t, hd), p->q_m,
         plain(t, hd), bound(plain(t, hd), p->dk), scaled);  // ds^T q / sqrt(hd)
    const memory::desc rows_md = Matrix(c * t, t);
    dnnl::softmax_forward::primitive_desc softmax_pd({dnnl::prop_kind::forward_training, rows_md, 1}, eng);
    p->softmax = dnnl::softmax_forward(softmax_pd);
    p->softmax_p = Unbound(rows_md, eng);
    p->softmax_args = {{DNNL_ARG_SRC, p->softmax_p}, {DNNL_ARG_DST, p->softmax_p}};
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

// Copies the heads of samples [s0, s0 + count) between rows of `width`
// floats (the part at `offset` of each row; head h at offset + h * hd) and
// [sample, head, position, head_dim] batches. Loops, not a memcpy of a
// head's row (which GCC makes of such a loop unless told not to): a
// library call for 24 floats cost 5% of a step.
// (GCC's attribute; Clang, which builds the fuzz targets, has no such pass.)
#if defined(__clang__)
#define PSF_INLINE_COPIES
#else
#define PSF_INLINE_COPIES __attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
namespace {
PSF_INLINE_COPIES PSF_VECTOR_CLONES void GatherHeads(const float* __restrict rows, int64_t width, int64_t offset,
                                                     float* __restrict batches, int64_t s0, int64_t count,
                                                     int64_t heads, int64_t t, int64_t hd) {
  for (int64_t s = 0; s < count; ++s)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < t; ++i) {
        float* to = batches + ((s * heads + h) * t + i) * hd;
        const float* from = rows + ((s0 + s) * t + i) * width + offset + h * hd;
        for (int64_t c = 0; c < hd; ++c) to[c] = from[c];
      }
}
PSF_INLINE_COPIES PSF_VECTOR_CLONES void ScatterHeads(const float* __restrict batches, float* __restrict rows,
                                                      int64_t width, int64_t offset, int64_t s0, int64_t count,
                                                      int64_t heads, int64_t t, int64_t hd) {
  for (int64_t s = 0; s < count; ++s)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < t; ++i) {
        float* to = rows + ((s0 + s) * t + i) * width + offset + h * hd;
        const float* from = batches + ((s * heads + h) * t + i) * hd;
        for (int64_t c = 0; c < hd; ++c) to[c] = from[c];
      }
}
}  // namespace
#undef PSF_INLINE_COPIES

void Attention::PointHeads(Plan& p, int64_t s0) {
  const int64_t at = s0 * heads_ * positions_ * head_dim_;
  Point(p.q_m, p.q.get() + at);
  Point(p.k_m, p.k.get() + at);
  Point(p.k_t, p.k.get() + at);
  Point(p.v_m, p.v.get() + at);
  Point(p.v_t, p.v.get() + at);
}

void Attention::Forward(const float* x, float* y, int64_t n, Pass pass) {
  Plan& p = Find(plans_, n);
  const int64_t t = positions_, hd = head_dim_, rows = n * positions_;
  const int64_t per_sample = heads_ * t * t;  // probabilities
  const bool dropping = rate_ > 0 && pass == Pass::kTraining;
  in_.Forward(x, p.qkv.get(), rows, pass);
  for (int64_t s0 = 0; s0 < n; s0 += p.chunk) {
    PointHeads(p, s0);
    const int64_t at = s0 * heads_ * t * hd;
    GatherHeads(p.qkv.get(), 3 * dim_, 0, p.q.get() + at, s0, p.chunk, heads_, t, hd);
    GatherHeads(p.qkv.get(), 3 * dim_, dim_, p.k.get() + at, s0, p.chunk, heads_, t, hd);
    GatherHeads(p.qkv.get(), 3 * dim_, 2 * dim_, p.v.get() + at, s0, p.chunk, heads_, t, hd);
    float* probs = p.p.get() + s0 * per_sample;
    Point(p.scores_p, probs);
    p.scores.execute(ctx_->stream, p.scores_args);
    ctx_->stream.wait();
    if (causal_) {
      constexpr float kMasked = -std::numeric_limits<float>::infinity();  // exp gives exactly 0
      for (int64_t bi = 0; bi < p.chunk * heads_; ++bi)
        for (int64_t i = 0; i < t; ++i) std::fill(probs + (bi * t + i) * t + i + 1, probs + (bi * t + i + 1) * t, kMasked);
    }
    Point(p.softmax_p, probs);
    p.softmax.execute(ctx_->stream, p.softmax_args);
    ctx_->stream.wait();
    const float* mixed = probs;
    if (rate_ > 0) {
      float* kept = p.pd.get() + s0 * per_sample;
      const int64_t size = p.chunk * per_sample;
      if (dropping) {
        float* mask = p.mask.get() + s0 * per_sample;
        // The chunk's samples, drawn as in a draw over the whole batch.
        PassSamples chunk{samples_.step, nullptr, p.chunk, samples_.first + s0};
        if (samples_.rows != nullptr && samples_.n == n) chunk.rows = samples_.rows + s0;
        DrawDropoutMask(seed_, chunk, threshold_, static_cast<float>(1.0 / (1.0 - rate_)), mask, size);
        MultiplyInto(kept, probs, mask, size);
      } else {
        std::memcpy(kept, probs, static_cast<std::size_t>(size) * sizeof(float));
      }
      mixed = kept;
    }
    Point(p.mix_p, mixed);
    p.mix.execute(ctx_->stream, p.mix_args);
    ctx_->stream.wait();
    ScatterHeads(p.o.get(), p.heads.get(), dim_, 0, s0, p.chunk, heads_, t, hd);
  }
  out_.Forward(p.heads.get(), y, rows, pass);
}

void Attention::Backward(const float* x, const float*, const float* dy, float* dx, int64_t n) {
  Plan& p = Find(plans_, n);
  const int64_t t = positions_, hd = head_dim_, rows = n * positions_;
  const int64_t per_sample = heads_ * t * t;
  out_.Backward(p.heads.get(), nullptr, dy, p.dheads.get(), rows);
  for (int64_t s0 = 0; s0 < n; s0 += p.chunk) {
    PointHeads(p, s0);
    GatherHeads(p.dheads.get(), dim_, 0, p.dout.get(), s0, p.chunk, heads_, t, hd);
    const float* probs = p.p.get() + s0 * per_sample;
    const int64_t size = p.chunk * per_sample;
    p.dprobs.execute(ctx_->stream, p.dprobs_args);
    Point(p.dvalues_p, rate_ > 0 ? p.pd.get() + s0 * per_sample : probs);
    p.dvalues.execute(ctx_->stream, p.dvalues_args);
    ctx_->stream.wait();
    if (rate_ > 0)  // the gradient of the probabilities before dropout
      MultiplyBy(p.dp.get(), p.mask.get() + s0 * per_sample, size);
    SoftmaxBackwardRows(probs, p.dp.get(), p.ds.get(), p.chunk * heads_ * t, t);
    p.dqueries.execute(ctx_->stream, p.dqueries_args);
    p.dkeys.execute(ctx_->stream, p.dkeys_args);
    ctx_->stream.wait();
    ScatterHeads(p.dq.get(), p.dqkv.get(), 3 * dim_, 0, s0, p.chunk, heads_, t, hd);
    ScatterHeads(p.dk.get(), p.dqkv.get(), 3 * dim_, dim_, s0, p.chunk, heads_, t, hd);
    ScatterHeads(p.dv.get(), p.dqkv.get(), 3 * dim_, 2 * dim_, s0, p.chunk, heads_, t, hd);
  }
  in_.Backward(x, nullptr, p.dqkv.get(), dx, rows);
}

void Attention::AppendImplementations(const std::string& name, std::vector<std::string>* out) const {
  Layer::AppendImplementations(name, out);
  in_.AppendImplementations(name + ".in_proj", out);
  out_.AppendImplementations(name + ".out_proj", out);
}

}  // namespace psforge::nn
