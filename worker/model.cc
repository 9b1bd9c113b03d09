#include "worker/model.h"

#include <algorithm>

#include "worker/nn/dnnl_util.h"
#include "worker/nn/layers.h"
#include "worker/nn/stack.h"

namespace psforge {

Model::Model(const ModelSpec& spec, int64_t max_batch)
    : spec_(spec), max_batch_(max_batch), ctx_(std::make_unique<nn::DnnlContext>()) {}

Model::~Model() = default;

Result<std::unique_ptr<Model>> Model::Create(const ModelSpec& spec, int64_t max_batch, uint64_t seed,
                                             bool choose_layouts) {
  if (max_batch <= 0) return InvalidArgument("model: batch size must be positive");
  // Two buffers (values and gradients) per layer output, sized for the batch:
  // a config that needs more memory than a machine has is an error, not a crash.
  double bytes = 2.0 * 4.0 * static_cast<double>(spec.num_params());
  auto add_outputs = [&](auto& self, const std::vector<LayerSpec>& stack) -> void {
    for (const LayerSpec& l : stack) {
      bytes += 2.0 * 4.0 * static_cast<double>(max_batch) * static_cast<double>(l.out_size());
      self(self, l.body);
    }
  };
  add_outputs(add_outputs, spec.layers());
  constexpr double kMaxModelBytes = 64.0 * (1ull << 30);
  if (bytes > kMaxModelBytes)
    return ResourceExhausted("model: " + std::to_string(static_cast<int64_t>(bytes / (1 << 30))) +
                             " GiB of weights, gradients and activations for batches of " + std::to_string(max_batch) +
                             "; more than the 64 GiB allowed: lower training.batch_size, data.window or the layers' sizes");
  std::unique_ptr<Model> m(new Model(spec, max_batch));
  m->weights_ = nn::AllocateFloats(spec.num_params());
  m->grads_ = nn::AllocateFloats(spec.num_params());
  // The embeddings of a ctr model are its input: their gradient is the input's.
  if (spec.categorical() > 0) m->input_grad_ = nn::AllocateFloats(max_batch * spec.inputs());
  nn::DnnlContext* ctx = m->ctx_.get();
  // (m->spec_, not spec: the stack keeps a reference to the layers.)
  const std::vector<LayerSpec>& layers = m->spec_.layers();
  m->stack_ = nn::Stack::Build(
      layers, nn::BuildContext{ctx, &m->spec_.tensors(), m->weights_.get(), m->grads_.get(), seed * 1000003,
                               choose_layouts});
  // Where each layer's keys begin, and whether every key from there up
  // belongs to it or a later layer.
  const int64_t none = spec.num_params();
  std::vector<int64_t> first(layers.size(), none), end(layers.size(), 0);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    for (int t : layers[i].AllTensors()) {
      first[i] = std::min(first[i], spec.tensors()[t].offset);
      end[i] = std::max(end[i], spec.tensors()[t].offset + spec.tensors()[t].size());
    }
  }
  m->final_from_.assign(layers.size(), -1);
  int64_t from = none, below_end = 0;
  for (std::size_t i = layers.size(); i-- > 0;) {
    from = std::min(from, first[i]);
    below_end = 0;
    for (std::size_t j = 0; j < i; ++j) below_end = std::max(below_end, end[j]);
    if (first[i] < none && below_end <= from) m->final_from_[i] = from;
  }
  try {
    m->PrepareFor(max_batch);  // every primitive made now: a layer oneDNN cannot run is an error here
  } catch (const dnnl::error& e) {
    return InvalidArgument(std::string("model: oneDNN cannot build the layers for batches of ") +
                           std::to_string(max_batch) + ": " + e.what());
  }
  switch (spec.loss()) {
    case LossKind::kSoftmaxCrossEntropy:
      m->loss_ = std::make_unique<nn::SoftmaxCrossEntropy>(ctx, spec.outputs(), max_batch);
      break;
    case LossKind::kSigmoidBinaryCrossEntropy:
      m->loss_ = std::make_unique<nn::SigmoidBinaryCrossEntropy>();
      break;
    case LossKind::kMeanSquaredError:
      m->loss_ = std::make_unique<nn::MeanSquaredError>();
      break;
    case LossKind::kSequenceSoftmaxCrossEntropy:
    case LossKind::kMaskedSequenceSoftmaxCrossEntropy:
      m->loss_ = std::make_unique<nn::SequenceCrossEntropy>(
          ctx, spec.target_width(), spec.classes(), max_batch,
          spec.loss() == LossKind::kMaskedSequenceSoftmaxCrossEntropy);
      break;
  }
  return m;
}

void Model::PrepareFor(int64_t n) {
  if (std::find(prepared_.begin(), prepared_.end(), n) != prepared_.end()) return;
  // The data comes in plain.
  const std::vector<int64_t>& shape = spec_.layers()[0].in_shape;
  stack_->Prepare(n, shape.size() == 3 ? nn::Tensor(n, shape[0], shape[1], shape[2])
                                       : nn::Matrix(n, spec_.layers()[0].in_size()));
  prepared_.push_back(n);
}

std::vector<std::string> Model::Implementations() const {
  std::vector<std::string> out;
  stack_->AppendImplementations(&out);
  for (const std::string& impl : loss_->implementations()) out.push_back("loss: " + impl);
  return out;
}

const float* Model::ForwardPass(const float* x, int64_t n, int pass) {
  PrepareFor(n);
  return stack_->Forward(x, n, static_cast<nn::Pass>(pass));
}

float Model::TrainStep(const float* x, const float* targets, int64_t n, int64_t step, const int64_t* rows,
                       const std::function<void(int64_t)>& gradient_final) {
  stack_->set_samples({static_cast<uint64_t>(step), rows, n});
  const float* out = ForwardPass(x, n, static_cast<int>(nn::Pass::kTraining));
  float loss = loss_->Forward(out, targets, n);
  loss_->Backward(stack_->output_gradient());
  if (!gradient_final) {
    stack_->Backward(x, nullptr, input_grad_.get(), n);
    return loss;
  }
  int64_t reported = spec_.num_params();
  stack_->Backward(x, nullptr, input_grad_.get(), n, [&](std::size_t i) {
    // (Not for the whole gradient: Push follows at once.)
    if (final_from_[i] > 0 && final_from_[i] < reported) {
      reported = final_from_[i];
      gradient_final(reported);
    }
  });
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

nn::Scores Model::EvaluateBatch(const float* x, const float* targets, int64_t n) {
  return loss_->Score(ForwardPass(x, n, static_cast<int>(nn::Pass::kInference)), targets, n);
}

std::span<const float> Model::Predict(const float* x, int64_t n) {
  const float* out = ForwardPass(x, n, static_cast<int>(nn::Pass::kInference));
  return {out, static_cast<std::size_t>(n * spec_.outputs())};
}

void Model::BeginStatistics() { stack_->BeginStatistics(); }

void Model::AccumulateStatistics(const float* x, int64_t n) {
  if (spec_.has_batch_statistics()) ForwardPass(x, n, static_cast<int>(nn::Pass::kStatistics));
}

void Model::EndStatistics() { stack_->EndStatistics(); }

std::vector<std::pair<std::string, std::vector<float>>> Model::Statistics() const {
  nn::Layer::NamedValues out;
  stack_->AppendStatistics(&out);
  return out;
}

}  // namespace psforge
