#include "worker/nn/conv.h"

#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

using dnnl::memory;

namespace {

memory::desc Images(int64_t n, int64_t c, int64_t h, int64_t w, ImageLayout layout) {
  return memory::desc({n, c, h, w}, memory::data_type::f32,
                      layout == ImageLayout::kBlocked ? memory::format_tag::nChw16c : memory::format_tag::nchw);
}

}  // namespace

ImageLayout PreferredLayout(int64_t channels) {
  return channels % 16 == 0 ? ImageLayout::kBlocked : ImageLayout::kPlain;
}

// ---- Conv2d -----------------------------------------------------------------

struct Conv2d::Plan {
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights bwd_weights;
  memory x, b, y, dy, dx, db;
  Converted w_fwd, w_bwd, dw;
  Args fwd_args, bwd_data_args, bwd_weights_args;
};

Conv2d::Conv2d(DnnlContext* ctx, Window window, ImageLayout in, ImageLayout out)
    : ctx_(ctx), w_(window), in_(in), out_(out) {}
Conv2d::~Conv2d() = default;

void Conv2d::Bind(const float* weight, const float* bias, float* dweight, float* dbias) {
  weight_ = weight;
  bias_ = bias;
  dweight_ = dweight;
  dbias_ = dbias;
}

Conv2d::Plan& Conv2d::PlanFor(int64_t n) {
  return FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    auto x_md = Images(n, w_.in_c, w_.in_h, w_.in_w, in_);
    auto y_md = Images(n, w_.out_c, w_.out_h(), w_.out_w(), out_);
    memory::dims w_dims{w_.out_c, w_.in_c, w_.kernel, w_.kernel};
    auto w_user = memory::desc(w_dims, memory::data_type::f32, memory::format_tag::oihw);
    auto w_any = memory::desc(w_dims, memory::data_type::f32, memory::format_tag::any);
    auto b_md = Vector(w_.out_c);
    memory::dims strides{w_.stride, w_.stride}, pad{w_.padding, w_.padding};
    const auto alg = dnnl::algorithm::convolution_direct;
    dnnl::convolution_forward::primitive_desc fwd_pd(
        {dnnl::prop_kind::forward_training, alg, x_md, w_any, b_md, y_md, strides, pad, pad}, eng);
    dnnl::convolution_backward_data::primitive_desc bd_pd({alg, x_md, w_any, y_md, strides, pad, pad}, eng, fwd_pd);
    dnnl::convolution_backward_weights::primitive_desc bw_pd({alg, x_md, w_any, b_md, y_md, strides, pad, pad}, eng,
                                                             fwd_pd);
    auto p = std::make_unique<Plan>(Plan{dnnl::convolution_forward(fwd_pd), dnnl::convolution_backward_data(bd_pd),
                                         dnnl::convolution_backward_weights(bw_pd), Unbound(x_md, eng),
                                         Unbound(b_md, eng), Unbound(y_md, eng), Unbound(y_md, eng),
                                         Unbound(x_md, eng), Unbound(b_md, eng),
                                         Converted(w_user, fwd_pd.weights_desc(), eng),
                                         Converted(w_user, bd_pd.weights_desc(), eng),
                                         Converted(w_user, bw_pd.diff_weights_desc(), eng), {}, {}, {}});
    p->fwd_args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_WEIGHTS, p->w_fwd.internal}, {DNNL_ARG_BIAS, p->b},
                   {DNNL_ARG_DST, p->y}};
    p->bwd_data_args = {{DNNL_ARG_DIFF_DST, p->dy}, {DNNL_ARG_WEIGHTS, p->w_bwd.internal},
                        {DNNL_ARG_DIFF_SRC, p->dx}};
    p->bwd_weights_args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_DIFF_DST, p->dy},
                           {DNNL_ARG_DIFF_WEIGHTS, p->dw.internal}, {DNNL_ARG_DIFF_BIAS, p->db}};
    return p;
  });
}

void Conv2d::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = PlanFor(n);
  Point(p.x, x);
  p.w_fwd.In(ctx_->stream, weight_);
  Point(p.b, bias_);
  Point(p.y, y);
  p.fwd.execute(ctx_->stream, p.fwd_args);
  ctx_->stream.wait();
}

void Conv2d::Backward(const float* x, const float*, const float* dy, float* dx, int64_t n) {
  Plan& p = PlanFor(n);
  Point(p.x, x);
  Point(p.dy, dy);
  if (!p.dw.needed) Point(p.dw.user, dweight_);  // the primitive writes the caller's buffer itself
  Point(p.db, dbias_);
  p.bwd_weights.execute(ctx_->stream, p.bwd_weights_args);
  p.dw.Out(ctx_->stream, dweight_);
  if (dx != nullptr) {
    p.w_bwd.In(ctx_->stream, weight_);
    Point(p.dx, dx);
    p.bwd_data.execute(ctx_->stream, p.bwd_data_args);
  }
  ctx_->stream.wait();
}

