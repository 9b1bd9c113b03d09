#include "worker/model.h"

#include <cstdlib>
#include <algorithm>
#include <cstring>

#include "worker/nn/layers.h"

namespace psforge {

void Model::FreeDeleter::operator()(float* p) const { std::free(p); }

Model::Buffer Model::Allocate(int64_t floats) {
  // 64-byte alignment suits AVX-512 loads; zeroed so that tails are defined.
  std::size_t bytes = (static_cast<std::size_t>(floats) * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return Buffer(p);
}

Model::Model(const ModelSpec& spec, int64_t max_batch)
    : spec_(spec), max_batch_(max_batch), ctx_(std::make_unique<nn::DnnlContext>()) {}

Model::~Model() = default;

Result<std::unique_ptr<Model>> Model::Create(const ModelSpec& spec, int64_t max_batch) {
  if (max_batch <= 0) return InvalidArgument("model: batch size must be positive");
  std::unique_ptr<Model> m(new Model(spec, max_batch));
  m->weights_ = Allocate(spec.num_params());
  m->grads_ = Allocate(spec.num_params());
  for (const LinearLayerSpec& l : spec.layers()) {
    const TensorSpec& w = spec.tensors()[l.weight_tensor];
    const TensorSpec& b = spec.tensors()[l.bias_tensor];
    nn::Linear& linear = m->linears_.emplace_back(m->ctx_.get(), l.in, l.out);
    linear.Bind(m->weights_.get() + w.offset, m->weights_.get() + b.offset,
                m->grads_.get() + w.offset, m->grads_.get() + b.offset);
    m->z_.push_back(Allocate(max_batch * l.out));
    m->dz_.push_back(Allocate(max_batch * l.out));
    if (l.activation_after) {
      m->activations_.emplace_back(m->ctx_.get(), spec.activation(), l.out);
      m->a_.push_back(Allocate(max_batch * l.out));
      m->da_.push_back(Allocate(max_batch * l.out));
    }
  }
  switch (spec.loss()) {
    case LossKind::kSoftmaxCrossEntropy:
      m->loss_ = std::make_unique<nn::SoftmaxCrossEntropy>(m->ctx_.get(), spec.outputs(), max_batch);
      break;
    case LossKind::kSigmoidBinaryCrossEntropy:
      m->loss_ = std::make_unique<nn::SigmoidBinaryCrossEntropy>();
      break;
    case LossKind::kMeanSquaredError:
      m->loss_ = std::make_unique<nn::MeanSquaredError>();
      break;
  }
  return m;
}

const float* Model::ForwardPass(const float* x, int64_t n) {
  const float* in = x;
  for (std::size_t i = 0; i < linears_.size(); ++i) {
    linears_[i].Forward(in, z_[i].get(), n);
    in = z_[i].get();
    if (i < activations_.size()) {
      activations_[i].Forward(z_[i].get(), a_[i].get(), n);
      in = a_[i].get();
    }
  }
  return in;
}

float Model::TrainStep(const float* x, const float* targets, int64_t n) {
  const float* out = ForwardPass(x, n);
  float loss = loss_->Forward(out, targets, n);
  std::size_t last = linears_.size() - 1;
  loss_->Backward(dz_[last].get());
  for (std::size_t i = last + 1; i-- > 0;) {
    const float* input = i == 0 ? x : a_[i - 1].get();
    float* dinput = i == 0 ? nullptr : da_[i - 1].get();
    linears_[i].Backward(input, dz_[i].get(), dinput, n);
    if (i > 0) activations_[i - 1].Backward(a_[i - 1].get(), da_[i - 1].get(), dz_[i - 1].get(), n);
  }
  return loss;
}

void Model::ScaleGradients(float factor) {
  float* g = grads_.get();
  const int64_t n = spec_.num_params();
  if (factor == 0.0f) {
    std::fill(g, g + n, 0.0f);
  } else {
    for (int64_t i = 0; i < n; ++i) g[i] *= factor;
  }
}

double Model::EvaluateBatch(const float* x, const float* targets, int64_t n) {
  return loss_->Score(ForwardPass(x, n), targets, n);
}

}  // namespace psforge
