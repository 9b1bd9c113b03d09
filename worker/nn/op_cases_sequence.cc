// Op-test cases for the sequence layers: the embedding, the LSTM and the
// two fused, next to loops written from PyTorch's definitions (the LSTM's
// backward pass is back-propagation through time written out by hand).
#include <cmath>
#include <random>

#include "worker/nn/dnnl_util.h"
#include "worker/nn/op_cases.h"
#include "worker/nn/sequence.h"

namespace psforge::nn {
namespace {

class EmbeddingOp final : public OpUnderTest {
 public:
  EmbeddingOp(uint64_t seed, int64_t n, int64_t positions, int64_t vocabulary, int64_t dim)
      : n_(n), positions_(positions), vocabulary_(vocabulary), dim_(dim), layer_(vocabulary, dim, positions) {
    layer_.Prepare(n, Matrix(n, positions));
    std::mt19937_64 rng(seed);
    Vec ids(n * positions);
    for (float& v : ids) v = static_cast<float>(rng() % vocabulary);
    inputs_ = {ids, Random(rng, vocabulary * dim, -1, 1)};
    y_.resize(n * positions * dim);
    grads_ = {Vec(), Vec(vocabulary * dim)};  // ids have no gradient
    layer_.Bind(inputs_[1].data(), grads_[1].data());
  }
  const Vec& Forward() override {
    layer_.Forward(inputs_[0].data(), y_.data(), n_, Pass::kTraining);
    return y_;
  }
  Vec ReferenceForward() override {
    Vec y(y_.size());
    for (int64_t i = 0; i < n_ * positions_; ++i)
      for (int64_t k = 0; k < dim_; ++k) y[i * dim_ + k] = inputs_[1][static_cast<int64_t>(inputs_[0][i]) * dim_ + k];
    return y;
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    layer_.Backward(inputs_[0].data(), y_.data(), dy.data(), nullptr, n_);
    return grads_;
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    Vec dw(vocabulary_ * dim_);
    for (int64_t i = 0; i < n_ * positions_; ++i)
      for (int64_t k = 0; k < dim_; ++k) dw[static_cast<int64_t>(inputs_[0][i]) * dim_ + k] += dy[i * dim_ + k];
    return {Vec(), dw};
  }

 private:
  int64_t n_, positions_, vocabulary_, dim_;
  Embedding layer_;
};

double Sigmoid(double v) { return 1 / (1 + std::exp(-v)); }

// An LSTM of n samples, t positions, `in` inputs and h hidden units, from
// PyTorch's definitions: x [n, t, in], wi [4h, in], wh [4h, h], b [4h].
struct LstmReference {
  int64_t n, t, in, h;

