#include "worker/nn/layers.h"

#include <algorithm>
#include <cmath>

#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

using dnnl::memory;

// ---- Linear -----------------------------------------------------------------

struct Linear::Plan {
  dnnl::inner_product_forward fwd;
  dnnl::inner_product_backward_data bwd_data;
  dnnl::inner_product_backward_weights bwd_weights;
  memory x, w, b, y, dy, dx, dw, db;
  Args fwd_args, bwd_data_args, bwd_weights_args;
};

Linear::Linear(DnnlContext* ctx, int64_t in, int64_t out) : ctx_(ctx), in_(in), out_(out) {}
Linear::~Linear() = default;
Linear::Linear(Linear&&) noexcept = default;

void Linear::Bind(const float* weight, const float* bias, float* dweight, float* dbias) {
  weight_ = weight;
  bias_ = bias;
  dweight_ = dweight;
  dbias_ = dbias;
}

Linear::Plan& Linear::PlanFor(int64_t n) {
  return FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    auto x_md = Matrix(n, in_), y_md = Matrix(n, out_);
    auto w_md = Matrix(out_, in_, memory::format_tag::oi);
    auto b_md = memory::desc({out_}, memory::data_type::f32, memory::format_tag::x);
    dnnl::inner_product_forward::primitive_desc fwd_pd(
        {dnnl::prop_kind::forward_training, x_md, w_md, b_md, y_md}, eng);
    dnnl::inner_product_backward_data::primitive_desc bd_pd({x_md, w_md, y_md}, eng, fwd_pd);
    dnnl::inner_product_backward_weights::primitive_desc bw_pd({x_md, w_md, b_md, y_md}, eng,
                                                               fwd_pd);
    auto p = std::make_unique<Plan>(Plan{dnnl::inner_product_forward(fwd_pd),
                                         dnnl::inner_product_backward_data(bd_pd),
                                         dnnl::inner_product_backward_weights(bw_pd),
                                         Unbound(x_md, eng), Unbound(w_md, eng), Unbound(b_md, eng),
                                         Unbound(y_md, eng), Unbound(y_md, eng), Unbound(x_md, eng),
                                         Unbound(w_md, eng), Unbound(b_md, eng), {}, {}, {}});
    p->fwd_args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_WEIGHTS, p->w}, {DNNL_ARG_BIAS, p->b},
                   {DNNL_ARG_DST, p->y}};
    p->bwd_data_args = {{DNNL_ARG_DIFF_DST, p->dy}, {DNNL_ARG_WEIGHTS, p->w},
                        {DNNL_ARG_DIFF_SRC, p->dx}};
    p->bwd_weights_args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_DIFF_DST, p->dy},
                           {DNNL_ARG_DIFF_WEIGHTS, p->dw}, {DNNL_ARG_DIFF_BIAS, p->db}};
    return p;
  });
}

void Linear::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = PlanFor(n);
  Point(p.x, x);
  Point(p.w, weight_);
  Point(p.b, bias_);
  Point(p.y, y);
  p.fwd.execute(ctx_->stream, p.fwd_args);
  ctx_->stream.wait();
}

void Linear::Backward(const float* x, const float*, const float* dy, float* dx, int64_t n) {
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

// ---- Eltwise ----------------------------------------------------------------

struct Eltwise::Plan {
  dnnl::eltwise_forward fwd;
  dnnl::eltwise_backward bwd;
  memory x, y, dy, dx;
  Args fwd_args, bwd_args;
};

Eltwise::Eltwise(DnnlContext* ctx, LayerKind kind, int64_t width) : ctx_(ctx), width_(width) {
  switch (kind) {
    case LayerKind::kSigmoid: alg_ = dnnl::algorithm::eltwise_logistic_use_dst_for_bwd; break;
    case LayerKind::kTanh: alg_ = dnnl::algorithm::eltwise_tanh_use_dst_for_bwd; break;
    default: alg_ = dnnl::algorithm::eltwise_relu_use_dst_for_bwd; break;
  }
}
Eltwise::~Eltwise() = default;
Eltwise::Eltwise(Eltwise&&) noexcept = default;

Eltwise::Plan& Eltwise::PlanFor(int64_t n) {
  return FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    auto md = Matrix(n, width_);
    dnnl::eltwise_forward::primitive_desc fwd_pd(
        {dnnl::prop_kind::forward_training, alg_, md, 0.0f, 0.0f}, eng);
    dnnl::eltwise_backward::primitive_desc bwd_pd({alg_, md, md, 0.0f, 0.0f}, eng, fwd_pd);
    auto p = std::make_unique<Plan>(Plan{dnnl::eltwise_forward(fwd_pd),
                                         dnnl::eltwise_backward(bwd_pd), Unbound(md, eng),
                                         Unbound(md, eng), Unbound(md, eng), Unbound(md, eng), {},
                                         {}});
    p->fwd_args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_DST, p->y}};
    p->bwd_args = {{DNNL_ARG_DST, p->y}, {DNNL_ARG_DIFF_DST, p->dy}, {DNNL_ARG_DIFF_SRC, p->dx}};
    return p;
  });
}

void Eltwise::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = PlanFor(n);
  Point(p.x, x);
  Point(p.y, y);
  p.fwd.execute(ctx_->stream, p.fwd_args);
  ctx_->stream.wait();
}

