// Op-test cases for the Transformer layers (nn/transformer.h) and GELU.
// Each reference is the layer's definition written as plain loops in double
// precision; the reference gradients are central differences of that
// double-precision forward pass (accurate to ~1e-9, far below the
// tolerances), so no hand-derived backward pass is trusted twice.
#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "worker/nn/dnnl_util.h"
#include "worker/nn/op_cases.h"
#include "worker/nn/transformer.h"

namespace psforge::nn {
namespace {

using Doubles = std::vector<double>;

class DoubleReferenceOp : public OpUnderTest {
 public:
  Vec ReferenceForward() override {
    Doubles y = Reference(Inputs());
    return Vec(y.begin(), y.end());
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    std::vector<Doubles> in = Inputs();
    auto objective = [&] {
      Doubles y = Reference(in);
      double s = 0;
      for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * dy[i];
      return s;
    };
    std::vector<Vec> grads;
    for (std::size_t k = 0; k < in.size(); ++k) {
      Vec& g = grads.emplace_back();
      if (grads_[k].empty()) continue;  // the layer does not differentiate it
      g.resize(in[k].size());
      for (std::size_t i = 0; i < in[k].size(); ++i) {
        const double saved = in[k][i], h = 1e-6 * (1 + std::abs(saved));
        in[k][i] = saved + h;
        const double plus = objective();
        in[k][i] = saved - h;
        const double minus = objective();
        in[k][i] = saved;
        g[i] = static_cast<float>((plus - minus) / (2 * h));
      }
    }
    return grads;
  }

 protected:
  // The layer's output for `in` (inputs_ in double), from its definition.
  virtual Doubles Reference(const std::vector<Doubles>& in) const = 0;

 private:
  std::vector<Doubles> Inputs() const {
    std::vector<Doubles> in;
    for (const Vec& v : inputs_) in.emplace_back(v.begin(), v.end());
    return in;
  }
};

// Inputs: x [rows, features], scale, shift [features].
class LayerNormOp final : public DoubleReferenceOp {
 public:
  LayerNormOp(uint64_t seed, int64_t rows, int64_t features)
      : rows_(rows), f_(features), layer_(&ctx_, features) {
    layer_.Prepare(rows, Matrix(rows, features));
    std::mt19937_64 rng(seed);
    inputs_ = {Random(rng, rows * features, -2, 2), Random(rng, features, 0.5, 1.5), Random(rng, features, -0.5, 0.5)};
    y_.resize(rows * features);
    grads_ = {Vec(inputs_[0].size()), Vec(features), Vec(features)};
    layer_.Bind(inputs_[1].data(), inputs_[2].data(), grads_[1].data(), grads_[2].data());
  }
  const Vec& Forward() override {
    layer_.Forward(inputs_[0].data(), y_.data(), rows_, Pass::kTraining);
    return y_;
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    Forward();
    layer_.Backward(inputs_[0].data(), y_.data(), dy.data(), grads_[0].data(), rows_);
    return grads_;
  }

 protected:
  Doubles Reference(const std::vector<Doubles>& in) const override {
    Doubles y(rows_ * f_);
    for (int64_t r = 0; r < rows_; ++r) {
      double mean = 0, var = 0;
      for (int64_t c = 0; c < f_; ++c) mean += in[0][r * f_ + c] / f_;
      for (int64_t c = 0; c < f_; ++c) var += (in[0][r * f_ + c] - mean) * (in[0][r * f_ + c] - mean) / f_;
      for (int64_t c = 0; c < f_; ++c)
        y[r * f_ + c] = (in[0][r * f_ + c] - mean) / std::sqrt(var + LayerNorm::kEpsilon) * in[1][c] + in[2][c];
    }
    return y;
  }

 private:
  int64_t rows_, f_;
  DnnlContext ctx_;
  LayerNorm layer_;
};

// Inputs: x [n, positions, dim], weight [positions, dim].
class PositionOp final : public DoubleReferenceOp {
 public:
  PositionOp(uint64_t seed, int64_t n, int64_t positions, int64_t dim) : n_(n), layer_(positions, dim) {
    layer_.Prepare(n, Matrix(n * positions, dim));
    std::mt19937_64 rng(seed);
    inputs_ = {Random(rng, n * positions * dim, -1, 1), Random(rng, positions * dim, -1, 1)};
    y_.resize(inputs_[0].size());
    grads_ = {Vec(inputs_[0].size()), Vec(inputs_[1].size())};
    layer_.Bind(inputs_[1].data(), grads_[1].data());
  }
  const Vec& Forward() override {
    layer_.Forward(inputs_[0].data(), y_.data(), n_, Pass::kTraining);
    return y_;
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    layer_.Backward(inputs_[0].data(), y_.data(), dy.data(), grads_[0].data(), n_);
    return grads_;
  }

