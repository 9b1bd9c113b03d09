#include "paramserver/optimizer.h"

#include "common/parallel.h"
#include "common/vector_clones.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <numbers>
#include <limits>
#include <vector>

namespace psforge {
namespace {

float ClipBound(const OptimizerOptions& o) {
  return o.clip_value > 0 ? static_cast<float>(o.clip_value)
                          : std::numeric_limits<float>::infinity();
}

// The update rules over [begin, end), one function each so that each is
// compiled per ISA (common/vector_clones.h).
PSF_VECTOR_CLONES void SgdRule(float* w, const float* g, int64_t begin, int64_t end, GradientPrep prep, float lr) {
  if (prep.l1 == 0.0f) {  // without L1 (the default), a shorter loop
    for (int64_t i = begin; i < end; ++i) w[i] -= lr * prep.WithoutL1(g[i], w[i]);
    return;
  }
  for (int64_t i = begin; i < end; ++i) w[i] -= lr * prep(g[i], w[i]);
}

PSF_VECTOR_CLONES void MomentumRule(float* w, const float* g, float* b, int64_t begin, int64_t end, GradientPrep prep,
                                    float lr, float mu, bool nesterov) {
  if (nesterov) {
    for (int64_t i = begin; i < end; ++i) {
      float gi = prep(g[i], w[i]);
      b[i] = mu * b[i] + gi;
      w[i] -= lr * (gi + mu * b[i]);
    }
  } else if (prep.l1 == 0.0f) {  // without L1 (the default), a shorter loop
    for (int64_t i = begin; i < end; ++i) {
      b[i] = mu * b[i] + prep.WithoutL1(g[i], w[i]);
      w[i] -= lr * b[i];
    }
  } else {
    for (int64_t i = begin; i < end; ++i) {
      b[i] = mu * b[i] + prep(g[i], w[i]);
      w[i] -= lr * b[i];
    }
  }
}

// `keep` scales the weights before the step: AdamW's 1 - lr * weight_decay,
// Adam's 1 (exact: the same bits as no scaling).
PSF_VECTOR_CLONES void AdamRule(float* w, const float* g, float* m, float* v, int64_t begin, int64_t end,
                                GradientPrep prep, float b1, float b2, float step_size, float inv_sqrt_bc2,
                                float eps, float keep) {
  for (int64_t i = begin; i < end; ++i) {
    float gi = prep(g[i], w[i]);
    m[i] = b1 * m[i] + (1.0f - b1) * gi;
    v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
    w[i] = w[i] * keep - step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
  }
}

PSF_VECTOR_CLONES void AdaGradRule(float* w, const float* g, float* s, int64_t begin, int64_t end, GradientPrep prep,
                                   float lr, float eps) {
  for (int64_t i = begin; i < end; ++i) {
    float gi = prep(g[i], w[i]);
    s[i] += gi * gi;
    w[i] -= lr * gi / (std::sqrt(s[i]) + eps);
  }
}

// torch.optim.RMSprop: v = alpha v + (1 - alpha) g^2, and the gradient is
// divided by sqrt(v) + eps, or when centered (g_avg given) by
// sqrt(v - g_avg^2) + eps with g_avg = alpha g_avg + (1 - alpha) g; with
// momentum (buf given) the step is buf = mu buf + that quotient. One loop per
// variant, so that none has a branch inside.
PSF_VECTOR_CLONES void RmsPropRule(float* w, const float* g, float* v, float* g_avg, float* buf, int64_t begin,
                                   int64_t end, GradientPrep prep, float lr, float alpha, float one_minus_alpha,
                                   float eps, float mu) {
  // v - g_avg^2 is >= 0 in exact arithmetic, not always once rounded: 0
  // rather than torch's NaN.
  auto centered_denominator = [&](int64_t i) {
    return std::sqrt(std::max(v[i] - g_avg[i] * g_avg[i], 0.0f)) + eps;
  };
  if (g_avg == nullptr && buf == nullptr) {
    for (int64_t i = begin; i < end; ++i) {
      float gi = prep(g[i], w[i]);
      v[i] = alpha * v[i] + one_minus_alpha * gi * gi;
      w[i] -= lr * gi / (std::sqrt(v[i]) + eps);
    }
  } else if (g_avg == nullptr) {
    for (int64_t i = begin; i < end; ++i) {
      float gi = prep(g[i], w[i]);
      v[i] = alpha * v[i] + one_minus_alpha * gi * gi;
      buf[i] = mu * buf[i] + gi / (std::sqrt(v[i]) + eps);
      w[i] -= lr * buf[i];
    }
  } else if (buf == nullptr) {
    for (int64_t i = begin; i < end; ++i) {
      float gi = prep(g[i], w[i]);
      v[i] = alpha * v[i] + one_minus_alpha * gi * gi;
      g_avg[i] = alpha * g_avg[i] + one_minus_alpha * gi;
      w[i] -= lr * gi / centered_denominator(i);
    }
  } else {
    for (int64_t i = begin; i < end; ++i) {
      float gi = prep(g[i], w[i]);
      v[i] = alpha * v[i] + one_minus_alpha * gi * gi;
      g_avg[i] = alpha * g_avg[i] + one_minus_alpha * gi;
      buf[i] = mu * buf[i] + gi / centered_denominator(i);
      w[i] -= lr * buf[i];
    }
  }
}

// The squared L2 norm of clamp(g * scale, +-clip), for clip_norm.
PSF_VECTOR_CLONES double ClippedSquaredNorm(const float* g, int64_t n, float scale, float clip) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    float c = std::clamp(g[i] * scale, -clip, clip);
    sum += static_cast<double>(c) * c;
  }
  return sum;
}

