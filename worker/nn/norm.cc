#include "worker/nn/norm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/split_mix.h"
#include "worker/nn/conv.h"
#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

using dnnl::memory;

// ---- BatchNorm --------------------------------------------------------------

struct BatchNorm::Plan {
  dnnl::batch_normalization_forward train, infer;
  dnnl::batch_normalization_backward bwd;
  Converted x, dx;                // the input (and its gradient) in the layout the primitives work in
  memory y, dy, scale, shift, dscale, dshift;
  memory batch_mean, batch_var;   // owned: what the last training pass measured
  memory workspace;               // fused ReLU: where it passed (training)
  memory pop_mean, pop_var;       // views of mean_ and variance_
  std::vector<float> scratch_dx;  // when the caller needs no input gradient
  Args train_args, infer_args, bwd_args;
};

BatchNorm::BatchNorm(DnnlContext* ctx, int64_t channels, int64_t height, int64_t width, bool fuse_relu)
    : ctx_(ctx), channels_(channels), height_(height), width_(width), fuse_relu_(fuse_relu), mean_(channels, 0.0f),
      variance_(channels, 1.0f), sum_mean_(channels), sum_variance_(channels) {}
BatchNorm::~BatchNorm() = default;

void BatchNorm::Bind(const float* scale, const float* shift, float* dscale, float* dshift) {
  scale_ = scale;
  shift_ = shift;
  dscale_ = dscale;
  dshift_ = dshift;
}

memory::desc BatchNorm::Prepare(int64_t n, const memory::desc& in) {
  Plan& plan = FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    using flags = dnnl::normalization_flags;
    const auto affine = flags::use_scale | flags::use_shift | (fuse_relu_ ? flags::fuse_norm_relu : flags::none);
    // Vectors are images of one pixel (the same bytes as [n, c]).
    const int64_t h = std::max<int64_t>(1, height_), w = std::max<int64_t>(1, width_);
    const memory::desc given = in.dims().size() == 4 ? in : Tensor(n, channels_, h, w);
    auto make_train = [&](const memory::desc& md) {
      return dnnl::batch_normalization_forward::primitive_desc(
          {dnnl::prop_kind::forward_training, md, kEpsilon, affine}, eng);
    };
    auto train_pd = make_train(given);
    // (Vectors stay plain: the layers after them read plain rows.)
    if (IsReference(train_pd.impl_info_str()) && height_ > 0) {
      const auto preferred = PreferredImageLayout(eng, n, channels_, h, w);
      if (preferred != given) train_pd = make_train(preferred);
    }
    const memory::desc md = train_pd.src_desc();
    dnnl::batch_normalization_forward::primitive_desc infer_pd(
        {dnnl::prop_kind::forward_inference, md, kEpsilon, affine | flags::use_global_stats}, eng);
    dnnl::batch_normalization_backward::primitive_desc bwd_pd(
        {dnnl::prop_kind::backward, md, md, kEpsilon, affine}, eng, train_pd);
    auto c_md = Vector(channels_);
    auto p = std::make_unique<Plan>();
    p->train = dnnl::batch_normalization_forward(train_pd);
    p->infer = dnnl::batch_normalization_forward(infer_pd);
    p->bwd = dnnl::batch_normalization_backward(bwd_pd);
    p->x = Converted(given, md, eng);
    p->dx = Converted(given, md, eng);
    p->y = Unbound(md, eng);
    p->dy = Unbound(md, eng);
    p->scale = Unbound(c_md, eng);
    p->shift = Unbound(c_md, eng);
    p->dscale = Unbound(c_md, eng);
    p->dshift = Unbound(c_md, eng);
    p->batch_mean = memory(c_md, eng);
    p->batch_var = memory(c_md, eng);
    p->pop_mean = memory(c_md, eng, mean_.data());
    p->pop_var = memory(c_md, eng, variance_.data());
    if (fuse_relu_) p->workspace = memory(train_pd.workspace_desc(), eng);
    p->train_args = {{DNNL_ARG_SRC, p->x.internal},  {DNNL_ARG_DST, p->y},
                     {DNNL_ARG_SCALE, p->scale},     {DNNL_ARG_SHIFT, p->shift},
                     {DNNL_ARG_MEAN, p->batch_mean}, {DNNL_ARG_VARIANCE, p->batch_var}};
    p->infer_args = {{DNNL_ARG_SRC, p->x.internal}, {DNNL_ARG_DST, p->y},
                     {DNNL_ARG_SCALE, p->scale},    {DNNL_ARG_SHIFT, p->shift},
                     {DNNL_ARG_MEAN, p->pop_mean},  {DNNL_ARG_VARIANCE, p->pop_var}};
    p->bwd_args = {{DNNL_ARG_SRC, p->x.internal},    {DNNL_ARG_DIFF_DST, p->dy},
                   {DNNL_ARG_MEAN, p->batch_mean},   {DNNL_ARG_VARIANCE, p->batch_var},
                   {DNNL_ARG_SCALE, p->scale},       {DNNL_ARG_SHIFT, p->shift},
                   {DNNL_ARG_DIFF_SRC, p->dx.internal}, {DNNL_ARG_DIFF_SCALE, p->dscale},
                   {DNNL_ARG_DIFF_SHIFT, p->dshift}};
    if (fuse_relu_) {
      p->train_args[DNNL_ARG_WORKSPACE] = p->workspace;
      p->bwd_args[DNNL_ARG_WORKSPACE] = p->workspace;
    }
    return p;
  });
  Record("batch_normalization forward", ImplOf(plan.train));
  Record("batch_normalization inference", ImplOf(plan.infer));
  Record("batch_normalization backward", ImplOf(plan.bwd));
  Record("reorder input", plan.x.Impl());
  Record("reorder input gradient", plan.dx.Impl());
  return in.dims().size() == 4 ? plan.y.get_desc() : in;
}