// ---- MaxPool2d --------------------------------------------------------------

struct MaxPool2d::Plan {
  dnnl::pooling_forward fwd;
  dnnl::pooling_backward bwd;
  memory x, y, dy, dx, workspace;
  Args fwd_args, bwd_args;
};

MaxPool2d::MaxPool2d(DnnlContext* ctx, Window window, ImageLayout layout)
    : ctx_(ctx), w_(window), layout_(layout) {
  w_.out_c = w_.in_c;
}
MaxPool2d::~MaxPool2d() = default;

MaxPool2d::Plan& MaxPool2d::PlanFor(int64_t n) {
  return FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    auto x_md = Images(n, w_.in_c, w_.in_h, w_.in_w, layout_);
    auto y_md = Images(n, w_.in_c, w_.out_h(), w_.out_w(), layout_);
    memory::dims strides{w_.stride, w_.stride}, kernel{w_.kernel, w_.kernel}, pad{w_.padding, w_.padding};
    const auto alg = dnnl::algorithm::pooling_max;
    dnnl::pooling_forward::primitive_desc fwd_pd(
        {dnnl::prop_kind::forward_training, alg, x_md, y_md, strides, kernel, pad, pad}, eng);
    dnnl::pooling_backward::primitive_desc bwd_pd({alg, x_md, y_md, strides, kernel, pad, pad}, eng, fwd_pd);
    auto p = std::make_unique<Plan>(Plan{dnnl::pooling_forward(fwd_pd), dnnl::pooling_backward(bwd_pd),
                                         Unbound(x_md, eng), Unbound(y_md, eng), Unbound(y_md, eng),
                                         Unbound(x_md, eng), memory(fwd_pd.workspace_desc(), eng), {}, {}});
    p->fwd_args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_DST, p->y}, {DNNL_ARG_WORKSPACE, p->workspace}};
    p->bwd_args = {{DNNL_ARG_DIFF_DST, p->dy}, {DNNL_ARG_DIFF_SRC, p->dx}, {DNNL_ARG_WORKSPACE, p->workspace}};
    return p;
  });
}

void MaxPool2d::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = PlanFor(n);
  Point(p.x, x);
  Point(p.y, y);
  p.fwd.execute(ctx_->stream, p.fwd_args);
  ctx_->stream.wait();
}

void MaxPool2d::Backward(const float*, const float*, const float* dy, float* dx, int64_t n) {
  if (dx == nullptr) return;
  Plan& p = PlanFor(n);
  Point(p.dy, dy);
  Point(p.dx, dx);
  p.bwd.execute(ctx_->stream, p.bwd_args);
  ctx_->stream.wait();
}

// ---- Flatten ----------------------------------------------------------------

struct Flatten::Plan {
  dnnl::reorder to_plain, to_blocked;
  memory blocked, plain, dblocked, dplain;
};

Flatten::Flatten(DnnlContext* ctx, int64_t channels, int64_t height, int64_t width)
    : ctx_(ctx), c_(channels), h_(height), w_(width) {}
Flatten::~Flatten() = default;

Flatten::Plan& Flatten::PlanFor(int64_t n) {
  return FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    auto blocked = Images(n, c_, h_, w_, ImageLayout::kBlocked), plain = Images(n, c_, h_, w_, ImageLayout::kPlain);
    auto p = std::make_unique<Plan>();
    p->blocked = Unbound(blocked, eng);
    p->plain = Unbound(plain, eng);
    p->dblocked = Unbound(blocked, eng);
    p->dplain = Unbound(plain, eng);
    p->to_plain = dnnl::reorder(p->blocked, p->plain);
    p->to_blocked = dnnl::reorder(p->dplain, p->dblocked);
    return p;
  });
}

void Flatten::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = PlanFor(n);
  Point(p.blocked, x);
  Point(p.plain, y);
  p.to_plain.execute(ctx_->stream, {{DNNL_ARG_FROM, p.blocked}, {DNNL_ARG_TO, p.plain}});
  ctx_->stream.wait();
}

void Flatten::Backward(const float*, const float*, const float* dy, float* dx, int64_t n) {
  if (dx == nullptr) return;
  Plan& p = PlanFor(n);
  Point(p.dplain, dy);
  Point(p.dblocked, dx);
  p.to_blocked.execute(ctx_->stream, {{DNNL_ARG_FROM, p.dplain}, {DNNL_ARG_TO, p.dblocked}});
  ctx_->stream.wait();
}

}  // namespace psforge::nn