 protected:
  Doubles Reference(const std::vector<Doubles>& in) const override {
    Doubles y(in[0].size());
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = in[0][i] + in[1][i % in[1].size()];
    return y;
  }

 private:
  int64_t n_;
  PositionEmbedding layer_;
};

// Inputs: x [n, positions, dim].
class MeanPoolOp final : public DoubleReferenceOp {
 public:
  MeanPoolOp(uint64_t seed, int64_t n, int64_t positions, int64_t dim)
      : n_(n), t_(positions), d_(dim), layer_(positions, dim) {
    layer_.Prepare(n, Matrix(n * positions, dim));
    std::mt19937_64 rng(seed);
    inputs_ = {Random(rng, n * positions * dim, -1, 1)};
    y_.resize(n * dim);
    grads_ = {Vec(inputs_[0].size())};
  }
  const Vec& Forward() override {
    layer_.Forward(inputs_[0].data(), y_.data(), n_, Pass::kTraining);
    return y_;
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    layer_.Backward(inputs_[0].data(), y_.data(), dy.data(), grads_[0].data(), n_);
    return grads_;
  }

 protected:
  Doubles Reference(const std::vector<Doubles>& in) const override {
    Doubles y(n_ * d_, 0.0);
    for (int64_t s = 0; s < n_; ++s)
      for (int64_t t = 0; t < t_; ++t)
        for (int64_t c = 0; c < d_; ++c) y[s * d_ + c] += in[0][(s * t_ + t) * d_ + c] / static_cast<double>(t_);
    return y;
  }

 private:
  int64_t n_, t_, d_;
  MeanPool layer_;
};

// Inputs: x [n, width].
class GeluOp final : public DoubleReferenceOp {
 public:
  GeluOp(uint64_t seed, int64_t n, int64_t width)
      : n_(n), layer_(&ctx_, dnnl::algorithm::eltwise_gelu_erf, width) {
    layer_.Prepare(n, Matrix(n, width));
    std::mt19937_64 rng(seed);
    inputs_ = {Random(rng, n * width, -3, 3)};
    y_.resize(inputs_[0].size());
    grads_ = {Vec(inputs_[0].size())};
  }
  const Vec& Forward() override {
    layer_.Forward(inputs_[0].data(), y_.data(), n_, Pass::kTraining);
    return y_;
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    Forward();
    layer_.Backward(inputs_[0].data(), y_.data(), dy.data(), grads_[0].data(), n_);
    return grads_;
  }

 protected:
  Doubles Reference(const std::vector<Doubles>& in) const override {
    Doubles y(in[0].size());
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = 0.5 * in[0][i] * (1 + std::erf(in[0][i] / std::sqrt(2.0)));
    return y;
  }

 private:
  int64_t n_;
  DnnlContext ctx_;
  Eltwise layer_;
};

// Inputs: x [n, positions, dim], in_proj [3 dim, dim], in_bias [3 dim],
// out_proj [dim, dim], out_bias [dim].
class AttentionOp final : public DoubleReferenceOp {
 public:
  AttentionOp(uint64_t seed, int64_t n, int64_t positions, int64_t dim, int64_t heads, bool causal, double dropout = 0)
      : n_(n), t_(positions), d_(dim), h_(heads), causal_(causal),
        layer_(&ctx_, positions, dim, heads, causal, dropout, seed) {
    layer_.Prepare(n, Matrix(n * positions, dim));
    std::mt19937_64 rng(seed);
    const float bound = 1.0f / std::sqrt(static_cast<float>(dim));
    inputs_ = {Random(rng, n * positions * dim, -1, 1), Random(rng, 3 * dim * dim, -bound, bound),
               Random(rng, 3 * dim, -0.2, 0.2), Random(rng, dim * dim, -bound, bound), Random(rng, dim, -0.2, 0.2)};
    y_.resize(n * positions * dim);
    for (const Vec& v : inputs_) grads_.emplace_back(v.size());
    layer_.Bind(inputs_[1].data(), inputs_[2].data(), inputs_[3].data(), inputs_[4].data(), grads_[1].data(),
                grads_[2].data(), grads_[3].data(), grads_[4].data());
    if (dropout > 0) {  // one step's mask, the same at every pass
      layer_.set_samples({7, nullptr, n});
      Forward();
      const float* mask = layer_.dropout_mask(n);
      mask_.assign(mask, mask + n * heads * positions * positions);
    }
  }
  const Vec& Forward() override {
    layer_.Forward(inputs_[0].data(), y_.data(), n_, Pass::kTraining);
    return y_;
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    Forward();
    layer_.Backward(inputs_[0].data(), y_.data(), dy.data(), grads_[0].data(), n_);
    return grads_;
  }

