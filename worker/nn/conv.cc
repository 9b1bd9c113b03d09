#include "worker/nn/conv.h"

#include <cstring>

#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

using dnnl::memory;

memory::desc PreferredImageLayout(const dnnl::engine& engine, int64_t n, int64_t c, int64_t h, int64_t w) {
  const memory::dims strides{1, 1}, pad{1, 1};
  dnnl::convolution_forward::primitive_desc pd({dnnl::prop_kind::forward_training,
                                                dnnl::algorithm::convolution_direct, Any({n, c, h, w}),
                                                Any({c, c, 3, 3}), Any({n, c, h, w}), strides, pad, pad},
                                               engine);
  return pd.dst_desc();
}

// ---- Conv2d -----------------------------------------------------------------

struct Conv2d::Plan {
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights bwd_weights;
  Converted x, dx;  // the input (and its gradient) in the layouts the convolution chose
  Converted x_bw;   // the input as backward-weights wants it: x itself unless x_bw_separate
  bool x_bw_separate = false;
  memory b, y, dy, db;
  Converted w_fwd, w_bwd, dw;
  bool shared_weights = false;  // w_bwd is w_fwd
  Args fwd_args, bwd_data_args, bwd_weights_args;
};

Conv2d::Conv2d(DnnlContext* ctx, Window window, bool choose_layouts)
    : ctx_(ctx), w_(window), choose_layouts_(choose_layouts) {}
Conv2d::~Conv2d() = default;

void Conv2d::Bind(const float* weight, const float* bias, float* dweight, float* dbias) {
  weight_ = weight;
  bias_ = bias;
  dweight_ = dweight;
  dbias_ = dbias;
}

memory::desc Conv2d::Prepare(int64_t n, const memory::desc& in) {
  Plan& plan = FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    const memory::dims w_dims{w_.out_c, w_.in_c, w_.kernel, w_.kernel};
    const auto w_user = memory::desc(w_dims, memory::data_type::f32, memory::format_tag::oihw);
    const auto b_md = Vector(w_.out_c);
    const memory::dims strides{w_.stride, w_.stride}, pad{w_.padding, w_.padding};
    const auto alg = dnnl::algorithm::convolution_direct;
    auto image = [&](int64_t c, int64_t h, int64_t w) {
      return choose_layouts_ ? Any({n, c, h, w}) : Tensor(n, c, h, w);
    };
    dnnl::convolution_forward::primitive_desc fwd_pd(
        {dnnl::prop_kind::forward_training, alg, image(w_.in_c, w_.in_h, w_.in_w), Any(w_dims), b_md,
         image(w_.out_c, w_.out_h(), w_.out_w()), strides, pad, pad},
        eng);
    // The backward passes take dy as the forward pass laid y out, and choose
    // their own layouts for x and dx (on AVX2 a first convolution's
    // backward-weights kernel wants x blocked although the forward pass
    // reads it plain; with the forward pass's x it is a reference kernel).
    const memory::desc x_md = fwd_pd.src_desc(), y_md = fwd_pd.dst_desc();
    const auto x_any = image(w_.in_c, w_.in_h, w_.in_w);
    dnnl::convolution_backward_data::primitive_desc bd_pd({alg, x_any, Any(w_dims), y_md, strides, pad, pad}, eng,
                                                          fwd_pd);
    dnnl::convolution_backward_weights::primitive_desc bw_pd(
        {alg, x_any, Any(w_dims), b_md, y_md, strides, pad, pad}, eng, fwd_pd);
    auto p = std::make_unique<Plan>();
    p->fwd = dnnl::convolution_forward(fwd_pd);
    p->bwd_data = dnnl::convolution_backward_data(bd_pd);
    p->bwd_weights = dnnl::convolution_backward_weights(bw_pd);
    p->x = Converted(in, x_md, eng);
    p->x_bw_separate = bw_pd.src_desc() != x_md;
    p->x_bw = p->x_bw_separate ? Converted(in, bw_pd.src_desc(), eng) : p->x;
    p->dx = Converted(in, bd_pd.diff_src_desc(), eng);
    p->b = Unbound(b_md, eng);
    p->y = Unbound(y_md, eng);
    p->dy = Unbound(y_md, eng);
    p->db = Unbound(b_md, eng);
    p->w_fwd = Converted(w_user, fwd_pd.weights_desc(), eng);
    p->dw = Converted(w_user, bw_pd.diff_weights_desc(), eng);
    if (bd_pd.weights_desc() == fwd_pd.weights_desc()) {
      p->w_bwd = p->w_fwd;
      p->shared_weights = true;
    } else {
      p->w_bwd = Converted(w_user, bd_pd.weights_desc(), eng);
    }
    p->fwd_args = {{DNNL_ARG_SRC, p->x.internal}, {DNNL_ARG_WEIGHTS, p->w_fwd.internal}, {DNNL_ARG_BIAS, p->b},
                   {DNNL_ARG_DST, p->y}};
    p->bwd_data_args = {{DNNL_ARG_DIFF_DST, p->dy}, {DNNL_ARG_WEIGHTS, p->w_bwd.internal},
                        {DNNL_ARG_DIFF_SRC, p->dx.internal}};
    p->bwd_weights_args = {{DNNL_ARG_SRC, p->x_bw.internal}, {DNNL_ARG_DIFF_DST, p->dy},
                           {DNNL_ARG_DIFF_WEIGHTS, p->dw.internal}, {DNNL_ARG_DIFF_BIAS, p->db}};
    return p;
  });
  Record("convolution forward", ImplOf(plan.fwd));
  Record("convolution backward_data", ImplOf(plan.bwd_data));
  Record("convolution backward_weights", ImplOf(plan.bwd_weights));
  Record("reorder input", plan.x.Impl());
  Record("reorder input", plan.x_bw.Impl());
  Record("reorder input gradient", plan.dx.Impl());
  Record("reorder weights", plan.w_fwd.Impl());
  Record("reorder weights", plan.w_bwd.Impl());
  Record("reorder weight gradient", plan.dw.Impl());
  return plan.y.get_desc();
}