class Sgd final : public Optimizer {
 public:
  using Optimizer::Optimizer;
  std::span<float> state() override { return {}; }

 protected:
  void Update(float* w, const float* g, int64_t begin, int64_t end, const GradientPrep& prep) override {
    SgdRule(w, g, begin, end, prep, static_cast<float>(LearningRate()));
  }
};

class Momentum final : public Optimizer {
 public:
  Momentum(const OptimizerOptions& o, int64_t size) : Optimizer(o, size), buf_(size, 0.0f) {}
  std::span<float> state() override { return buf_; }

 protected:
  void Update(float* w, const float* g, int64_t begin, int64_t end, const GradientPrep& prep) override {
    MomentumRule(w, g, buf_.data(), begin, end, prep, static_cast<float>(LearningRate()),
                 static_cast<float>(options_.momentum), options_.nesterov);
  }

 private:
  std::vector<float> buf_;
};

// Adam, and AdamW (kind adamw): the same moments, AdamW's weight decay
// applied to the weights before the step (the gradient has none of it).
class Adam final : public Optimizer {
 public:
  // state: first moments, then second moments.
  Adam(const OptimizerOptions& o, int64_t size) : Optimizer(o, size), moments_(2 * size, 0.0f) {}
  std::span<float> state() override { return moments_; }

 protected:
  void Update(float* w, const float* g, int64_t begin, int64_t end, const GradientPrep& prep) override {
    const double t = static_cast<double>(steps_ + 1);
    const double lr = LearningRate();
    const float b1 = static_cast<float>(options_.beta1), b2 = static_cast<float>(options_.beta2);
    const float step_size = static_cast<float>(lr / (1.0 - std::pow(options_.beta1, t)));
    const float inv_sqrt_bc2 =
        static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(options_.beta2, t)));
    const float keep =
        options_.kind == OptimizerKind::kAdamW ? static_cast<float>(1.0 - lr * options_.weight_decay) : 1.0f;
    AdamRule(w, g, moments_.data(), moments_.data() + size_, begin, end, prep, b1, b2, step_size, inv_sqrt_bc2,
             static_cast<float>(options_.epsilon), keep);
  }

 private:
  std::vector<float> moments_;
};

class AdaGrad final : public Optimizer {
 public:
  AdaGrad(const OptimizerOptions& o, int64_t size) : Optimizer(o, size), sums_(size, 0.0f) {}
  std::span<float> state() override { return sums_; }

 protected:
  void Update(float* w, const float* g, int64_t begin, int64_t end, const GradientPrep& prep) override {
    AdaGradRule(w, g, sums_.data(), begin, end, prep, static_cast<float>(LearningRate()),
                static_cast<float>(options_.epsilon));
  }

 private:
  std::vector<float> sums_;
};

class RmsProp final : public Optimizer {
 public:
  // state: the squared gradients' averages, then the gradients' (centered
  // only), then the momentum buffer (momentum > 0 only).
  RmsProp(const OptimizerOptions& o, int64_t size)
      : Optimizer(o, size), state_((int64_t{1} + o.centered + (o.momentum > 0)) * size, 0.0f) {}
  std::span<float> state() override { return state_; }

