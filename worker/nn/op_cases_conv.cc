// Op-test cases for the image layers: convolution, max pooling, batch
// normalisation and dropout, each next to loops written from the definition.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "worker/nn/conv.h"
#include "worker/nn/layout_harness.h"
#include "worker/nn/norm.h"
#include "worker/nn/op_cases.h"

namespace psforge::nn {
namespace {

// Inputs x (and weight, bias) of a Conv2d over n samples of [c, h, w].
class ConvOp final : public OpUnderTest {
 public:
  ConvOp(uint64_t seed, int64_t n, Window w, bool input_grad, InputLayout in)
      : n_(n), w_(w), input_grad_(input_grad), layer_(&ctx_, w), io_(&ctx_, &layer_, n, w.in_c, w.in_h, w.in_w, in) {
    std::mt19937_64 rng(seed);
    const int64_t ksize = w.in_c * w.kernel * w.kernel;
    inputs_ = {Random(rng, n * w.in_c * w.in_h * w.in_w, -1, 1), Random(rng, w.out_c * ksize, -0.5, 0.5),
               Random(rng, w.out_c, -0.5, 0.5)};
    y_.resize(n * w.out_c * w.out_h() * w.out_w());
    grads_ = {Vec(input_grad ? inputs_[0].size() : 0), Vec(inputs_[1].size()), Vec(w.out_c)};
    layer_.Bind(inputs_[1].data(), inputs_[2].data(), grads_[1].data(), grads_[2].data());
  }
  const Vec& Forward() override {
    io_.Forward(inputs_[0], y_, Pass::kTraining);
    return y_;
  }
  void TimeForward() override { io_.LayerForward(Pass::kTraining); }
  void TimeBackward(const Vec&) override { io_.LayerBackward(input_grad_); }
  // Calls f(sample, out channel, out y, out x, in channel, in y, in x, weight index)
  // for every term of the sum that makes an output.
  template <typename F>
  void ForEachTerm(F f) const {
    for (int64_t s = 0; s < n_; ++s)
      for (int64_t o = 0; o < w_.out_c; ++o)
        for (int64_t oy = 0; oy < w_.out_h(); ++oy)
          for (int64_t ox = 0; ox < w_.out_w(); ++ox)
            for (int64_t c = 0; c < w_.in_c; ++c)
              for (int64_t ky = 0; ky < w_.kernel; ++ky)
                for (int64_t kx = 0; kx < w_.kernel; ++kx) {
                  int64_t iy = oy * w_.stride - w_.padding + ky, ix = ox * w_.stride - w_.padding + kx;
                  if (iy < 0 || iy >= w_.in_h || ix < 0 || ix >= w_.in_w) continue;
                  int64_t out = ((s * w_.out_c + o) * w_.out_h() + oy) * w_.out_w() + ox;
                  int64_t in = ((s * w_.in_c + c) * w_.in_h + iy) * w_.in_w + ix;
                  int64_t wi = ((o * w_.in_c + c) * w_.kernel + ky) * w_.kernel + kx;
                  f(out, in, wi, o);
                }
  }
  Vec ReferenceForward() override {
    std::vector<double> y(y_.size());
    const int64_t plane = w_.out_h() * w_.out_w();
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = inputs_[2][(i / plane) % w_.out_c];
    ForEachTerm([&](int64_t out, int64_t in, int64_t wi, int64_t) {
      y[out] += double(inputs_[0][in]) * inputs_[1][wi];
    });
    return Vec(y.begin(), y.end());
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    io_.Backward(dy, input_grad_ ? &grads_[0] : nullptr);
    return grads_;
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    std::vector<double> dx(inputs_[0].size()), dw(inputs_[1].size()), db(inputs_[2].size());
    ForEachTerm([&](int64_t out, int64_t in, int64_t wi, int64_t) {
      dx[in] += double(dy[out]) * inputs_[1][wi];
      dw[wi] += double(dy[out]) * inputs_[0][in];
    });
    const int64_t plane = w_.out_h() * w_.out_w();
    for (std::size_t i = 0; i < dy.size(); ++i) db[(i / plane) % w_.out_c] += dy[i];
    Vec dxf(dx.begin(), dx.end());
    if (!input_grad_) dxf.clear();
    return {dxf, Vec(dw.begin(), dw.end()), Vec(db.begin(), db.end())};
  }

