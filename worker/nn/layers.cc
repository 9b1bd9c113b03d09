#include "worker/nn/layers.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "common/split_mix.h"
#include "common/text_dataset.h"
#include "common/vector_clones.h"
#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

void DrawDropoutMask(uint64_t seed, const PassSamples& samples, uint16_t threshold, float keep, float* mask,
                     int64_t size) {
  const bool split = samples.n > 0 && size % samples.n == 0;
  const int64_t parts = split ? samples.n : 1;
  const int64_t per = size / parts;
  const uint64_t step_key = SplitMix64(seed ^ SplitMix64(samples.step));
  for (int64_t k = 0; k < parts; ++k) {
    const uint64_t record =
        split && samples.rows != nullptr ? static_cast<uint64_t>(samples.rows[k])
                                         : static_cast<uint64_t>(samples.first + k);
    const uint64_t base = SplitMix64(step_key ^ SplitMix64(record + 0x632BE59BD9B4E019ull));
    float* m = mask + k * per;
    for (int64_t i = 0; i < per; i += 4) {
      uint64_t bits = SplitMix64(base + static_cast<uint64_t>(i));
      for (int64_t j = i; j < std::min(per, i + 4); ++j, bits >>= 16)
        m[j] = static_cast<uint16_t>(bits) >= threshold ? keep : 0.0f;
    }
  }
}

using dnnl::memory;

void Layer::Record(const std::string& what, const std::string& impl) {
  if (impl.empty()) return;
  std::string entry = what + ": " + impl;
  for (const std::string& e : implementations_)
    if (e == entry) return;
  implementations_.push_back(std::move(entry));
}

void Layer::AppendImplementations(const std::string& name, std::vector<std::string>* out) const {
  for (const std::string& impl : implementations_) out->push_back(name + ": " + impl);
}

PSF_VECTOR_CLONES void AddToEachSample(float* y, const float* x, const float* __restrict w, int64_t n,
                                       int64_t width) {
  for (int64_t s = 0; s < n; ++s)
    for (int64_t i = 0; i < width; ++i) y[s * width + i] = x[s * width + i] + w[i];
}

namespace {
// y[s, r0 + i] = blocks[n * r0 + s * rows + i] + w[r0 + i] for each block
// [r0, r1) of `starts` (rows = r1 - r0): the row blocks' outputs, each a
// contiguous [n, rows] matrix, gathered into y's columns with the bias.
PSF_VECTOR_CLONES void GatherBlocksAddBias(float* __restrict y, const float* __restrict blocks,
                                           const float* __restrict w, const int64_t* starts, int64_t count,
                                           int64_t n, int64_t width) {
  for (int64_t j = 0; j < count; ++j) {
    const int64_t r0 = starts[j], rows = (j + 1 < count ? starts[j + 1] : width) - r0;
    const float* src = blocks + n * r0;
    for (int64_t s = 0; s < n; ++s)
      for (int64_t i = 0; i < rows; ++i) y[s * width + r0 + i] = src[s * rows + i] + w[r0 + i];
  }
}
}  // namespace

PSF_VECTOR_CLONES void SumSamples(float* __restrict w, const float* __restrict dy, int64_t n, int64_t width) {
  for (int64_t i = 0; i < width; ++i) w[i] = 0.0f;
  for (int64_t s = 0; s < n; ++s)
    for (int64_t i = 0; i < width; ++i) w[i] += dy[s * width + i];
}

// ---- Linear -----------------------------------------------------------------