void BatchNorm::Forward(const float* x, float* y, int64_t n, Pass pass) {
  Plan& p = Find(plans_, n);
  p.x.In(ctx_->stream, x);
  Point(p.y, y);
  Point(p.scale, scale_);
  Point(p.shift, shift_);
  if (pass == Pass::kInference) {
    p.infer.execute(ctx_->stream, p.infer_args);
    ctx_->stream.wait();
    return;
  }
  p.train.execute(ctx_->stream, p.train_args);
  ctx_->stream.wait();
  if (pass != Pass::kStatistics) return;
  const double m = static_cast<double>(n) * std::max<int64_t>(1, height_ * width_);
  const double unbias = m > 1 ? m / (m - 1) : 1.0;
  const auto* mean = static_cast<const float*>(p.batch_mean.get_data_handle());
  const auto* var = static_cast<const float*>(p.batch_var.get_data_handle());
  for (int64_t c = 0; c < channels_; ++c) {
    sum_mean_[c] += static_cast<double>(n) * mean[c];
    sum_variance_[c] += static_cast<double>(n) * var[c] * unbias;
  }
  sum_samples_ += static_cast<double>(n);
}

void BatchNorm::Backward(const float* x, const float*, const float* dy, float* dx, int64_t n) {
  Plan& p = Find(plans_, n);
  if (dx == nullptr) {
    p.scratch_dx.resize(p.dx.user.get_desc().get_size() / sizeof(float));
    dx = p.scratch_dx.data();
  }
  if (!p.x.needed) Point(p.x.user, x);  // else the forward pass's reorder of x is still there
  Point(p.dy, dy);
  p.dx.Target(dx);
  Point(p.scale, scale_);
  Point(p.shift, shift_);
  Point(p.dscale, dscale_);
  Point(p.dshift, dshift_);
  p.bwd.execute(ctx_->stream, p.bwd_args);
  p.dx.Out(ctx_->stream, dx);
  ctx_->stream.wait();
}