 private:
  int64_t n_;
  Window w_;
  bool input_grad_;
  DnnlContext ctx_;
  Conv2d layer_;
  LayoutHarness io_;
};

class MaxPoolOp final : public OpUnderTest {
 public:
  MaxPoolOp(uint64_t seed, int64_t n, Window w, InputLayout in)
      : n_(n), w_(w), layer_(&ctx_, w), io_(&ctx_, &layer_, n, w.in_c, w.in_h, w.in_w, in) {
    std::mt19937_64 rng(seed);
    // No window may hold a near tie for its maximum (finite differences of
    // 1e-3 must never change which element wins). Small cases: distinct
    // values 0.01 apart. Large non-overlapping windows: random multiples of
    // 0.01 plus an offset by position in the window, at least 0.0025 apart.
    Vec x(n * w.in_c * w.in_h * w.in_w);
    if (x.size() <= 1000 || w.kernel != w.stride) {
      std::iota(x.begin(), x.end(), 0.0f);
      std::shuffle(x.begin(), x.end(), rng);
      for (float& v : x) v = v * 0.01f - 1.0f;
    } else {
      std::uniform_int_distribution<int> level(-100, 100);
      const float step = 0.01f / static_cast<float>(w.kernel * w.kernel);
      for (std::size_t i = 0; i < x.size(); ++i) {
        int64_t ix = static_cast<int64_t>(i) % w.in_w, iy = static_cast<int64_t>(i) / w.in_w % w.in_h;
        x[i] = level(rng) * 0.01f + static_cast<float>((iy % w.kernel) * w.kernel + ix % w.kernel) * step;
      }
    }
    inputs_ = {x};
    y_.resize(n * w.in_c * w.out_h() * w.out_w());
    grads_ = {Vec(x.size())};
  }
  const Vec& Forward() override {
    io_.Forward(inputs_[0], y_, Pass::kTraining);
    return y_;
  }
  void TimeForward() override { io_.LayerForward(Pass::kTraining); }
  void TimeBackward(const Vec&) override { io_.LayerBackward(true); }
  // The input index of each output's maximum.
  std::vector<int64_t> ArgMax() const {
    std::vector<int64_t> arg(y_.size(), -1);
    for (int64_t sc = 0; sc < n_ * w_.in_c; ++sc)
      for (int64_t oy = 0; oy < w_.out_h(); ++oy)
        for (int64_t ox = 0; ox < w_.out_w(); ++ox) {
          int64_t out = (sc * w_.out_h() + oy) * w_.out_w() + ox;
          for (int64_t ky = 0; ky < w_.kernel; ++ky)
            for (int64_t kx = 0; kx < w_.kernel; ++kx) {
              int64_t iy = oy * w_.stride - w_.padding + ky, ix = ox * w_.stride - w_.padding + kx;
              if (iy < 0 || iy >= w_.in_h || ix < 0 || ix >= w_.in_w) continue;
              int64_t in = (sc * w_.in_h + iy) * w_.in_w + ix;
              if (arg[out] < 0 || inputs_[0][in] > inputs_[0][arg[out]]) arg[out] = in;
            }
        }
    return arg;
  }
  Vec ReferenceForward() override {
    Vec y(y_.size());
    auto arg = ArgMax();
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = inputs_[0][arg[i]];
    return y;
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    Forward();  // the workspace must be this input's
    io_.Backward(dy, &grads_[0]);
    return grads_;
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    Vec dx(inputs_[0].size());
    auto arg = ArgMax();
    for (std::size_t i = 0; i < dy.size(); ++i) dx[arg[i]] += dy[i];
    return {dx};
  }

