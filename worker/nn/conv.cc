#include "worker/nn/conv.h"

#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

using dnnl::memory;

namespace {

memory::desc Images(int64_t n, int64_t c, int64_t h, int64_t w) { return Tensor(n, c, h, w); }

}  // namespace

// ---- Conv2d -----------------------------------------------------------------

struct Conv2d::Plan {
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights bwd_weights;
  memory x, w, b, y, dy, dx, dw, db;
  Args fwd_args, bwd_data_args, bwd_weights_args;
};

Conv2d::Conv2d(DnnlContext* ctx, Window window) : ctx_(ctx), w_(window) {}
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
    auto x_md = Images(n, w_.in_c, w_.in_h, w_.in_w);
    auto y_md = Images(n, w_.out_c, w_.out_h(), w_.out_w());
    auto w_md = memory::desc({w_.out_c, w_.in_c, w_.kernel, w_.kernel}, memory::data_type::f32,
                             memory::format_tag::oihw);
    auto b_md = Vector(w_.out_c);
    memory::dims strides{w_.stride, w_.stride}, pad{w_.padding, w_.padding};
    const auto alg = dnnl::algorithm::convolution_direct;
    dnnl::convolution_forward::primitive_desc fwd_pd(
        {dnnl::prop_kind::forward_training, alg, x_md, w_md, b_md, y_md, strides, pad, pad}, eng);
    dnnl::convolution_backward_data::primitive_desc bd_pd({alg, x_md, w_md, y_md, strides, pad, pad}, eng,
                                                          fwd_pd);
    dnnl::convolution_backward_weights::primitive_desc bw_pd(
        {alg, x_md, w_md, b_md, y_md, strides, pad, pad}, eng, fwd_pd);
    auto p = std::make_unique<Plan>(Plan{dnnl::convolution_forward(fwd_pd),
                                         dnnl::convolution_backward_data(bd_pd),
                                         dnnl::convolution_backward_weights(bw_pd),
                                         Unbound(x_md, eng), Unbound(w_md, eng), Unbound(b_md, eng),
                                         Unbound(y_md, eng), Unbound(y_md, eng), Unbound(x_md, eng),
                                         Unbound(w_md, eng), Unbound(b_md, eng), {}, {}, {}});
    p->fwd_args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_WEIGHTS, p->w}, {DNNL_ARG_BIAS, p->b},
                   {DNNL_ARG_DST, p->y}};
    p->bwd_data_args = {{DNNL_ARG_DIFF_DST, p->dy}, {DNNL_ARG_WEIGHTS, p->w}, {DNNL_ARG_DIFF_SRC, p->dx}};
    p->bwd_weights_args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_DIFF_DST, p->dy},
                           {DNNL_ARG_DIFF_WEIGHTS, p->dw}, {DNNL_ARG_DIFF_BIAS, p->db}};
    return p;
  });
}

void Conv2d::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = PlanFor(n);
  Point(p.x, x);
  Point(p.w, weight_);
  Point(p.b, bias_);
  Point(p.y, y);
  p.fwd.execute(ctx_->stream, p.fwd_args);
  ctx_->stream.wait();
}

void Conv2d::Backward(const float* x, const float*, const float* dy, float* dx, int64_t n) {
  Plan& p = PlanFor(n);
  Point(p.x, x);
  Point(p.dy, dy);
  Point(p.dw, dweight_);
  Point(p.db, dbias_);
  p.bwd_weights.execute(ctx_->stream, p.bwd_weights_args);
  if (dx != nullptr) {
    Point(p.w, weight_);
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

MaxPool2d::MaxPool2d(DnnlContext* ctx, Window window) : ctx_(ctx), w_(window) { w_.out_c = w_.in_c; }
MaxPool2d::~MaxPool2d() = default;

MaxPool2d::Plan& MaxPool2d::PlanFor(int64_t n) {
  return FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    auto x_md = Images(n, w_.in_c, w_.in_h, w_.in_w);
    auto y_md = Images(n, w_.in_c, w_.out_h(), w_.out_w());
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

}  // namespace psforge::nn