void Eltwise::Backward(const float*, const float* y, const float* dy, float* dx, int64_t n) {
  if (dx == nullptr) return;
  Plan& p = PlanFor(n);
  Point(p.y, y);
  Point(p.dy, dy);
  Point(p.dx, dx);
  p.bwd.execute(ctx_->stream, p.bwd_args);
  ctx_->stream.wait();
}

// ---- SoftmaxCrossEntropy ----------------------------------------------------

struct SoftmaxCrossEntropy::Plan {
  dnnl::logsoftmax_forward fwd;
  memory x, y;
  Args args;
};

SoftmaxCrossEntropy::SoftmaxCrossEntropy(DnnlContext* ctx, int64_t classes, int64_t max_batch)
    : ctx_(ctx), classes_(classes), log_probs_(max_batch * classes) {}
SoftmaxCrossEntropy::~SoftmaxCrossEntropy() = default;

SoftmaxCrossEntropy::Plan& SoftmaxCrossEntropy::PlanFor(int64_t n) {
  return FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    auto md = Matrix(n, classes_);
    dnnl::logsoftmax_forward::primitive_desc pd({dnnl::prop_kind::forward_inference, md, 1}, eng);
    auto p = std::make_unique<Plan>(
        Plan{dnnl::logsoftmax_forward(pd), Unbound(md, eng), Unbound(md, eng), {}});
    p->args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_DST, p->y}};
    return p;
  });
}

float SoftmaxCrossEntropy::Forward(const float* outputs, const float* targets, int64_t n) {
  if (static_cast<std::size_t>(n * classes_) > log_probs_.size())
    log_probs_.resize(n * classes_);
  Plan& p = PlanFor(n);
  Point(p.x, outputs);
  Point(p.y, log_probs_.data());
  p.fwd.execute(ctx_->stream, p.args);
  ctx_->stream.wait();
  targets_ = targets;
  n_ = n;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i)
    sum -= log_probs_[i * classes_ + static_cast<int64_t>(targets[i])];
  return static_cast<float>(sum / n);
}

void SoftmaxCrossEntropy::Backward(float* doutputs) {
  const float inv_n = 1.0f / static_cast<float>(n_);
  for (int64_t i = 0; i < n_ * classes_; ++i) doutputs[i] = std::exp(log_probs_[i]) * inv_n;
  for (int64_t i = 0; i < n_; ++i) doutputs[i * classes_ + static_cast<int64_t>(targets_[i])] -= inv_n;
}

double SoftmaxCrossEntropy::Score(const float* outputs, const float* targets, int64_t n) const {
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = outputs + i * classes_;
    int64_t best = std::max_element(row, row + classes_) - row;
    correct += best == static_cast<int64_t>(targets[i]);
  }
  return static_cast<double>(correct);
}

// ---- SequenceCrossEntropy ---------------------------------------------------

SequenceCrossEntropy::SequenceCrossEntropy(DnnlContext* ctx, int64_t positions, int64_t classes, int64_t max_batch)
    : positions_(positions), inner_(ctx, classes, max_batch * positions) {}

float SequenceCrossEntropy::Forward(const float* outputs, const float* targets, int64_t n) {
  return inner_.Forward(outputs, targets, n * positions_);
}

void SequenceCrossEntropy::Backward(float* doutputs) { inner_.Backward(doutputs); }

double SequenceCrossEntropy::Score(const float* outputs, const float* targets, int64_t n) const {
  // The mean loss in nats over n * positions, as a sum over samples of bits.
  const double mean_nats = inner_.Forward(outputs, targets, n * positions_);
  return mean_nats / std::log(2.0) * static_cast<double>(n);
}

// ---- SigmoidBinaryCrossEntropy ----------------------------------------------

float SigmoidBinaryCrossEntropy::Forward(const float* outputs, const float* targets, int64_t n) {
  outputs_ = outputs;
  targets_ = targets;
  n_ = n;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    double z = outputs[i];
    // log(1 + e^-|z|) form: stable for large |z|.
    sum += std::max(z, 0.0) - z * targets[i] + std::log1p(std::exp(-std::abs(z)));
  }
  return static_cast<float>(sum / n);
}

void SigmoidBinaryCrossEntropy::Backward(float* doutputs) {
  const float inv_n = 1.0f / static_cast<float>(n_);
  for (int64_t i = 0; i < n_; ++i)
    doutputs[i] = (1.0f / (1.0f + std::exp(-outputs_[i])) - targets_[i]) * inv_n;
}

double SigmoidBinaryCrossEntropy::Score(const float* outputs, const float* targets,
                                        int64_t n) const {
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) correct += (outputs[i] > 0.0f) == (targets[i] > 0.5f);
  return static_cast<double>(correct);
}

// ---- MeanSquaredError -------------------------------------------------------

float MeanSquaredError::Forward(const float* outputs, const float* targets, int64_t n) {
  outputs_ = outputs;
  targets_ = targets;
  n_ = n;
  return static_cast<float>(Score(outputs, targets, n) / n);
}

void MeanSquaredError::Backward(float* doutputs) {
  const float scale = 2.0f / static_cast<float>(n_);
  for (int64_t i = 0; i < n_; ++i) doutputs[i] = scale * (outputs_[i] - targets_[i]);
}

double MeanSquaredError::Score(const float* outputs, const float* targets, int64_t n) const {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = static_cast<double>(outputs[i]) - targets[i];
    sum += d * d;
  }
  return sum;
}

}  // namespace psforge::nn
