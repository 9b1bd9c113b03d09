// Op-test cases for the sequence layers: the embedding and the LSTM, next
// to loops written from PyTorch's definitions (the LSTM's backward pass is
// back-propagation through time written out by hand).
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

// Inputs: x [n, positions, in], weight_ih [4h, in], weight_hh [4h, h], bias [4h].
class LstmOp final : public OpUnderTest {
 public:
  LstmOp(uint64_t seed, int64_t n, int64_t positions, int64_t in, int64_t hidden)
      : n_(n), t_(positions), in_(in), h_(hidden), layer_(&ctx_, positions, in, hidden) {
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
    layer_.Forward(inputs_[0].data(), y_.data(), n_, Pass::kTraining);
    return y_;
  }

  // Per sample and position: gate activations (i, f, g, o), c and h.
  struct Trace {
    std::vector<double> gates, c, h;  // [n, t, 4h], [n, t, h], [n, t, h]
  };
  Trace Run() const {
    const Vec &x = inputs_[0], &wi = inputs_[1], &wh = inputs_[2], &b = inputs_[3];
    Trace tr{std::vector<double>(n_ * t_ * 4 * h_), std::vector<double>(n_ * t_ * h_),
             std::vector<double>(n_ * t_ * h_)};
    for (int64_t s = 0; s < n_; ++s)
      for (int64_t t = 0; t < t_; ++t) {
        const int64_t at = s * t_ + t;
        for (int64_t r = 0; r < 4 * h_; ++r) {
          double a = b[r];
          for (int64_t k = 0; k < in_; ++k) a += wi[r * in_ + k] * double(x[at * in_ + k]);
          if (t > 0)
            for (int64_t k = 0; k < h_; ++k) a += wh[r * h_ + k] * tr.h[(at - 1) * h_ + k];
          tr.gates[at * 4 * h_ + r] = r / h_ == 2 ? std::tanh(a) : Sigmoid(a);
        }
        for (int64_t j = 0; j < h_; ++j) {
          const double* g = &tr.gates[at * 4 * h_];
          double prev = t > 0 ? tr.c[(at - 1) * h_ + j] : 0.0;
          double c = g[h_ + j] * prev + g[j] * g[2 * h_ + j];
          tr.c[at * h_ + j] = c;
          tr.h[at * h_ + j] = g[3 * h_ + j] * std::tanh(c);
        }
      }
    return tr;
  }
  Vec ReferenceForward() override {
    Trace tr = Run();
    return Vec(tr.h.begin(), tr.h.end());
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    Forward();  // the workspace must be this input's
    layer_.Backward(inputs_[0].data(), y_.data(), dy.data(), grads_[0].data(), n_);
    return grads_;
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    const Vec &x = inputs_[0], &wi = inputs_[1], &wh = inputs_[2];
    Trace tr = Run();
    std::vector<double> dx(x.size()), dwi(wi.size()), dwh(wh.size()), db(4 * h_), da(4 * h_);
    for (int64_t s = 0; s < n_; ++s) {
      std::vector<double> dh_next(h_), dc_next(h_);
      for (int64_t t = t_ - 1; t >= 0; --t) {
        const int64_t at = s * t_ + t;
        const double* g = &tr.gates[at * 4 * h_];
        for (int64_t j = 0; j < h_; ++j) {
          double c = tr.c[at * h_ + j], tc = std::tanh(c);
          double prev = t > 0 ? tr.c[(at - 1) * h_ + j] : 0.0;
          double dh = dy[at * h_ + j] + dh_next[j];
          double dc = dh * g[3 * h_ + j] * (1 - tc * tc) + dc_next[j];
          double i = g[j], f = g[h_ + j], gg = g[2 * h_ + j], o = g[3 * h_ + j];
          da[j] = dc * gg * i * (1 - i);
          da[h_ + j] = dc * prev * f * (1 - f);
          da[2 * h_ + j] = dc * i * (1 - gg * gg);
          da[3 * h_ + j] = dh * tc * o * (1 - o);
          dc_next[j] = dc * f;
        }
        std::fill(dh_next.begin(), dh_next.end(), 0.0);
        for (int64_t r = 0; r < 4 * h_; ++r) {
          db[r] += da[r];
          for (int64_t k = 0; k < in_; ++k) {
            dwi[r * in_ + k] += da[r] * x[at * in_ + k];
            dx[at * in_ + k] += da[r] * wi[r * in_ + k];
          }
          if (t > 0)
            for (int64_t k = 0; k < h_; ++k) {
              dwh[r * h_ + k] += da[r] * tr.h[(at - 1) * h_ + k];
              dh_next[k] += da[r] * wh[r * h_ + k];
            }
        }
      }
    }
    return {Vec(dx.begin(), dx.end()), Vec(dwi.begin(), dwi.end()), Vec(dwh.begin(), dwh.end()),
            Vec(db.begin(), db.end())};
  }

 private:
  int64_t n_, t_, in_, h_;
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
  return cases;
}

}  // namespace psforge::nn