struct Linear::Plan {
  dnnl::inner_product_forward fwd;
  dnnl::inner_product_backward_data bwd_data;
  dnnl::inner_product_backward_weights bwd_weights;
  memory x, b, y, dy, dx, db;
  Converted w_fwd, w_bwd, dw;  // the weight (and its gradient) in the layouts the primitives chose
  bool shared_weights;         // w_bwd is w_fwd
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

memory::desc Linear::Prepare(int64_t n, const memory::desc&) {
  Plan& plan = FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    auto x_md = Matrix(n, in_), y_md = Matrix(n, out_);
    // The weights stay in their own layout ([out, in], PyTorch's) unless
    // oneDNN has only a reference kernel for it: with format_tag::any it
    // picks a blocked layout meant for weights reordered once, and the two
    // reorders a training step then needs cost more than they gain (the
    // MLP's step: 2.3 ms against 1.5 ms with AVX-512 kernels, 3.1 against
    // 2.7 with AVX2's; bench/RESULTS.md).
    auto w_user = Matrix(out_, in_, memory::format_tag::oi);
    auto b_md = Vector(out_);
    auto make_fwd = [&](const memory::desc& w_md) {
      return dnnl::inner_product_forward::primitive_desc({dnnl::prop_kind::forward_training, x_md, w_md, b_md, y_md},
                                                         eng);
    };
    auto fwd_pd = make_fwd(w_user);
    const bool plain = !IsReference(fwd_pd.impl_info_str());
    const memory::desc w_md = plain ? w_user : Any({out_, in_});
    if (!plain) fwd_pd = make_fwd(w_md);
    dnnl::inner_product_backward_data::primitive_desc bd_pd({x_md, w_md, y_md}, eng, fwd_pd);
    dnnl::inner_product_backward_weights::primitive_desc bw_pd({x_md, w_md, b_md, y_md}, eng, fwd_pd);
    auto p = std::make_unique<Plan>(Plan{dnnl::inner_product_forward(fwd_pd),
                                         dnnl::inner_product_backward_data(bd_pd),
                                         dnnl::inner_product_backward_weights(bw_pd), Unbound(x_md, eng),
                                         Unbound(b_md, eng), Unbound(y_md, eng), Unbound(y_md, eng),
                                         Unbound(x_md, eng), Unbound(b_md, eng),
                                         Converted(w_user, fwd_pd.weights_desc(), eng),
                                         Converted(w_user, bd_pd.weights_desc(), eng),
                                         Converted(w_user, bw_pd.diff_weights_desc(), eng), false, {}, {}, {}});
    // Both passes wanting one layout: backward reads the forward pass's copy.
    if (bd_pd.weights_desc() == fwd_pd.weights_desc()) {
      p->w_bwd = p->w_fwd;
      p->shared_weights = true;
    }
    p->fwd_args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_WEIGHTS, p->w_fwd.internal}, {DNNL_ARG_BIAS, p->b},
                   {DNNL_ARG_DST, p->y}};
    p->bwd_data_args = {{DNNL_ARG_DIFF_DST, p->dy}, {DNNL_ARG_WEIGHTS, p->w_bwd.internal},
                        {DNNL_ARG_DIFF_SRC, p->dx}};
    p->bwd_weights_args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_DIFF_DST, p->dy},
                           {DNNL_ARG_DIFF_WEIGHTS, p->dw.internal}, {DNNL_ARG_DIFF_BIAS, p->db}};
    return p;
  });
  Record("inner_product forward", ImplOf(plan.fwd));
  Record("inner_product backward_data", ImplOf(plan.bwd_data));
  Record("inner_product backward_weights", ImplOf(plan.bwd_weights));
  Record("reorder weights", plan.w_fwd.Impl());
  Record("reorder weights", plan.w_bwd.Impl());
  Record("reorder weight gradient", plan.dw.Impl());
  MakeBlocks(n);
  return Matrix(n, out_);
}

struct Linear::BlockPlan {
  int64_t n, rows;
  bool backward;
  dnnl::matmul mm;
  memory a, b, c;
  Args args;
};

Linear::BlockPlan& Linear::BlockOf(int64_t n, int64_t rows, bool backward) {
  for (auto& b : blocks_)
    if (b->n == n && b->rows == rows && b->backward == backward) return *b;
  const auto& eng = ctx_->engine;
  const auto f32 = memory::data_type::f32;
  memory::desc a, b, c;
  if (!backward) {
    // y[:, r0:r1] = x W[r0:r1]^T: W's rows read as a transposed view, the
    // block's output contiguous (oneDNN's gemm writes a [n, rows] view of
    // y with row stride out ~18% slower on a Zen 4 at 128 x 784 x 169);
    // Forward gathers the blocks into y.
    a = Matrix(n, in_);
    b = memory::desc({in_, rows}, f32, memory::dims{1, in_});
    c = Matrix(n, rows);
  } else {
    // dW[r0:r1] = dy[:, r0:r1]^T x.
    a = memory::desc({rows, n}, f32, memory::dims{1, out_});
    b = Matrix(n, in_);
    c = Matrix(rows, in_);
  }
  auto plan = std::make_unique<BlockPlan>();
  plan->n = n;
  plan->rows = rows;
  plan->backward = backward;
  plan->mm = dnnl::matmul(dnnl::matmul::primitive_desc({a, b, c}, eng));
  plan->a = Unbound(a, eng);
  plan->b = Unbound(b, eng);
  plan->c = Unbound(c, eng);
  plan->args = {{DNNL_ARG_SRC, plan->a}, {DNNL_ARG_WEIGHTS, plan->b}, {DNNL_ARG_DST, plan->c}};
  Record(backward ? "matmul weight gradient rows" : "matmul forward rows", ImplOf(plan->mm));
  blocks_.push_back(std::move(plan));
  return *blocks_.back();
}

