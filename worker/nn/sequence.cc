#include "worker/nn/sequence.h"

#include <algorithm>
#include <cstring>

#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

using dnnl::memory;

// ---- Embedding --------------------------------------------------------------

Embedding::Embedding(int64_t vocabulary, int64_t dim, int64_t positions)
    : vocabulary_(vocabulary), dim_(dim), positions_(positions) {}

void Embedding::Bind(const float* weight, float* dweight) {
  weight_ = weight;
  dweight_ = dweight;
}

dnnl::memory::desc Embedding::Prepare(int64_t n, const dnnl::memory::desc&) {
  return Matrix(n * positions_, dim_);
}

void Embedding::Forward(const float* x, float* y, int64_t n, Pass) {
  const std::size_t row = static_cast<std::size_t>(dim_) * sizeof(float);
  for (int64_t i = 0; i < n * positions_; ++i) {
    const auto id = static_cast<int64_t>(x[i]);
    // The readers only make ids in range; anything else reads as zeros.
    if (id >= 0 && id < vocabulary_) {
      std::memcpy(y + i * dim_, weight_ + id * dim_, row);
    } else {
      std::memset(y + i * dim_, 0, row);
    }
  }
}

void Embedding::Backward(const float* x, const float*, const float* dy, float*, int64_t n) {
  if (!accumulate_) std::fill(dweight_, dweight_ + vocabulary_ * dim_, 0.0f);
  for (int64_t i = 0; i < n * positions_; ++i) {
    const auto id = static_cast<int64_t>(x[i]);
    if (id < 0 || id >= vocabulary_) continue;
    float* d = dweight_ + id * dim_;
    const float* g = dy + i * dim_;
    for (int64_t k = 0; k < dim_; ++k) d[k] += g[k];
  }
}

// ---- Lstm -------------------------------------------------------------------

struct Lstm::Plan {
  dnnl::lstm_forward fwd;
  dnnl::lstm_backward bwd;
  memory x, y, dy, dx, workspace;
  Converted w_ih_fwd, w_hh_fwd, b_fwd;  // weights as the forward pass wants them
  Converted w_ih_bwd, w_hh_bwd, b_bwd;  // and as the backward pass does
  Converted dw_ih, dw_hh, db;           // gradients, out to the caller's layout
  std::vector<float> scratch_dx;        // when the caller needs no input gradient
  Args fwd_args, bwd_args;
};

Lstm::Lstm(DnnlContext* ctx, int64_t positions, int64_t in, int64_t hidden)
    : ctx_(ctx), positions_(positions), in_(in), hidden_(hidden) {}
Lstm::~Lstm() = default;

void Lstm::Bind(const float* weight_ih, const float* weight_hh, const float* bias, float* dweight_ih,
                float* dweight_hh, float* dbias) {
  w_ih_ = weight_ih;
  w_hh_ = weight_hh;
  bias_ = bias;
  dw_ih_ = dweight_ih;
  dw_hh_ = dweight_hh;
  dbias_ = dbias;
}