 private:
  int64_t n_;
  Window w_;
  DnnlContext ctx_;
  MaxPool2d layer_;
  LayoutHarness io_;
};

// Training-mode batch normalisation over n samples of [c, h, w] (h = w = 0: vectors).
class BatchNormOp final : public OpUnderTest {
 public:
  BatchNormOp(uint64_t seed, int64_t n, int64_t c, int64_t h, int64_t w, InputLayout in)
      : n_(n), c_(c), plane_(std::max<int64_t>(1, h * w)), layer_(&ctx_, c, h, w),
        io_(&ctx_, &layer_, n, c, std::max<int64_t>(1, h), std::max<int64_t>(1, w), h > 0 ? in : InputLayout::kPlain) {
    std::mt19937_64 rng(seed);
    inputs_ = {Random(rng, n * c * plane_, -2, 3), Random(rng, c, 0.5, 1.5), Random(rng, c, -0.5, 0.5)};
    y_.resize(inputs_[0].size());
    grads_ = {Vec(inputs_[0].size()), Vec(c), Vec(c)};
    layer_.Bind(inputs_[1].data(), inputs_[2].data(), grads_[1].data(), grads_[2].data());
  }
  const Vec& Forward() override {
    io_.Forward(inputs_[0], y_, Pass::kTraining);
    return y_;
  }
  void TimeForward() override { io_.LayerForward(Pass::kTraining); }
  void TimeBackward(const Vec&) override { io_.LayerBackward(true); }
  int64_t Channel(std::size_t i) const { return static_cast<int64_t>(i) / plane_ % c_; }
  // Per channel: mean and 1/sqrt(biased variance + eps).
  void Stats(std::vector<double>* mean, std::vector<double>* inv_std) const {
    const Vec& x = inputs_[0];
    mean->assign(c_, 0.0);
    inv_std->assign(c_, 0.0);
    const double m = static_cast<double>(n_ * plane_);
    for (std::size_t i = 0; i < x.size(); ++i) (*mean)[Channel(i)] += x[i] / m;
    for (std::size_t i = 0; i < x.size(); ++i) {
      double d = x[i] - (*mean)[Channel(i)];
      (*inv_std)[Channel(i)] += d * d / m;
    }
    for (double& v : *inv_std) v = 1.0 / std::sqrt(v + BatchNorm::kEpsilon);
  }
  Vec ReferenceForward() override {
    std::vector<double> mean, inv_std;
    Stats(&mean, &inv_std);
    Vec y(y_.size());
    for (std::size_t i = 0; i < y.size(); ++i) {
      int64_t c = Channel(i);
      y[i] = static_cast<float>(inputs_[1][c] * (inputs_[0][i] - mean[c]) * inv_std[c] + inputs_[2][c]);
    }
    return y;
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    Forward();
    io_.Backward(dy, &grads_[0]);
    return grads_;
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    std::vector<double> mean, inv_std, sum_dy(c_), sum_dy_xhat(c_);
    Stats(&mean, &inv_std);
    const Vec& x = inputs_[0];
    Vec dx(x.size()), dscale(c_), dshift(c_);
    for (std::size_t i = 0; i < x.size(); ++i) {
      int64_t c = Channel(i);
      double xhat = (x[i] - mean[c]) * inv_std[c];
      sum_dy[c] += dy[i];
      sum_dy_xhat[c] += dy[i] * xhat;
    }
    const double m = static_cast<double>(n_ * plane_);
    for (std::size_t i = 0; i < x.size(); ++i) {
      int64_t c = Channel(i);
      double xhat = (x[i] - mean[c]) * inv_std[c];
      dx[i] = static_cast<float>(inputs_[1][c] * inv_std[c] * (dy[i] - sum_dy[c] / m - xhat * sum_dy_xhat[c] / m));
    }
    for (int64_t c = 0; c < c_; ++c) {
      dscale[c] = static_cast<float>(sum_dy_xhat[c]);
      dshift[c] = static_cast<float>(sum_dy[c]);
    }
    return {dx, dscale, dshift};
  }

 private:
  int64_t n_, c_, plane_;
  DnnlContext ctx_;
  BatchNorm layer_;
  LayoutHarness io_;
};

class DropoutOp final : public OpUnderTest {
 public:
  // Samples of [c, h, w] (h = w = 1: vectors of c).
  DropoutOp(uint64_t seed, int64_t n, int64_t c, int64_t h, int64_t w, double rate, InputLayout in)
      : rate_(rate), layer_(&ctx_, rate, c * h * w, seed), io_(&ctx_, &layer_, n, c, h, w, in) {
    std::mt19937_64 rng(seed);
    inputs_ = {Random(rng, n * c * h * w, 0.1f, 2)};  // never zero: a zero output means dropped
    y_.resize(inputs_[0].size());
    grads_ = {Vec(inputs_[0].size())};
    layer_.set_samples({7, nullptr, n});
  }
  const Vec& Forward() override {
    io_.Forward(inputs_[0], y_, Pass::kTraining);
    return y_;
  }
  void TimeForward() override { io_.LayerForward(Pass::kTraining); }
  void TimeBackward(const Vec&) override { io_.LayerBackward(true); }
  // Which units the layer dropped is its own (random) choice; the reference
  // checks what it does with it: kept units scaled by 1/(1-rate), and about
  // `rate` of them dropped.
  Vec ReferenceForward() override {
    Forward();  // the layer's mask for this step
    Vec y(y_.size());
    int64_t dropped = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      dropped += y_[i] == 0.0f;
      y[i] = y_[i] == 0.0f ? 0.0f : static_cast<float>(inputs_[0][i] / (1.0 - rate_));
    }
    const double expected = rate_ * static_cast<double>(y.size());
    if (std::abs(static_cast<double>(dropped) - expected) > 5 * std::sqrt(expected * (1 - rate_)) + 1)
      y.assign(y.size(), -1.0f);  // a wrong drop rate fails the comparison
    return y;
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    Forward();
    io_.Backward(dy, &grads_[0]);
    return grads_;
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    Vec dx(dy.size());
    for (std::size_t i = 0; i < dx.size(); ++i)
      dx[i] = y_[i] == 0.0f ? 0.0f : static_cast<float>(dy[i] / (1.0 - rate_));
    return {dx};
  }