void Linear::MakeBlocks(int64_t n) {
  auto make = [&](const std::vector<int64_t>& starts, bool backward) {
    if (starts.size() < 2) return;
    for (std::size_t j = 0; j < starts.size(); ++j)
      BlockOf(n, (j + 1 < starts.size() ? starts[j + 1] : out_) - starts[j], backward);
  };
  make(forward_starts_, false);
  make(backward_starts_, true);
  if (forward_starts_.size() > 1 && n * out_ > block_out_size_) {
    block_out_ = AllocateFloats(n * out_);
    block_out_size_ = n * out_;
  }
}

void Linear::SetRowBlocks(std::vector<int64_t> forward_starts, std::vector<int64_t> backward_starts,
                          const RowBlockHooks* hooks) {
  auto check = [&](const std::vector<int64_t>& starts) {
    for (std::size_t j = 0; j < starts.size(); ++j)
      if ((j == 0 && starts[j] != 0) || (j > 0 && starts[j] <= starts[j - 1]) || starts[j] >= out_)
        throw std::invalid_argument("nn: linear layer's row blocks must begin at 0 and ascend below " +
                                    std::to_string(out_));
  };
  check(forward_starts);
  check(backward_starts);
  forward_starts_ = std::move(forward_starts);
  backward_starts_ = std::move(backward_starts);
  hooks_ = hooks;
  for (auto& [n, plan] : plans_) MakeBlocks(n);
}

void Linear::Forward(const float* x, float* y, int64_t n, Pass pass) {
  if (pass == Pass::kTraining && forward_starts_.size() > 1) {
    for (std::size_t j = 0; j < forward_starts_.size(); ++j) {
      const int64_t r0 = forward_starts_[j], r1 = j + 1 < forward_starts_.size() ? forward_starts_[j + 1] : out_;
      if (hooks_ && hooks_->need_rows) hooks_->need_rows(r1);
      BlockPlan& b = BlockOf(n, r1 - r0, false);
      Point(b.a, x);
      Point(b.b, weight_ + r0 * in_);
      Point(b.c, block_out_.get() + n * r0);
      b.mm.execute(ctx_->stream, b.args);
    }
    ctx_->stream.wait();
    if (hooks_ && hooks_->need_bias) hooks_->need_bias();
    GatherBlocksAddBias(y, block_out_.get(), bias_, forward_starts_.data(),
                        static_cast<int64_t>(forward_starts_.size()), n, out_);
    return;
  }
  Plan& p = Find(plans_, n);
  Point(p.x, x);
  p.w_fwd.In(ctx_->stream, weight_);
  Point(p.b, bias_);
  Point(p.y, y);
  p.fwd.execute(ctx_->stream, p.fwd_args);
  ctx_->stream.wait();
}