void Conv2d::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = Find(plans_, n);
  p.x.In(ctx_->stream, x);
  p.w_fwd.In(ctx_->stream, weight_);
  Point(p.b, bias_);
  Point(p.y, y);
  p.fwd.execute(ctx_->stream, p.fwd_args);
  ctx_->stream.wait();
}

void Conv2d::Backward(const float* x, const float*, const float* dy, float* dx, int64_t n) {
  Plan& p = Find(plans_, n);
  if (p.x_bw_separate) {
    p.x_bw.In(ctx_->stream, x);
  } else if (!p.x.needed) {
    Point(p.x.user, x);  // else the forward pass's reorder of x is still there
  }
  Point(p.dy, dy);
  p.dw.Target(dweight_);
  Point(p.db, dbias_);
  p.bwd_weights.execute(ctx_->stream, p.bwd_weights_args);
  p.dw.Out(ctx_->stream, dweight_);
  if (dx != nullptr) {
    if (!p.shared_weights) p.w_bwd.In(ctx_->stream, weight_);
    p.dx.Target(dx);
    p.bwd_data.execute(ctx_->stream, p.bwd_data_args);
    p.dx.Out(ctx_->stream, dx);
  }
  ctx_->stream.wait();
}

// ---- MaxPool2d --------------------------------------------------------------

struct MaxPool2d::Plan {
  dnnl::pooling_forward fwd;
  dnnl::pooling_backward bwd;
  Converted x, dx;  // the input (and its gradient) in the layout the pooling works in
  memory y, dy, workspace;
  Args fwd_args, bwd_args;
};

MaxPool2d::MaxPool2d(DnnlContext* ctx, Window window) : ctx_(ctx), w_(window) { w_.out_c = w_.in_c; }
MaxPool2d::~MaxPool2d() = default;

