#include "worker/nn/op_cases.h"

#include <cmath>
#include <random>

#include "worker/nn/layers.h"
#include "worker/nn/layout_harness.h"
#include "worker/nn/dnnl_util.h"

namespace psforge::nn {

Vec Random(std::mt19937_64& rng, std::size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  Vec v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

namespace {


class LinearOp final : public OpUnderTest {
 public:
  LinearOp(uint64_t seed, int64_t n, int64_t in, int64_t out, bool input_grad)
      : n_(n), in_(in), out_(out), input_grad_(input_grad), layer_(&ctx_, in, out) {
    layer_.Prepare(n, Matrix(n, in));
    std::mt19937_64 rng(seed);
    inputs_ = {Random(rng, n * in, -1, 1), Random(rng, out * in, -0.5, 0.5),
               Random(rng, out, -0.5, 0.5)};
    y_.resize(n * out);
    grads_ = {Vec(input_grad ? n * in : 0), Vec(out * in), Vec(out)};
    layer_.Bind(inputs_[1].data(), inputs_[2].data(), grads_[1].data(), grads_[2].data());
  }
  const Vec& Forward() override {
    layer_.Forward(inputs_[0].data(), y_.data(), n_, Pass::kTraining);
    return y_;
  }
  Vec ReferenceForward() override {
    Vec y(n_ * out_);
    for (int64_t i = 0; i < n_; ++i)
      for (int64_t o = 0; o < out_; ++o) {
        double s = inputs_[2][o];
        for (int64_t k = 0; k < in_; ++k) s += double(inputs_[0][i * in_ + k]) * inputs_[1][o * in_ + k];
        y[i * out_ + o] = static_cast<float>(s);
      }
    return y;
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    layer_.Backward(inputs_[0].data(), nullptr, dy.data(), input_grad_ ? grads_[0].data() : nullptr, n_);
    return grads_;
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    Vec dx(n_ * in_), dw(out_ * in_), db(out_);
    for (int64_t i = 0; i < n_; ++i)
      for (int64_t o = 0; o < out_; ++o) {
        float g = dy[i * out_ + o];
        db[o] += g;
        for (int64_t k = 0; k < in_; ++k) {
          dx[i * in_ + k] += g * inputs_[1][o * in_ + k];
          dw[o * in_ + k] += g * inputs_[0][i * in_ + k];
        }
      }
    if (!input_grad_) dx.clear();
    return {dx, dw, db};
  }

 private:
  int64_t n_, in_, out_;
  bool input_grad_;
  DnnlContext ctx_;
  Linear layer_;
};

dnnl::algorithm AlgorithmOf(Activation a) {
  switch (a) {
    case Activation::kSigmoid: return dnnl::algorithm::eltwise_logistic_use_dst_for_bwd;
    case Activation::kTanh: return dnnl::algorithm::eltwise_tanh_use_dst_for_bwd;
    default: return dnnl::algorithm::eltwise_relu_use_dst_for_bwd;
  }
}

class EltwiseOp final : public OpUnderTest {
 public:
  // Samples of [c, h, w] (h = w = 1: vectors of c).
  EltwiseOp(uint64_t seed, Activation kind, int64_t n, int64_t c, int64_t h, int64_t w, InputLayout in)
      : kind_(kind), layer_(&ctx_, AlgorithmOf(kind), c * h * w), io_(&ctx_, &layer_, n, c, h, w, in) {
    std::mt19937_64 rng(seed);
    const int64_t width = c * h * w;
    inputs_ = {Random(rng, n * width, -3, 3)};
    // Keep ReLU inputs away from its kink, where finite differences are meaningless.
    if (kind == Activation::kRelu)
      for (float& v : inputs_[0]) v = v < 0 ? std::min(v, -0.1f) : std::max(v, 0.1f);
    y_.resize(n * width);
    grads_ = {Vec(n * width)};
  }
  const Vec& Forward() override {
    io_.Forward(inputs_[0], y_, Pass::kTraining);
    return y_;
  }
  void TimeForward() override { io_.LayerForward(Pass::kTraining); }
  void TimeBackward(const Vec&) override { io_.LayerBackward(true); }
  Vec ReferenceForward() override {
    Vec y(inputs_[0].size());
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = F(inputs_[0][i]);
    return y;
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    Forward();
    io_.Backward(dy, &grads_[0]);
    return grads_;
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    Vec dx(dy.size());
    for (std::size_t i = 0; i < dx.size(); ++i) {
      double x = inputs_[0][i], d = 0;
      switch (kind_) {
        case Activation::kRelu: d = x > 0 ? 1 : 0; break;
        case Activation::kSigmoid: { double s = 1 / (1 + std::exp(-x)); d = s * (1 - s); break; }
        case Activation::kTanh: { double t = std::tanh(x); d = 1 - t * t; break; }
      }
      dx[i] = static_cast<float>(dy[i] * d);
    }
    return {dx};
  }

 private:
  float F(double x) const {
    switch (kind_) {
      case Activation::kRelu: return static_cast<float>(x > 0 ? x : 0);
      case Activation::kSigmoid: return static_cast<float>(1 / (1 + std::exp(-x)));
      case Activation::kTanh: return static_cast<float>(std::tanh(x));
    }
    return 0;
  }
  Activation kind_;
  DnnlContext ctx_;
  Eltwise layer_;
  LayoutHarness io_;
};

enum class LossCase { kSoftmaxCe, kSigmoidBce, kMse };

// Output: the mean loss (one element). Inputs: the model outputs only;
// targets are fixed.
class LossOp final : public OpUnderTest {
 public:
  LossOp(uint64_t seed, LossCase kind, int64_t n, int64_t classes)
      : kind_(kind), n_(n), classes_(classes) {
    std::mt19937_64 rng(seed);
    int64_t width = kind == LossCase::kSoftmaxCe ? classes : 1;
    inputs_ = {Random(rng, n * width, -4, 4)};
    targets_.resize(n);
    for (auto& t : targets_) {
      switch (kind) {
        case LossCase::kSoftmaxCe: t = static_cast<float>(rng() % classes); break;
        case LossCase::kSigmoidBce: t = static_cast<float>(rng() % 2); break;
        case LossCase::kMse: t = std::uniform_real_distribution<float>(-2, 2)(rng); break;
      }
    }
    switch (kind) {
      case LossCase::kSoftmaxCe: loss_ = std::make_unique<SoftmaxCrossEntropy>(&ctx_, classes, n); break;
      case LossCase::kSigmoidBce: loss_ = std::make_unique<SigmoidBinaryCrossEntropy>(); break;
      case LossCase::kMse: loss_ = std::make_unique<MeanSquaredError>(); break;
    }
    y_.resize(1);
    grads_ = {Vec(inputs_[0].size())};
  }
  const Vec& Forward() override {
    y_[0] = loss_->Forward(inputs_[0].data(), targets_.data(), n_);
    return y_;
  }
  Vec ReferenceForward() override {
    const Vec& z = inputs_[0];
    double sum = 0;
    for (int64_t i = 0; i < n_; ++i) {
      double t = targets_[i];
      if (kind_ == LossCase::kSoftmaxCe) {
        double norm = 0;
        for (int64_t c = 0; c < classes_; ++c) norm += std::exp(double(z[i * classes_ + c]));
        sum += std::log(norm) - z[i * classes_ + int64_t(t)];
      } else if (kind_ == LossCase::kSigmoidBce) {
        double p = 1 / (1 + std::exp(-double(z[i])));
        sum -= t * std::log(p) + (1 - t) * std::log(1 - p);
      } else {
        sum += (z[i] - t) * (z[i] - t);
      }
    }
    return {static_cast<float>(sum / n_)};
  }
  const std::vector<Vec>& Backward(const Vec& dy) override {
    (void)loss_->Forward(inputs_[0].data(), targets_.data(), n_);
    loss_->Backward(grads_[0].data());
    for (float& v : grads_[0]) v *= dy[0];
    return grads_;
  }
  std::vector<Vec> ReferenceBackward(const Vec& dy) override {
    const Vec& z = inputs_[0];
    Vec dz(z.size());
    for (int64_t i = 0; i < n_; ++i) {
      double t = targets_[i];
      if (kind_ == LossCase::kSoftmaxCe) {
        double norm = 0;
        for (int64_t c = 0; c < classes_; ++c) norm += std::exp(double(z[i * classes_ + c]));
        for (int64_t c = 0; c < classes_; ++c)
          dz[i * classes_ + c] = static_cast<float>(
              (std::exp(double(z[i * classes_ + c])) / norm - (c == int64_t(t))) / n_ * dy[0]);
      } else if (kind_ == LossCase::kSigmoidBce) {
        dz[i] = static_cast<float>((1 / (1 + std::exp(-double(z[i]))) - t) / n_ * dy[0]);
      } else {
        dz[i] = static_cast<float>(2 * (z[i] - t) / n_ * dy[0]);
      }
    }
    return {dz};
  }

 private:
  LossCase kind_;
  int64_t n_, classes_;
  DnnlContext ctx_;
  Vec targets_;
  std::unique_ptr<Loss> loss_;
};

}  // namespace

std::vector<OpCase> AllOpCases() {
  std::vector<OpCase> cases;
  auto linear = [&](int64_t n, int64_t in, int64_t out, bool input_grad, double fd_tol) {
    cases.push_back({"linear_n" + std::to_string(n) + "_" + std::to_string(in) + "x" +
                         std::to_string(out) + (input_grad ? "" : "_no_input_grad"),
                     [=](uint64_t seed) {
                       return std::make_unique<LinearOp>(seed, n, in, out, input_grad);
                     },
                     1e-5, 1e-5, fd_tol, 1e-2});
  };
  linear(1, 1, 1, true, 2e-3);
  linear(3, 5, 4, true, 2e-3);
  linear(17, 33, 7, true, 2e-3);
  linear(128, 784, 500, false, 5e-2);
  linear(128, 500, 10, true, 2e-2);
  for (Activation a : {Activation::kRelu, Activation::kSigmoid, Activation::kTanh}) {
    cases.push_back({std::string("eltwise_") + ActivationName(a) + "_n9x31",
                     [=](uint64_t seed) {
                       return std::make_unique<EltwiseOp>(seed, a, 9, 31, 1, 1, InputLayout::kPlain);
                     },
                     1e-6, 1e-6, 2e-3, 1e-3});
    cases.push_back({std::string("eltwise_") + ActivationName(a) + "_n128x500",
                     [=](uint64_t seed) {
                       return std::make_unique<EltwiseOp>(seed, a, 128, 500, 1, 1, InputLayout::kPlain);
                     },
                     1e-6, 1e-6, 2e-3, 1e-3});
    // On images in the layout a convolution hands on (20 channels pad a blocked layout).
    cases.push_back({std::string("eltwise_") + ActivationName(a) + "_n4_20x5x5_model",
                     [=](uint64_t seed) {
                       return std::make_unique<EltwiseOp>(seed, a, 4, 20, 5, 5, InputLayout::kModel);
                     },
                     1e-6, 1e-6, 2e-3, 1e-3});
  }
  cases.push_back({"softmax_cross_entropy_n16x10",
                   [](uint64_t seed) { return std::make_unique<LossOp>(seed, LossCase::kSoftmaxCe, 16, 10); },
                   1e-5, 1e-6, 1e-3, 1e-2});
  cases.push_back({"softmax_cross_entropy_n128x10",
                   [](uint64_t seed) { return std::make_unique<LossOp>(seed, LossCase::kSoftmaxCe, 128, 10); },
                   1e-5, 1e-6, 1e-3, 1e-2});
  cases.push_back({"sigmoid_bce_n32",
                   [](uint64_t seed) { return std::make_unique<LossOp>(seed, LossCase::kSigmoidBce, 32, 1); },
                   1e-5, 1e-6, 1e-3, 1e-2});
  cases.push_back({"mse_n32",
                   [](uint64_t seed) { return std::make_unique<LossOp>(seed, LossCase::kMse, 32, 1); },
                   1e-5, 1e-6, 1e-3, 1e-2});
  for (OpCase& c : ConvOpCases()) cases.push_back(std::move(c));
  for (OpCase& c : SequenceOpCases()) cases.push_back(std::move(c));
  for (OpCase& c : TransformerOpCases()) cases.push_back(std::move(c));
  return cases;
}

}  // namespace psforge::nn
