#include "worker/nn/conv.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "common/vector_clones.h"

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
//
// oneDNN 2.6's max pooling for training (which records where each maximum
// came from, for its backward pass) runs 3-5x slower than its inference
// pooling (128x32x28x28, 2x2: 11.7 against 3.8 ms with AVX2 kernels, 3.6
// against 0.8 with AVX-512's). So the forward pass is the inference
// primitive, and the backward pass finds each window's maximum again by
// comparing x with y, in whatever plain or channel-blocked layout the
// tensors are in (the channels of a block are contiguous: the loop over them
// vectorises). Other layouts keep oneDNN's training pooling and backward.

namespace {

// Where element (n, c, h, w) of a 4-D f32 tensor is: n*sn + (c / block)*sc +
// h*sh + w*sw + c % block (plain nchw: block 1; nhwc: one block of every
// channel; nChw8c/16c: blocks of 8 or 16).
struct ImageStrides {
  int64_t n, c, h, w, block;
};

std::optional<ImageStrides> StridesOf(const memory::desc& md) {
  const auto& d = md.data;
  if (d.format_kind != dnnl_blocked || d.ndims != 4 || d.offset0 != 0) return std::nullopt;
  const auto& b = d.format_desc.blocking;
  if (b.inner_nblks == 0) {
    if (b.strides[1] == 1) return ImageStrides{b.strides[0], 0, b.strides[2], b.strides[3], d.padded_dims[1]};
    return ImageStrides{b.strides[0], b.strides[1], b.strides[2], b.strides[3], 1};
  }
  if (b.inner_nblks == 1 && b.inner_idxs[0] == 1)
    return ImageStrides{b.strides[0], b.strides[1], b.strides[2], b.strides[3], b.inner_blks[0]};
  return std::nullopt;
}

struct PoolGeometry {
  int64_t n, c, h, w, oh, ow, kernel, stride, padding;
};

// One output position's `lanes` contiguous channels: each output's dy,
// while pending, goes to the first window element equal to y, after which
// 0 is pending. Eight channels at a time in GCC vector types (each clone
// compiles them for its own ISA), the rest one by one.
using V8f = float __attribute__((vector_size(32)));
using V8i = int32_t __attribute__((vector_size(32)));

inline void Load8(V8f& v, const float* p) { std::memcpy(&v, p, sizeof v); }

inline void PoolBackwardLanes(const float* __restrict x, const float* __restrict yr, const float* __restrict dyr,
                              float* __restrict dx, const PoolGeometry& g, const ImageStrides& xs, int64_t x_base,
                              int64_t oh, int64_t ow, int64_t lanes) {
  for (int64_t c0 = 0; c0 < lanes; c0 += 8) {
    const bool full = lanes - c0 >= 8;
    V8f y8{}, pending{};
    float tail_y[8] = {}, tail_pending[8] = {};
    if (full) {
      Load8(y8, yr + c0);
      Load8(pending, dyr + c0);
    } else {
      for (int64_t ci = c0; ci < lanes; ++ci) tail_y[ci - c0] = yr[ci], tail_pending[ci - c0] = dyr[ci];
    }
    for (int64_t kh = 0; kh < g.kernel; ++kh) {
      const int64_t ih = oh * g.stride - g.padding + kh;
      if (ih < 0 || ih >= g.h) continue;
      for (int64_t kw = 0; kw < g.kernel; ++kw) {
        const int64_t iw = ow * g.stride - g.padding + kw;
        if (iw < 0 || iw >= g.w) continue;
        const int64_t at = x_base + ih * xs.h + iw * xs.w + c0;
        if (full) {
          V8f x8, d;
          Load8(x8, x + at);
          Load8(d, dx + at);
          const V8i eq = x8 == y8;
          const V8f hit = reinterpret_cast<V8f>(reinterpret_cast<V8i>(pending) & eq);
          d += hit;
          std::memcpy(dx + at, &d, sizeof d);
          pending -= hit;
        } else {
          for (int64_t ci = 0; ci < lanes - c0; ++ci) {
            const float hit = x[at + ci] == tail_y[ci] ? tail_pending[ci] : 0.0f;
            dx[at + ci] += hit;
            tail_pending[ci] -= hit;
          }
        }
      }
    }
  }
}

// dx = the gradient of max pooling: each output's dy goes to the first
// element of its window equal to its maximum y. dx is zeroed first, padding
// included (a blocked layout's padded channels stay zero).
PSF_VECTOR_CLONES void MaxPoolBackwardFromValues(const float* __restrict x, const float* __restrict y,
                                                 const float* __restrict dy, float* __restrict dx,
                                                 std::size_t dx_floats, const PoolGeometry& g,
                                                 const ImageStrides& xs, const ImageStrides& ys) {
  std::memset(dx, 0, dx_floats * sizeof(float));
  const int64_t block = xs.block, blocks = (g.c + block - 1) / block;
  for (int64_t s = 0; s < g.n; ++s)
    for (int64_t cb = 0; cb < blocks; ++cb) {
      const int64_t width = std::min(block, g.c - cb * block);
      const int64_t x_block = s * xs.n + cb * xs.c;
      for (int64_t oh = 0; oh < g.oh; ++oh)
        for (int64_t ow = 0; ow < g.ow; ++ow) {
          const int64_t y_at = s * ys.n + cb * ys.c + oh * ys.h + ow * ys.w;
          PoolBackwardLanes(x, y + y_at, dy + y_at, dx, g, xs, x_block, oh, ow, width);
        }
    }
}

}  // namespace