void Linear::Backward(const float* x, const float*, const float* dy, float* dx, int64_t n) {
  if (dx == nullptr && backward_starts_.size() > 1) {
    SumSamples(dbias_, dy, n, out_);
    if (hooks_ && hooks_->final_bias) hooks_->final_bias();
    for (std::size_t j = 0; j < backward_starts_.size(); ++j) {
      const int64_t r0 = backward_starts_[j], r1 = j + 1 < backward_starts_.size() ? backward_starts_[j + 1] : out_;
      BlockPlan& b = BlockOf(n, r1 - r0, true);
      Point(b.a, dy + r0);
      Point(b.b, x);
      Point(b.c, dweight_ + r0 * in_);
      b.mm.execute(ctx_->stream, b.args);
      ctx_->stream.wait();
      if (hooks_ && hooks_->final_rows) hooks_->final_rows(r0, r1);
    }
    return;
  }
  Plan& p = Find(plans_, n);
  Point(p.x, x);
  Point(p.dy, dy);
  p.dw.Target(dweight_);
  Point(p.db, dbias_);
  p.bwd_weights.execute(ctx_->stream, p.bwd_weights_args);
  p.dw.Out(ctx_->stream, dweight_);
  if (dx != nullptr) {
    if (!p.shared_weights) p.w_bwd.In(ctx_->stream, weight_);
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

Eltwise::Eltwise(DnnlContext* ctx, dnnl::algorithm alg, int64_t width) : ctx_(ctx), alg_(alg), width_(width) {}
Eltwise::~Eltwise() = default;
Eltwise::Eltwise(Eltwise&&) noexcept = default;

memory::desc Eltwise::Prepare(int64_t n, const memory::desc& in) {
  Plan& plan = FindOrMake(plans_, n, [&] {
    const auto& eng = ctx_->engine;
    // A plain input of any shape is one [n, width] matrix to an elementwise
    // op. oneDNN 2.6 has only a reference kernel for blocked layouts whose
    // channels pad the blocks; where f(0) = 0 (ReLU, tanh, GELU) the padded
    // buffer can be treated as one flat vector (its zero padding stays zero).
    memory::desc md = in.dims().size() == 4 && !IsPlain(in) ? in : Matrix(n, width_);
    const bool zero_at_zero = alg_ != dnnl::algorithm::eltwise_logistic_use_dst_for_bwd;
    if (zero_at_zero && md == in &&
        IsReference(dnnl::eltwise_forward::primitive_desc({dnnl::prop_kind::forward_training, alg_, md, 0.0f, 0.0f},
                                                          eng).impl_info_str()))
      md = Vector(static_cast<int64_t>(in.get_size() / sizeof(float)));
    dnnl::eltwise_forward::primitive_desc fwd_pd({dnnl::prop_kind::forward_training, alg_, md, 0.0f, 0.0f}, eng);
    dnnl::eltwise_backward::primitive_desc bwd_pd({alg_, md, md, 0.0f, 0.0f}, eng, fwd_pd);
    auto p = std::make_unique<Plan>(Plan{dnnl::eltwise_forward(fwd_pd), dnnl::eltwise_backward(bwd_pd),
                                         Unbound(md, eng), Unbound(md, eng), Unbound(md, eng), Unbound(md, eng),
                                         {}, {}});
    p->fwd_args = {{DNNL_ARG_SRC, p->x}, {DNNL_ARG_DST, p->y}};
    p->bwd_args = {{uses_dst() ? DNNL_ARG_DST : DNNL_ARG_SRC, uses_dst() ? p->y : p->x},
                   {DNNL_ARG_DIFF_DST, p->dy},
                   {DNNL_ARG_DIFF_SRC, p->dx}};
    return p;
  });
  Record("eltwise forward", ImplOf(plan.fwd));
  Record("eltwise backward", ImplOf(plan.bwd));
  return in;
}

void Eltwise::Forward(const float* x, float* y, int64_t n, Pass) {
  Plan& p = Find(plans_, n);
  Point(p.x, x);
  Point(p.y, y);
  p.fwd.execute(ctx_->stream, p.fwd_args);
  ctx_->stream.wait();
}

void Eltwise::Backward(const float* x, const float* y, const float* dy, float* dx, int64_t n) {
  if (dx == nullptr) return;
  Plan& p = Find(plans_, n);
  if (uses_dst()) {
    Point(p.y, y);
  } else {
    Point(p.x, x);
  }
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

SoftmaxCrossEntropy::SoftmaxCrossEntropy(DnnlContext* ctx, int64_t classes, int64_t max_batch, bool masked)
    : ctx_(ctx), classes_(classes), masked_(masked), log_probs_(max_batch * classes) {}
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

std::vector<std::string> SoftmaxCrossEntropy::implementations() const {
  std::vector<std::string> out;
  for (const auto& [n, plan] : plans_) {
    std::string entry = "logsoftmax forward: " + ImplOf(plan->fwd);
    if (std::find(out.begin(), out.end(), entry) == out.end()) out.push_back(entry);
  }
  return out;
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
  if (!masked_) {
    for (int64_t i = 0; i < n; ++i) sum -= log_probs_[i * classes_ + static_cast<int64_t>(targets[i])];
    return static_cast<float>(sum / n);
  }
  for (int64_t i = 0; i < n; ++i)
    if (targets[i] >= 0) sum -= log_probs_[i * classes_ + static_cast<int64_t>(targets[i])];
  return static_cast<float>(sum / (static_cast<double>(n) * kMaskRate));
}

void SoftmaxCrossEntropy::Backward(float* doutputs) {
  const float inv_n = masked_ ? static_cast<float>(1.0 / (static_cast<double>(n_) * kMaskRate))
                              : 1.0f / static_cast<float>(n_);
  if (!masked_) {
    for (int64_t i = 0; i < n_ * classes_; ++i) doutputs[i] = std::exp(log_probs_[i]) * inv_n;
    for (int64_t i = 0; i < n_; ++i) doutputs[i * classes_ + static_cast<int64_t>(targets_[i])] -= inv_n;
    return;
  }
  for (int64_t i = 0; i < n_; ++i) {
    float* d = doutputs + i * classes_;
    if (targets_[i] < 0) {
      std::fill(d, d + classes_, 0.0f);
      continue;
    }
    const float* lp = log_probs_.data() + i * classes_;
    for (int64_t c = 0; c < classes_; ++c) d[c] = std::exp(lp[c]) * inv_n;
    d[static_cast<int64_t>(targets_[i])] -= inv_n;
  }
}

Scores SoftmaxCrossEntropy::Score(const float* outputs, const float* targets, int64_t n) const {
  Scores s;
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] < 0) continue;  // masked: no target here
    const float* row = outputs + i * classes_;
    int64_t best = std::max_element(row, row + classes_) - row;
    s.sum += best == static_cast<int64_t>(targets[i]);
    s.count += 1;
  }
  return s;
}