 private:
  double rate_;
  DnnlContext ctx_;
  Dropout layer_;
  LayoutHarness io_;
};

std::string Dims(std::initializer_list<int64_t> d) {
  std::string s;
  for (int64_t v : d) {
    if (!s.empty()) s += 'x';
    s += std::to_string(v);
  }
  return s;
}

}  // namespace

std::vector<OpCase> ConvOpCases() {
  std::vector<OpCase> cases;
  const InputLayout layouts[] = {InputLayout::kPlain, InputLayout::kModel};
  auto suffix = [](InputLayout in) { return std::string("_") + InputLayoutName(in); };
  auto conv = [&](int64_t n, Window w, bool input_grad, double fd_tol, double tol = 1e-5) {
    for (InputLayout in : layouts)
      cases.push_back({"conv_n" + std::to_string(n) + "_" + Dims({w.in_c, w.in_h, w.in_w}) + "_to" +
                           std::to_string(w.out_c) + "_k" + std::to_string(w.kernel) + "s" + std::to_string(w.stride) +
                           "p" + std::to_string(w.padding) + (input_grad ? "" : "_no_input_grad") + suffix(in),
                       [=](uint64_t seed) { return std::make_unique<ConvOp>(seed, n, w, input_grad, in); }, tol,
                       tol, fd_tol, 1e-2});
  };
  conv(1, {1, 5, 5, 1, 3, 1, 0}, true, 2e-3);
  conv(2, {3, 7, 6, 4, 3, 2, 1}, true, 2e-3);
  conv(4, {2, 9, 9, 5, 5, 1, 2}, true, 5e-3);
  conv(2, {20, 6, 6, 24, 3, 1, 1}, true, 5e-3);  // channel counts that pad a blocked layout
  // The Fashion-MNIST CNN's layers: sums over 25k terms in float (a weight
  // gradient of the first is a sum of 32x28x28 products of |x dy| < 1,
  // whose float rounding depends on the kernel's blocking: 1e-4 seen).
  conv(32, {1, 28, 28, 32, 3, 1, 1}, false, 2e-2, 2e-4);
  conv(16, {32, 14, 14, 64, 3, 1, 1}, true, 5e-2, 5e-5);
  auto pool = [&](int64_t n, Window w) {
    for (InputLayout in : layouts)
      cases.push_back({"maxpool_n" + std::to_string(n) + "_" + Dims({w.in_c, w.in_h, w.in_w}) + "_k" +
                           std::to_string(w.kernel) + "s" + std::to_string(w.stride) + "p" +
                           std::to_string(w.padding) + suffix(in),
                       [=](uint64_t seed) { return std::make_unique<MaxPoolOp>(seed, n, w, in); }, 0, 0, 1e-3,
                       1e-3});
  };
  pool(2, {3, 6, 6, 3, 2, 2, 0});
  pool(3, {2, 7, 5, 2, 3, 2, 1});
  pool(32, {32, 28, 28, 32, 2, 2, 0});
  auto bn = [&](int64_t n, int64_t c, int64_t h, int64_t w) {
    for (InputLayout in : layouts) {
      if (h == 0 && in == InputLayout::kModel) continue;  // vectors are always plain
      cases.push_back({"batchnorm_n" + std::to_string(n) + "_" + (h ? Dims({c, h, w}) : std::to_string(c)) +
                           suffix(in),
                       [=](uint64_t seed) { return std::make_unique<BatchNormOp>(seed, n, c, h, w, in); }, 1e-4,
                       1e-4, 5e-3, 1e-2});
    }
  };
  bn(4, 3, 5, 5);
  bn(8, 6, 0, 0);
  bn(32, 32, 14, 14);
  for (double rate : {0.25, 0.5})
    cases.push_back({"dropout_n64x100_rate" + std::to_string(static_cast<int>(rate * 100)) + "_plain",
                     [=](uint64_t seed) {
                       return std::make_unique<DropoutOp>(seed, 64, 100, 1, 1, rate, InputLayout::kPlain);
                     },
                     1e-6, 1e-6, 1e-3, 1e-2});
  cases.push_back({"dropout_n8_20x5x5_rate25_model",
                   [](uint64_t seed) {
                     return std::make_unique<DropoutOp>(seed, 8, 20, 5, 5, 0.25, InputLayout::kModel);
                   },
                   1e-6, 1e-6, 1e-3, 1e-2});
  return cases;
}

}  // namespace psforge::nn