struct MaxPool2d::Plan {
  dnnl::pooling_forward fwd;   // inference when own_backward, else training (with a workspace)
  dnnl::pooling_backward bwd;  // only without own_backward
  Converted x, dx;  // the input (and its gradient) in the layout the pooling works in
  memory y, dy, workspace;
  Args fwd_args, bwd_args;
  bool own_backward = false;
  ImageStrides xs{}, ys{};
};

MaxPool2d::MaxPool2d(DnnlContext* ctx, Window window) : ctx_(ctx), w_(window) { w_.out_c = w_.in_c; }
MaxPool2d::~MaxPool2d() = default;

memory::desc MaxPool2d::Prepare(int64_t n, const memory::desc& in) {
  Plan& plan = FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    const memory::dims strides{w_.stride, w_.stride}, kernel{w_.kernel, w_.kernel}, pad{w_.padding, w_.padding};
    const auto alg = dnnl::algorithm::pooling_max;
    const auto y_any = Any({n, w_.in_c, w_.out_h(), w_.out_w()});
    auto make_fwd = [&](const memory::desc& x_md, dnnl::prop_kind kind) {
      return dnnl::pooling_forward::primitive_desc({kind, alg, x_md, y_any, strides, kernel, pad, pad}, eng);
    };
    memory::desc x_md = in;
    if (IsReference(make_fwd(in, dnnl::prop_kind::forward_training).impl_info_str())) {
      const auto preferred = PreferredImageLayout(eng, n, w_.in_c, w_.in_h, w_.in_w);
      if (preferred != in) x_md = preferred;
    }
    auto p = std::make_unique<Plan>();
    auto fwd_pd = make_fwd(x_md, dnnl::prop_kind::forward_inference);
    const auto xs = StridesOf(fwd_pd.src_desc()), ys = StridesOf(fwd_pd.dst_desc());
    // Channel blocks of 8 or more (nChw8c, nChw16c, nhwc): the vector loop;
    // plain nchw would be one channel at a time, slower than oneDNN's.
    p->own_backward = xs && ys && xs->block == ys->block && xs->block >= 8 && !IsReference(fwd_pd.impl_info_str());
    if (p->own_backward) {
      p->xs = *xs;
      p->ys = *ys;
    } else {
      fwd_pd = make_fwd(x_md, dnnl::prop_kind::forward_training);
      dnnl::pooling_backward::primitive_desc bwd_pd({alg, fwd_pd.src_desc(), fwd_pd.dst_desc(), strides, kernel, pad,
                                                     pad},
                                                    eng, fwd_pd);
      p->bwd = dnnl::pooling_backward(bwd_pd);
      p->workspace = memory(fwd_pd.workspace_desc(), eng);
    }
    p->fwd = dnnl::pooling_forward(fwd_pd);
    p->x = Converted(in, fwd_pd.src_desc(), eng);
    p->dx = Converted(in, fwd_pd.src_desc(), eng);
    p->y = Unbound(fwd_pd.dst_desc(), eng);
    p->dy = Unbound(fwd_pd.dst_desc(), eng);
    p->fwd_args = {{DNNL_ARG_SRC, p->x.internal}, {DNNL_ARG_DST, p->y}};
    if (!p->own_backward) {
      p->fwd_args[DNNL_ARG_WORKSPACE] = p->workspace;
      p->bwd_args = {{DNNL_ARG_DIFF_DST, p->dy}, {DNNL_ARG_DIFF_SRC, p->dx.internal},
                     {DNNL_ARG_WORKSPACE, p->workspace}};
    }
    return p;
  });
  Record("pooling forward", ImplOf(plan.fwd));
  Record("pooling backward", plan.own_backward ? "psforge:from_values" : ImplOf(plan.bwd));
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

void MaxPool2d::Backward(const float*, const float* y, const float* dy, float* dx, int64_t n) {
  if (dx == nullptr) return;
  Plan& p = Find(plans_, n);
  p.dx.Target(dx);
  if (p.own_backward) {
    // x as the forward pass read it: the caller's, or the plan's reorder of it.
    const auto* x_in = static_cast<const float*>(p.x.internal.get_data_handle());
    auto* d = static_cast<float*>(p.dx.internal.get_data_handle());
    const PoolGeometry g{n, w_.in_c, w_.in_h, w_.in_w, w_.out_h(), w_.out_w(), w_.kernel, w_.stride, w_.padding};
    MaxPoolBackwardFromValues(x_in, y, dy, d, p.dx.internal.get_desc().get_size() / sizeof(float), g, p.xs, p.ys);
  } else {
    Point(p.dy, dy);
    p.bwd.execute(ctx_->stream, p.bwd_args);
  }
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