// ---- SequenceCrossEntropy ---------------------------------------------------

SequenceCrossEntropy::SequenceCrossEntropy(DnnlContext* ctx, int64_t positions, int64_t classes, int64_t max_batch,
                                           bool masked)
    : positions_(positions), inner_(ctx, classes, max_batch * positions, masked) {}

float SequenceCrossEntropy::Forward(const float* outputs, const float* targets, int64_t n) {
  return inner_.Forward(outputs, targets, n * positions_);
}

void SequenceCrossEntropy::Backward(float* doutputs) { inner_.Backward(doutputs); }

Scores SequenceCrossEntropy::Score(const float* outputs, const float* targets, int64_t n) const {
  if (!inner_.masked_) {
    // The mean loss in nats over n * positions, as a sum over samples of bits.
    const double mean_nats = inner_.Forward(outputs, targets, n * positions_);
    return Scores{mean_nats / std::log(2.0) * static_cast<double>(n), static_cast<double>(n), 0};
  }
  inner_.Forward(outputs, targets, n * positions_);
  Scores s = inner_.Score(outputs, targets, n * positions_);
  const int64_t classes = inner_.classes_;
  for (int64_t i = 0; i < n * positions_; ++i)
    if (targets[i] >= 0) s.second -= inner_.log_probs_[i * classes + static_cast<int64_t>(targets[i])] / std::log(2.0);
  return s;
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

Scores SigmoidBinaryCrossEntropy::Score(const float* outputs, const float* targets,
                                        int64_t n) const {
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) correct += (outputs[i] > 0.0f) == (targets[i] > 0.5f);
  return Scores{static_cast<double>(correct), static_cast<double>(n), 0};
}

// ---- MeanSquaredError -------------------------------------------------------

float MeanSquaredError::Forward(const float* outputs, const float* targets, int64_t n) {
  outputs_ = outputs;
  targets_ = targets;
  n_ = n;
  return static_cast<float>(Score(outputs, targets, n).sum / n);
}

void MeanSquaredError::Backward(float* doutputs) {
  const float scale = 2.0f / static_cast<float>(n_);
  for (int64_t i = 0; i < n_; ++i) doutputs[i] = scale * (outputs_[i] - targets_[i]);
}

Scores MeanSquaredError::Score(const float* outputs, const float* targets, int64_t n) const {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = static_cast<double>(outputs[i]) - targets[i];
    sum += d * d;
  }
  return Scores{sum, static_cast<double>(n), 0};
}

}  // namespace psforge::nn