  // Per sample and position: gate activations (i, f, g, o), c and h.
  struct Trace {
    std::vector<double> gates, c, h;  // [n, t, 4h], [n, t, h], [n, t, h]
  };
  Trace Run(const Vec& x, const Vec& wi, const Vec& wh, const Vec& b) const {
    Trace tr{std::vector<double>(n * t * 4 * h), std::vector<double>(n * t * h), std::vector<double>(n * t * h)};
    for (int64_t s = 0; s < n; ++s)
      for (int64_t p = 0; p < t; ++p) {
        const int64_t at = s * t + p;
        for (int64_t r = 0; r < 4 * h; ++r) {
          double a = b[r];
          for (int64_t k = 0; k < in; ++k) a += wi[r * in + k] * double(x[at * in + k]);
          if (p > 0)
            for (int64_t k = 0; k < h; ++k) a += wh[r * h + k] * tr.h[(at - 1) * h + k];
          tr.gates[at * 4 * h + r] = r / h == 2 ? std::tanh(a) : Sigmoid(a);
        }
        for (int64_t j = 0; j < h; ++j) {
          const double* g = &tr.gates[at * 4 * h];
          double prev = p > 0 ? tr.c[(at - 1) * h + j] : 0.0;
          double c = g[h + j] * prev + g[j] * g[2 * h + j];
          tr.c[at * h + j] = c;
          tr.h[at * h + j] = g[3 * h + j] * std::tanh(c);
        }
      }
    return tr;
  }
  Vec Forward(const Vec& x, const Vec& wi, const Vec& wh, const Vec& b) const {
    Trace tr = Run(x, wi, wh, b);
    return Vec(tr.h.begin(), tr.h.end());
  }
  // Back-propagation through time: {dx, dwi, dwh, db}.
  std::vector<Vec> Backward(const Vec& x, const Vec& wi, const Vec& wh, const Vec& b, const Vec& dy) const {
    Trace tr = Run(x, wi, wh, b);
    std::vector<double> dx(x.size()), dwi(wi.size()), dwh(wh.size()), db(4 * h), da(4 * h);
    for (int64_t s = 0; s < n; ++s) {
      std::vector<double> dh_next(h), dc_next(h);
      for (int64_t p = t - 1; p >= 0; --p) {
        const int64_t at = s * t + p;
        const double* g = &tr.gates[at * 4 * h];
        for (int64_t j = 0; j < h; ++j) {
          double c = tr.c[at * h + j], tc = std::tanh(c);
          double prev = p > 0 ? tr.c[(at - 1) * h + j] : 0.0;
          double dh = dy[at * h + j] + dh_next[j];
          double dc = dh * g[3 * h + j] * (1 - tc * tc) + dc_next[j];
          double i = g[j], f = g[h + j], gg = g[2 * h + j], o = g[3 * h + j];
          da[j] = dc * gg * i * (1 - i);
          da[h + j] = dc * prev * f * (1 - f);
          da[2 * h + j] = dc * i * (1 - gg * gg);
          da[3 * h + j] = dh * tc * o * (1 - o);
          dc_next[j] = dc * f;
        }
        std::fill(dh_next.begin(), dh_next.end(), 0.0);
        for (int64_t r = 0; r < 4 * h; ++r) {
          db[r] += da[r];
          for (int64_t k = 0; k < in; ++k) {
            dwi[r * in + k] += da[r] * x[at * in + k];
            dx[at * in + k] += da[r] * wi[r * in + k];
          }
          if (p > 0)
            for (int64_t k = 0; k < h; ++k) {
              dwh[r * h + k] += da[r] * tr.h[(at - 1) * h + k];
              dh_next[k] += da[r] * wh[r * h + k];
            }
        }
      }
    }
    return {Vec(dx.begin(), dx.end()), Vec(dwi.begin(), dwi.end()), Vec(dwh.begin(), dwh.end()),
            Vec(db.begin(), db.end())};
  }
};

// Inputs: x [n, positions, in], weight_ih [4h, in], weight_hh [4h, h], bias [4h].
class LstmOp final : public OpUnderTest {
 public:
  LstmOp(uint64_t seed, int64_t n, int64_t positions, int64_t in, int64_t hidden)
      : ref_{n, positions, in, hidden}, layer_(&ctx_, positions, in, hidden) {
    layer_.Prepare(n, Matrix(n * positions, in));
    std::mt19937_64 rng(seed);
    const float bound = 1.0f / std::sqrt(static_cast<float>(hidden));
    inputs_ = {Random(rng, n * positions * in, -1, 1), Random(rng, 4 * hidden * in, -bound, bound),
               Random(rng, 4 * hidden * hidden, -bound, bound), Random(rng, 4 * hidden, -bound, bound)};
    y_.resize(n * positions * hidden);
    grads_ = {Vec(inputs_[0].size()), Vec(inputs_[1].size()), Vec(inputs_[2].size()), Vec(inputs_[3].size())};
    layer_.Bind(inputs_[1].data(), inputs_[2].data(), inputs_[3].data(), grads_[1].data(), grads_[2].data(),
                grads_[3].data());
  }
  const Vec& Forward() override {
    layer_.Forward(inputs_[0].data(), y_.data(), ref_.n, Pass::kTraining);
    return y_;
  }
  Vec ReferenceForward() override { return ref_.Forward(inputs_[0], inputs_[1], inputs_[2], inputs_[3]); }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    Forward();  // the workspace must be this input's
    layer_.Backward(inputs_[0].data(), y_.data(), dy.data(), grads_[0].data(), ref_.n);
    return grads_;
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    return ref_.Backward(inputs_[0], inputs_[1], inputs_[2], inputs_[3], dy);
  }

