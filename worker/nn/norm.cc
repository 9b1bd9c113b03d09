#include "worker/nn/norm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/split_mix.h"
#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

using dnnl::memory;

// ---- BatchNorm --------------------------------------------------------------

struct BatchNorm::Plan {
  dnnl::batch_normalization_forward train, infer;
  dnnl::batch_normalization_backward bwd;
  memory x, y, dy, dx, scale, shift, dscale, dshift;
  memory batch_mean, batch_var;   // owned: what the last training pass measured
  memory pop_mean, pop_var;       // views of mean_ and variance_
  std::vector<float> scratch_dx;  // when the caller needs no input gradient
  Args train_args, infer_args, bwd_args;
};

BatchNorm::BatchNorm(DnnlContext* ctx, int64_t channels, int64_t height, int64_t width, bool blocked)
    : ctx_(ctx), channels_(channels), height_(height), width_(width), blocked_(blocked && height > 0),
      mean_(channels, 0.0f), variance_(channels, 1.0f), sum_mean_(channels), sum_variance_(channels) {}
BatchNorm::~BatchNorm() = default;

void BatchNorm::Bind(const float* scale, const float* shift, float* dscale, float* dshift) {
  scale_ = scale;
  shift_ = shift;
  dscale_ = dscale;
  dshift_ = dshift;
}

BatchNorm::Plan& BatchNorm::PlanFor(int64_t n) {
  return FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    using flags = dnnl::normalization_flags;
    const auto affine = flags::use_scale | flags::use_shift;
    auto md = blocked_ ? memory::desc({n, channels_, height_, width_}, memory::data_type::f32,
                                      memory::format_tag::nChw16c)
                       : Tensor(n, channels_, height_, width_);
    auto c_md = Vector(channels_);
    dnnl::batch_normalization_forward::primitive_desc train_pd(
        {dnnl::prop_kind::forward_training, md, kEpsilon, affine}, eng);
    dnnl::batch_normalization_forward::primitive_desc infer_pd(
        {dnnl::prop_kind::forward_inference, md, kEpsilon, affine | flags::use_global_stats}, eng);
    dnnl::batch_normalization_backward::primitive_desc bwd_pd(
        {dnnl::prop_kind::backward, md, md, kEpsilon, affine}, eng, train_pd);
    auto p = std::make_unique<Plan>(Plan{
        dnnl::batch_normalization_forward(train_pd), dnnl::batch_normalization_forward(infer_pd),
        dnnl::batch_normalization_backward(bwd_pd), Unbound(md, eng), Unbound(md, eng), Unbound(md, eng),
        Unbound(md, eng), Unbound(c_md, eng), Unbound(c_md, eng), Unbound(c_md, eng), Unbound(c_md, eng),
        memory(c_md, eng), memory(c_md, eng), memory(c_md, eng, mean_.data()),
        memory(c_md, eng, variance_.data()), {}, {}, {}, {}});
    p->train_args = {{DNNL_ARG_SRC, p->x},           {DNNL_ARG_DST, p->y},
                     {DNNL_ARG_SCALE, p->scale},     {DNNL_ARG_SHIFT, p->shift},
                     {DNNL_ARG_MEAN, p->batch_mean}, {DNNL_ARG_VARIANCE, p->batch_var}};
    p->infer_args = {{DNNL_ARG_SRC, p->x},         {DNNL_ARG_DST, p->y},
                     {DNNL_ARG_SCALE, p->scale},   {DNNL_ARG_SHIFT, p->shift},
                     {DNNL_ARG_MEAN, p->pop_mean}, {DNNL_ARG_VARIANCE, p->pop_var}};
    p->bwd_args = {{DNNL_ARG_SRC, p->x},           {DNNL_ARG_DIFF_DST, p->dy},
                   {DNNL_ARG_MEAN, p->batch_mean}, {DNNL_ARG_VARIANCE, p->batch_var},
                   {DNNL_ARG_SCALE, p->scale},     {DNNL_ARG_SHIFT, p->shift},
                   {DNNL_ARG_DIFF_SRC, p->dx},     {DNNL_ARG_DIFF_SCALE, p->dscale},
                   {DNNL_ARG_DIFF_SHIFT, p->dshift}};
    return p;
  });
}

void BatchNorm::Forward(const float* x, float* y, int64_t n, Pass pass) {
  Plan& p = PlanFor(n);
  Point(p.x, x);
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
  Plan& p = PlanFor(n);
  if (dx == nullptr) {
    p.scratch_dx.resize(static_cast<std::size_t>(n * channels_ * std::max<int64_t>(1, height_ * width_)));
    dx = p.scratch_dx.data();
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

Dropout::Dropout(double rate, int64_t width, int64_t max_batch, uint64_t seed)
    : rate_(rate), width_(width), seed_(SplitMix64(seed)),
      threshold_(static_cast<uint16_t>(std::min(65535.0, std::round(rate * 65536.0)))),
      scale_(static_cast<float>(1.0 / (1.0 - rate))),
      keep_(static_cast<std::size_t>(max_batch * width)) {}

void Dropout::Forward(const float* x, float* y, int64_t n, Pass pass) {
  const int64_t size = n * width_;
  if (pass != Pass::kTraining || rate_ == 0.0) {
    if (x != y) std::memcpy(y, x, static_cast<std::size_t>(size) * sizeof(float));
    return;
  }
  if (static_cast<std::size_t>(size) > keep_.size()) keep_.resize(static_cast<std::size_t>(size));
  const uint64_t base = SplitMix64(seed_ ^ SplitMix64(step_));
  for (int64_t i = 0; i < size; i += 4) {
    uint64_t bits = SplitMix64(base + static_cast<uint64_t>(i));
    for (int64_t j = i; j < std::min(size, i + 4); ++j, bits >>= 16) {
      const bool keep = static_cast<uint16_t>(bits) >= threshold_;
      keep_[j] = keep;
      y[j] = keep ? x[j] * scale_ : 0.0f;
    }
  }
}

void Dropout::Backward(const float*, const float*, const float* dy, float* dx, int64_t n) {
  if (dx == nullptr) return;
  const int64_t size = n * width_;
  if (rate_ == 0.0) {
    if (dx != dy) std::memcpy(dx, dy, static_cast<std::size_t>(size) * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < size; ++i) dx[i] = keep_[i] ? dy[i] * scale_ : 0.0f;
}

}  // namespace psforge::nn