memory::desc MaxPool2d::Prepare(int64_t n, const memory::desc& in) {
  Plan& plan = FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    const memory::dims strides{w_.stride, w_.stride}, kernel{w_.kernel, w_.kernel}, pad{w_.padding, w_.padding};
    const auto alg = dnnl::algorithm::pooling_max;
    const auto y_any = Any({n, w_.in_c, w_.out_h(), w_.out_w()});
    auto make_fwd = [&](const memory::desc& x_md) {
      return dnnl::pooling_forward::primitive_desc(
          {dnnl::prop_kind::forward_training, alg, x_md, y_any, strides, kernel, pad, pad}, eng);
    };
    auto fwd_pd = make_fwd(in);
    if (IsReference(fwd_pd.impl_info_str())) {
      const auto preferred = PreferredImageLayout(eng, n, w_.in_c, w_.in_h, w_.in_w);
      if (preferred != in) fwd_pd = make_fwd(preferred);
    }
    const memory::desc x_md = fwd_pd.src_desc(), y_md = fwd_pd.dst_desc();
    dnnl::pooling_backward::primitive_desc bwd_pd({alg, x_md, y_md, strides, kernel, pad, pad}, eng, fwd_pd);
    auto p = std::make_unique<Plan>();
    p->fwd = dnnl::pooling_forward(fwd_pd);
    p->bwd = dnnl::pooling_backward(bwd_pd);
    p->x = Converted(in, x_md, eng);
    p->dx = Converted(in, x_md, eng);
    p->y = Unbound(y_md, eng);
    p->dy = Unbound(y_md, eng);
    p->workspace = memory(fwd_pd.workspace_desc(), eng);
    p->fwd_args = {{DNNL_ARG_SRC, p->x.internal}, {DNNL_ARG_DST, p->y}, {DNNL_ARG_WORKSPACE, p->workspace}};
    p->bwd_args = {{DNNL_ARG_DIFF_DST, p->dy}, {DNNL_ARG_DIFF_SRC, p->dx.internal},
                   {DNNL_ARG_WORKSPACE, p->workspace}};
    return p;
  });
  Record("pooling forward", ImplOf(plan.fwd));
  Record("pooling backward", ImplOf(plan.bwd));
  Record("reorder input", plan.x.Impl());
  Record("reorder input gradient", plan.dx.Impl());
  return plan.y.get_desc();
}

void MaxPool2d::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = Find(plans_, n);
  p.x.In(ctx_->stream, x);
  Point(p.y, y);
  p.fwd.execute(ctx_->stream, p.fwd_args);
  ctx_->stream.wait();
}

void MaxPool2d::Backward(const float*, const float*, const float* dy, float* dx, int64_t n) {
  if (dx == nullptr) return;
  Plan& p = Find(plans_, n);
  Point(p.dy, dy);
  p.dx.Target(dx);
  p.bwd.execute(ctx_->stream, p.bwd_args);
  p.dx.Out(ctx_->stream, dx);
  ctx_->stream.wait();
}

// ---- Flatten ----------------------------------------------------------------

struct Flatten::Plan {
  Converted images;  // user: the plain rows; internal: the input's layout
  std::size_t bytes;
};

Flatten::Flatten(DnnlContext* ctx, int64_t channels, int64_t height, int64_t width)
    : ctx_(ctx), c_(channels), h_(height), w_(width) {}
Flatten::~Flatten() = default;

memory::desc Flatten::Prepare(int64_t n, const memory::desc& in) {
  Plan& plan = FindOrMake(plans_, n, [&] {
    const auto plain = Tensor(n, c_, h_, w_);
    auto p = std::make_unique<Plan>();
    p->images = Converted(plain, in.dims().size() == 4 ? in : plain, ctx_->engine);
    p->bytes = plain.get_size();
    return p;
  });
  Record("reorder to plain", plan.images.Impl());
  return Matrix(n, c_ * h_ * w_);
}

void Flatten::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = Find(plans_, n);
  if (!p.images.needed) {
    if (x != y) std::memcpy(y, x, p.bytes);
    return;
  }
  Point(p.images.internal, x);
  p.images.Out(ctx_->stream, y);
  ctx_->stream.wait();
}

void Flatten::Backward(const float*, const float*, const float* dy, float* dx, int64_t n) {
  if (dx == nullptr) return;
  Plan& p = Find(plans_, n);
  if (!p.images.needed) {
    if (dx != dy) std::memcpy(dx, dy, p.bytes);
    return;
  }
  Point(p.images.internal, dx);
  p.images.In(ctx_->stream, dy);
  ctx_->stream.wait();
}

}  // namespace psforge::nn