void BatchNorm::AppendStatistics(const std::string& name, NamedValues* out) const {
  out->emplace_back(name + ".running_mean", mean_);
  out->emplace_back(name + ".running_var", variance_);
}

void BatchNorm::BeginStatistics() {
  std::fill(sum_mean_.begin(), sum_mean_.end(), 0.0);
  std::fill(sum_variance_.begin(), sum_variance_.end(), 0.0);
  sum_samples_ = 0;
}

void BatchNorm::EndStatistics() {
  if (sum_samples_ == 0) return;
  for (int64_t c = 0; c < channels_; ++c) {
    mean_[c] = static_cast<float>(sum_mean_[c] / sum_samples_);
    variance_[c] = static_cast<float>(sum_variance_[c] / sum_samples_);
  }
}

// ---- Dropout ----------------------------------------------------------------

struct Dropout::Plan {
  std::size_t logical = 0, physical = 0;  // floats per batch
  std::vector<float> plain_mask;          // 0 or 1 / (1 - rate), in logical order
  std::vector<float> layout_mask;         // the same in the input's layout (when not plain)
  const float* mask = nullptr;            // the one to multiply by
  dnnl::memory plain_m, layout_m;
  dnnl::reorder to_layout;
};

Dropout::Dropout(DnnlContext* ctx, double rate, int64_t width, uint64_t seed)
    : ctx_(ctx), rate_(rate), width_(width), seed_(SplitMix64(seed)),
      threshold_(static_cast<uint16_t>(std::min(65535.0, std::round(rate * 65536.0)))),
      scale_(static_cast<float>(1.0 / (1.0 - rate))) {}
Dropout::~Dropout() = default;

memory::desc Dropout::Prepare(int64_t n, const memory::desc& in) {
  Plan& plan = FindOrMake(plans_, n, [&] {
    auto p = std::make_unique<Plan>();
    p->logical = static_cast<std::size_t>(n * width_);
    p->plain_mask.resize(p->logical);
    p->mask = p->plain_mask.data();
    p->physical = p->logical;
    if (in.dims().size() == 4 && !IsPlain(in)) {
      p->physical = in.get_size() / sizeof(float);
      p->layout_mask.resize(p->physical);
      p->plain_m = memory(PlainLike(in), ctx_->engine, p->plain_mask.data());
      p->layout_m = memory(in, ctx_->engine, p->layout_mask.data());
      p->to_layout = dnnl::reorder(p->plain_m, p->layout_m);
      p->mask = p->layout_mask.data();
    }
    return p;
  });
  if (plan.to_layout) Record("reorder mask", ImplOf(plan.to_layout));
  return in;
}

void Dropout::Forward(const float* x, float* y, int64_t n, Pass pass) {
  Plan& p = Find(plans_, n);
  if (pass != Pass::kTraining || rate_ == 0.0) {
    if (x != y) std::memcpy(y, x, p.physical * sizeof(float));
    return;
  }
  DrawDropoutMask(seed_, samples_, threshold_, scale_, p.plain_mask.data(), static_cast<int64_t>(p.logical));
  if (p.to_layout) {
    p.to_layout.execute(ctx_->stream, {{DNNL_ARG_FROM, p.plain_m}, {DNNL_ARG_TO, p.layout_m}});
    ctx_->stream.wait();
  }
  for (std::size_t i = 0; i < p.physical; ++i) y[i] = x[i] * p.mask[i];
}

void Dropout::Backward(const float*, const float*, const float* dy, float* dx, int64_t n) {
  if (dx == nullptr) return;
  Plan& p = Find(plans_, n);
  if (rate_ == 0.0) {
    if (dx != dy) std::memcpy(dx, dy, p.physical * sizeof(float));
    return;
  }
  for (std::size_t i = 0; i < p.physical; ++i) dx[i] = dy[i] * p.mask[i];
}

}  // namespace psforge::nn