 protected:
  Doubles Reference(const std::vector<Doubles>& in) const override {
    const Doubles &x = in[0], &wi = in[1], &bi = in[2], &wo = in[3], &bo = in[4];
    const int64_t hd = d_ / h_;
    Doubles y(n_ * t_ * d_), qkv(3 * d_), heads(t_ * d_);
    for (int64_t s = 0; s < n_; ++s) {
      std::vector<Doubles> rows(t_);
      for (int64_t i = 0; i < t_; ++i) {
        rows[i].assign(3 * d_, 0);
        for (int64_t o = 0; o < 3 * d_; ++o) {
          double v = bi[o];
          for (int64_t c = 0; c < d_; ++c) v += wi[o * d_ + c] * x[(s * t_ + i) * d_ + c];
          rows[i][o] = v;
        }
      }
      for (int64_t h = 0; h < h_; ++h)
        for (int64_t i = 0; i < t_; ++i) {
          Doubles score(t_, -std::numeric_limits<double>::infinity());
          double top = -std::numeric_limits<double>::infinity();
          for (int64_t j = 0; j < t_; ++j) {
            if (causal_ && j > i) continue;
            double v = 0;
            for (int64_t c = 0; c < hd; ++c) v += rows[i][h * hd + c] * rows[j][d_ + h * hd + c];
            score[j] = v / std::sqrt(static_cast<double>(hd));
            top = std::max(top, score[j]);
          }
          double norm = 0;
          for (int64_t j = 0; j < t_; ++j) norm += std::exp(score[j] - top);
          for (int64_t c = 0; c < hd; ++c) {
            double v = 0;
            for (int64_t j = 0; j < t_; ++j) {
              const double kept = mask_.empty() ? 1.0 : mask_[((s * h_ + h) * t_ + i) * t_ + j];
              v += std::exp(score[j] - top) / norm * kept * rows[j][2 * d_ + h * hd + c];
            }
            heads[i * d_ + h * hd + c] = v;
          }
        }
      for (int64_t i = 0; i < t_; ++i)
        for (int64_t o = 0; o < d_; ++o) {
          double v = bo[o];
          for (int64_t c = 0; c < d_; ++c) v += wo[o * d_ + c] * heads[i * d_ + c];
          y[(s * t_ + i) * d_ + o] = v;
        }
    }
    return y;
  }

 private:
  int64_t n_, t_, d_, h_;
  bool causal_;
  Vec mask_;  // the dropout mask of the step, when there is dropout
  DnnlContext ctx_;
  Attention layer_;
};

}  // namespace

std::vector<OpCase> TransformerOpCases() {
  std::vector<OpCase> cases;
  cases.push_back({"layernorm_n7x13", [](uint64_t seed) { return std::make_unique<LayerNormOp>(seed, 7, 13); },
                   1e-5, 1e-4, 5e-3, 1e-2});
  // A character Transformer's rows: batch x positions of 64 features.
  cases.push_back({"layernorm_n32x64", [](uint64_t seed) { return std::make_unique<LayerNormOp>(seed, 32, 64); },
                   1e-5, 1e-4, 5e-3, 1e-2});
  cases.push_back({"position_n3_5x4", [](uint64_t seed) { return std::make_unique<PositionOp>(seed, 3, 5, 4); },
                   1e-6, 1e-5, 2e-3, 1e-2});
  cases.push_back({"meanpool_n3_7x5", [](uint64_t seed) { return std::make_unique<MeanPoolOp>(seed, 3, 7, 5); },
                   1e-6, 1e-5, 2e-3, 1e-2});
  cases.push_back({"gelu_n9x31", [](uint64_t seed) { return std::make_unique<GeluOp>(seed, 9, 31); },
                   1e-5, 1e-4, 2e-3, 1e-3});
  for (bool causal : {false, true}) {
    const std::string mask = causal ? "_causal" : "";
    cases.push_back({"attention_n2_5x8_h2" + mask,
                     [=](uint64_t seed) { return std::make_unique<AttentionOp>(seed, 2, 5, 8, 2, causal); },
                     1e-5, 1e-4, 5e-3, 1e-2});
    cases.push_back({"attention_n2_16x32_h4" + mask,
                     [=](uint64_t seed) { return std::make_unique<AttentionOp>(seed, 2, 16, 32, 4, causal); },
                     1e-5, 1e-4, 5e-3, 1e-2});
  }
  // Dropout on the probabilities, a fixed step's mask.
  cases.push_back({"attention_n2_16x32_h4_causal_dropout",
                   [](uint64_t seed) { return std::make_unique<AttentionOp>(seed, 2, 16, 32, 4, true, 0.3); },
                   1e-5, 1e-4, 5e-3, 1e-2});
  return cases;
}

}  // namespace psforge::nn