 protected:
  void Update(float* w, const float* g, int64_t begin, int64_t end, const GradientPrep& prep) override {
    float* v = state_.data();
    float* g_avg = options_.centered ? v + size_ : nullptr;
    float* buf = options_.momentum > 0 ? v + (options_.centered ? 2 : 1) * size_ : nullptr;
    RmsPropRule(w, g, v, g_avg, buf, begin, end, prep, static_cast<float>(LearningRate()),
                static_cast<float>(options_.alpha), static_cast<float>(1.0 - options_.alpha),
                static_cast<float>(options_.epsilon), static_cast<float>(options_.momentum));
  }

 private:
  std::vector<float> state_;
};

}  // namespace

Result<std::unique_ptr<Optimizer>> Optimizer::Create(const OptimizerOptions& o, int64_t size) {
  if (size < 0) return InvalidArgument("optimizer: negative range size");
  if (!(o.learning_rate > 0)) return InvalidArgument("optimizer.learning_rate must be > 0");
  switch (o.kind) {
    case OptimizerKind::kSgd: return std::unique_ptr<Optimizer>(new Sgd(o, size));
    case OptimizerKind::kMomentum: return std::unique_ptr<Optimizer>(new Momentum(o, size));
    case OptimizerKind::kAdam: case OptimizerKind::kAdamW: return std::unique_ptr<Optimizer>(new Adam(o, size));
    case OptimizerKind::kAdaGrad: return std::unique_ptr<Optimizer>(new AdaGrad(o, size));
    case OptimizerKind::kRmsProp: return std::unique_ptr<Optimizer>(new RmsProp(o, size));
  }
  return InvalidArgument("optimizer.kind: unknown");
}

double Optimizer::LearningRate() const { return ScheduledLearningRate(options_, steps_); }

void Optimizer::Apply(std::span<float> weights, std::span<const float> grad, float grad_scale) {
  assert(static_cast<int64_t>(weights.size()) == size_ && weights.size() == grad.size());
  ApplyRange(weights, grad.data(), 0, size_, grad_scale);
  CountStep();
}

void Optimizer::ApplyRange(std::span<float> weights, const float* grad, int64_t begin, int64_t end, float grad_scale) {
  assert(static_cast<int64_t>(weights.size()) == size_ && 0 <= begin && begin <= end && end <= size_);
  assert(options_.clip_norm <= 0 || (begin == 0 && end == size_));
  // adamw decays the weights itself, decoupled from the gradient.
  const double decay = options_.kind == OptimizerKind::kAdamW ? 0.0 : options_.weight_decay;
  GradientPrep prep{grad_scale, ClipBound(options_), 1.0f, static_cast<float>(decay), static_cast<float>(options_.l1)};
  if (options_.clip_norm > 0) {
    double squares = 0;
    for (const KeyRange& r : trainable_)
      squares += ClippedSquaredNorm(grad + r.begin, r.size(), grad_scale, ClipBound(options_));
    double norm = std::sqrt(squares);
    // As torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1.
    double coef = options_.clip_norm / (norm + 1e-6);
    if (coef < 1.0) prep.post = static_cast<float>(coef);
  }
  // Elementwise rules: any split into chunks gives the same bits, so the
  // update is spread over the compute threads when the range is large (and
  // a range updated in parts ends as the whole updated at once).
  constexpr int64_t kChunk = int64_t{1} << 15;
  float* w = weights.data();
  const float* g = grad - begin;  // Update indexes both by key
  for (const KeyRange& r : trainable_) {
    const int64_t b = std::max(begin, r.begin), e = std::min(end, r.end);
    if (b >= e) continue;
    const int64_t chunks = (e - b + kChunk - 1) / kChunk;
    PSF_OMP_PARALLEL_FOR(schedule(static) if (chunks > 1))
    for (int64_t c = 0; c < chunks; ++c)
      Update(w, g, b + c * kChunk, std::min(e, b + (c + 1) * kChunk), prep);
  }
}

void Optimizer::Freeze(const std::vector<KeyRange>& frozen) {
  trainable_.clear();
  int64_t from = 0;
  for (const KeyRange& f : frozen) {
    assert(from <= f.begin && f.begin <= f.end && f.end <= size_);
    if (f.begin > from) trainable_.push_back({from, f.begin});
    from = f.end;
  }
  if (from < size_) trainable_.push_back({from, size_});
}

PSF_VECTOR_CLONES int64_t FirstNonFinite(const void* bytes, int64_t n) {
  const auto* p = static_cast<const unsigned char*>(bytes);
  uint32_t any = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i * sizeof(float), sizeof bits);
    any |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (!any) return -1;
  for (int64_t i = 0; i < n; ++i) {
    float v;
    std::memcpy(&v, p + i * sizeof(float), sizeof v);
    if (!std::isfinite(v)) return i;
  }
  return -1;
}

}  // namespace psforge