memory::desc Lstm::Prepare(int64_t n, const memory::desc&) {
  Plan& plan = FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    using tag = memory::format_tag;
    const auto f32 = memory::data_type::f32;
    auto x_md = memory::desc({positions_, n, in_}, f32, tag::ntc);
    auto y_md = memory::desc({positions_, n, hidden_}, f32, tag::ntc);
    // PyTorch's [4 hidden, in] is oneDNN's ldgoi; its [4 hidden] bias, ldgo.
    auto w_ih_user = memory::desc({1, 1, in_, 4, hidden_}, f32, tag::ldgoi);
    auto w_hh_user = memory::desc({1, 1, hidden_, 4, hidden_}, f32, tag::ldgoi);
    auto b_user = memory::desc({1, 1, 4, hidden_}, f32, tag::ldgo);
    auto w_ih_any = memory::desc({1, 1, in_, 4, hidden_}, f32, tag::any);
    auto w_hh_any = memory::desc({1, 1, hidden_, 4, hidden_}, f32, tag::any);
    const memory::desc none;  // zero initial states; final states not kept
    const auto dir = dnnl::rnn_direction::unidirectional_left2right;
    dnnl::lstm_forward::primitive_desc fwd_pd(
        {dnnl::prop_kind::forward_training, dir, x_md, none, none, w_ih_any, w_hh_any, b_user, y_md, none, none},
        eng);
    dnnl::lstm_backward::primitive_desc bwd_pd({dnnl::prop_kind::backward, dir, x_md, none, none, w_ih_any, w_hh_any,
                                                b_user, y_md, none, none, x_md, none, none, w_ih_any, w_hh_any,
                                                b_user, y_md, none, none},
                                               eng, fwd_pd);
    auto p = std::make_unique<Plan>();
    p->fwd = dnnl::lstm_forward(fwd_pd);
    p->bwd = dnnl::lstm_backward(bwd_pd);
    p->x = Unbound(x_md, eng);
    p->y = Unbound(y_md, eng);
    p->dy = Unbound(y_md, eng);
    p->dx = Unbound(x_md, eng);
    p->workspace = memory(fwd_pd.workspace_desc(), eng);
    p->w_ih_fwd = Converted(w_ih_user, fwd_pd.weights_layer_desc(), eng);
    p->w_hh_fwd = Converted(w_hh_user, fwd_pd.weights_iter_desc(), eng);
    p->b_fwd = Converted(b_user, fwd_pd.bias_desc(), eng);
    p->w_ih_bwd = Converted(w_ih_user, bwd_pd.weights_layer_desc(), eng);
    p->w_hh_bwd = Converted(w_hh_user, bwd_pd.weights_iter_desc(), eng);
    p->b_bwd = Converted(b_user, bwd_pd.bias_desc(), eng);
    p->dw_ih = Converted(w_ih_user, bwd_pd.diff_weights_layer_desc(), eng);
    p->dw_hh = Converted(w_hh_user, bwd_pd.diff_weights_iter_desc(), eng);
    p->db = Converted(b_user, bwd_pd.diff_bias_desc(), eng);
    p->fwd_args = {{DNNL_ARG_SRC_LAYER, p->x},
                   {DNNL_ARG_WEIGHTS_LAYER, p->w_ih_fwd.internal},
                   {DNNL_ARG_WEIGHTS_ITER, p->w_hh_fwd.internal},
                   {DNNL_ARG_BIAS, p->b_fwd.internal},
                   {DNNL_ARG_DST_LAYER, p->y},
                   {DNNL_ARG_WORKSPACE, p->workspace}};
    p->bwd_args = {{DNNL_ARG_SRC_LAYER, p->x},
                   {DNNL_ARG_WEIGHTS_LAYER, p->w_ih_bwd.internal},
                   {DNNL_ARG_WEIGHTS_ITER, p->w_hh_bwd.internal},
                   {DNNL_ARG_BIAS, p->b_bwd.internal},
                   {DNNL_ARG_DST_LAYER, p->y},
                   {DNNL_ARG_DIFF_DST_LAYER, p->dy},
                   {DNNL_ARG_WORKSPACE, p->workspace},
                   {DNNL_ARG_DIFF_SRC_LAYER, p->dx},
                   {DNNL_ARG_DIFF_WEIGHTS_LAYER, p->dw_ih.internal},
                   {DNNL_ARG_DIFF_WEIGHTS_ITER, p->dw_hh.internal},
                   {DNNL_ARG_DIFF_BIAS, p->db.internal}};
    return p;
  });
  // oneDNN 2.6's f32 LSTM on CPUs is its gemm-based implementation, named
  // "ref" (the recurrence is reference code around jit gemm calls);
  // there is no other, and the no-reference-kernel test allows it by name.
  Record("lstm forward", ImplOf(plan.fwd));
  Record("lstm backward", ImplOf(plan.bwd));
  for (const Converted* c : {&plan.w_ih_fwd, &plan.w_hh_fwd, &plan.b_fwd, &plan.w_ih_bwd, &plan.w_hh_bwd,
                             &plan.b_bwd})
    Record("reorder weights", c->Impl());
  for (const Converted* c : {&plan.dw_ih, &plan.dw_hh, &plan.db}) Record("reorder weight gradient", c->Impl());
  return Matrix(n * positions_, hidden_);
}

void Lstm::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = Find(plans_, n);
  Point(p.x, x);
  Point(p.y, y);
  p.w_ih_fwd.In(ctx_->stream, w_ih_);
  p.w_hh_fwd.In(ctx_->stream, w_hh_);
  p.b_fwd.In(ctx_->stream, bias_);
  p.fwd.execute(ctx_->stream, p.fwd_args);
  ctx_->stream.wait();
}

void Lstm::Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) {
  Plan& p = Find(plans_, n);
  if (dx == nullptr) {
    p.scratch_dx.resize(static_cast<std::size_t>(n * positions_ * in_));
    dx = p.scratch_dx.data();
  }
  Point(p.x, x);
  Point(p.y, y);
  Point(p.dy, dy);
  Point(p.dx, dx);
  p.w_ih_bwd.In(ctx_->stream, w_ih_);
  p.w_hh_bwd.In(ctx_->stream, w_hh_);
  p.b_bwd.In(ctx_->stream, bias_);
  ctx_->stream.wait();
  // oneDNN adds the weights' gradients to what the buffers hold: start at zero.
  struct Target {
    Converted* c;
    float* user;
  };
  for (Target t : {Target{&p.dw_ih, dw_ih_}, Target{&p.dw_hh, dw_hh_}, Target{&p.db, dbias_}}) {
    if (!t.c->needed) Point(t.c->user, t.user);
    std::memset(t.c->internal.get_data_handle(), 0, t.c->internal.get_desc().get_size());
  }
  p.bwd.execute(ctx_->stream, p.bwd_args);
  p.dw_ih.Out(ctx_->stream, dw_ih_);
  p.dw_hh.Out(ctx_->stream, dw_hh_);
  p.db.Out(ctx_->stream, dbias_);
  ctx_->stream.wait();
  // One position: h before it is zero, so weight_hh has no gradient; oneDNN
  // 2.6 leaves non-zero values there (the op test's t1 case pins this).
  if (positions_ == 1) std::fill(dw_hh_, dw_hh_ + 4 * hidden_ * hidden_, 0.0f);
}

}  // namespace psforge::nn