 private:
  LstmReference ref_;
  DnnlContext ctx_;
  Lstm layer_;
};

// An embedding fused into the LSTM after it (Lstm::BindTable), as the
// char-LSTM model builds it. Inputs: ids [n, positions] (one out of the
// table's range: it embeds as zeros), the table [vocabulary, in], then the
// LSTM's weights. A vocabulary smaller than n * positions projects the
// table; a larger one, every position.
class EmbeddingLstmOp final : public OpUnderTest {
 public:
  EmbeddingLstmOp(uint64_t seed, int64_t n, int64_t positions, int64_t vocabulary, int64_t in, int64_t hidden)
      : ref_{n, positions, in, hidden}, vocabulary_(vocabulary), layer_(&ctx_, positions, in, hidden) {
    std::mt19937_64 rng(seed);
    Vec ids(n * positions);
    for (float& v : ids) v = static_cast<float>(rng() % vocabulary);
    ids[ids.size() / 2] = static_cast<float>(vocabulary);
    const float bound = 1.0f / std::sqrt(static_cast<float>(hidden));
    inputs_ = {ids, Random(rng, vocabulary * in, -1, 1), Random(rng, 4 * hidden * in, -bound, bound),
               Random(rng, 4 * hidden * hidden, -bound, bound), Random(rng, 4 * hidden, -bound, bound)};
    y_.resize(n * positions * hidden);
    grads_ = {Vec(), Vec(inputs_[1].size()), Vec(inputs_[2].size()), Vec(inputs_[3].size()), Vec(inputs_[4].size())};
    layer_.Bind(inputs_[2].data(), inputs_[3].data(), inputs_[4].data(), grads_[2].data(), grads_[3].data(),
                grads_[4].data());
    layer_.BindTable(inputs_[1].data(), grads_[1].data(), vocabulary);
    layer_.Prepare(n, Matrix(n, positions));
  }
  const Vec& Forward() override {
    layer_.Forward(inputs_[0].data(), y_.data(), ref_.n, Pass::kTraining);
    return y_;
  }
  Vec ReferenceForward() override { return ref_.Forward(Embedded(), inputs_[2], inputs_[3], inputs_[4]); }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    Forward();
    layer_.Backward(inputs_[0].data(), y_.data(), dy.data(), nullptr, ref_.n);
    return grads_;
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    std::vector<Vec> g = ref_.Backward(Embedded(), inputs_[2], inputs_[3], inputs_[4], dy);
    Vec dtable(inputs_[1].size());
    for (std::size_t r = 0; r < inputs_[0].size(); ++r) {
      const auto id = static_cast<int64_t>(inputs_[0][r]);
      if (id >= vocabulary_) continue;
      for (int64_t k = 0; k < ref_.in; ++k) dtable[id * ref_.in + k] += g[0][r * ref_.in + k];
    }
    return {Vec(), dtable, g[1], g[2], g[3]};
  }

 private:
  Vec Embedded() const {
    Vec x(inputs_[0].size() * ref_.in);
    for (std::size_t r = 0; r < inputs_[0].size(); ++r) {
      const auto id = static_cast<int64_t>(inputs_[0][r]);
      if (id < vocabulary_)
        for (int64_t k = 0; k < ref_.in; ++k) x[r * ref_.in + k] = inputs_[1][id * ref_.in + k];
    }
    return x;
  }

  LstmReference ref_;
  int64_t vocabulary_;
  DnnlContext ctx_;
  Lstm layer_;
};

}  // namespace

std::vector<OpCase> SequenceOpCases() {
  std::vector<OpCase> cases;
  cases.push_back({"embedding_n4x7_vocab11_dim5",
                   [](uint64_t seed) { return std::make_unique<EmbeddingOp>(seed, 4, 7, 11, 5); }, 0, 1e-6, 1e-3,
                   1e-2});
  auto lstm = [&](int64_t n, int64_t t, int64_t in, int64_t h, double fd_tol) {
    cases.push_back({"lstm_n" + std::to_string(n) + "_t" + std::to_string(t) + "_in" + std::to_string(in) + "_h" +
                         std::to_string(h),
                     [=](uint64_t seed) { return std::make_unique<LstmOp>(seed, n, t, in, h); }, 1e-5, 1e-4, fd_tol,
                     1e-2});
  };
  lstm(1, 1, 2, 3, 2e-3);
  lstm(3, 5, 4, 6, 2e-3);
  lstm(8, 16, 32, 64, 5e-3);
  auto fused = [&](int64_t n, int64_t t, int64_t vocabulary, int64_t in, int64_t h) {
    cases.push_back({"embedding_lstm_n" + std::to_string(n) + "_t" + std::to_string(t) + "_vocab" +
                         std::to_string(vocabulary) + "_in" + std::to_string(in) + "_h" + std::to_string(h),
                     [=](uint64_t seed) { return std::make_unique<EmbeddingLstmOp>(seed, n, t, vocabulary, in, h); },
                     1e-5, 1e-4, 5e-3, 1e-2});
  };
  fused(4, 9, 11, 5, 6);    // the table projected (11 rows < 36 positions)
  fused(2, 3, 11, 5, 6);    // every position projected
  fused(8, 16, 40, 32, 64);
  return cases;
}

}  // namespace psforge::nn
