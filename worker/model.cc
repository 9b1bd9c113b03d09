#include "worker/model.h"

#include <algorithm>
#include <stdexcept>

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
  m->grads_in_use_ = m->grads_.get();
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
  m->needed_to_.assign(layers.size(), 0);
  for (std::size_t i = 0; i < layers.size(); ++i)
    m->needed_to_[i] = std::max(i > 0 ? m->needed_to_[i - 1] : 0, end[i]);
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

void Model::SetPartStarts(std::span<const int64_t> starts) {
  first_in_blocks_ = false;
  auto* linear = stack_->rows(0) == 1 ? dynamic_cast<nn::Linear*>(stack_->layer(0)) : nullptr;
  if (linear == nullptr) return;
  if (input_grad_) {  // its backward computes dx: whole
    linear->SetRowBlocks({}, {}, nullptr);
    return;
  }
  const LayerSpec& l = spec_.layers()[0];
  const int64_t in = linear->in(), out = linear->out();
  const int64_t w = spec_.tensors()[l.tensors[0]].offset, b = spec_.tensors()[l.tensors[1]].offset;
  // Forward block j needs no key of the part after its end (rows cut
  // below a part's start); backward block j completes the part it ends in
  // (rows cut above).
  std::vector<int64_t> forward{0}, backward{0};
  for (int64_t start : starts) {
    if (start <= w || start >= w + out * in) continue;
    const int64_t below = (start - w) / in, above = (start - w + in - 1) / in;
    if (below > forward.back() && below < out) forward.push_back(below);
    if (above > backward.back() && above < out) backward.push_back(above);
  }
  if (forward.size() < 2) forward.clear();
  if (backward.size() < 2) backward.clear();
  if (!row_hooks_) row_hooks_ = std::make_unique<nn::Linear::RowBlockHooks>();
  row_hooks_->need_rows = [this, w, in](int64_t end) {
    if (step_hooks_ && step_hooks_->weights_needed) step_hooks_->weights_needed(w + end * in);
  };
  row_hooks_->need_bias = [this, b, out] {
    if (step_hooks_ && step_hooks_->weights_needed) step_hooks_->weights_needed(b + out);
  };
  row_hooks_->final_rows = [this, w, in](int64_t r0, int64_t r1) {
    if (step_hooks_ && step_hooks_->gradient_final) step_hooks_->gradient_final(w + r0 * in, w + r1 * in);
  };
  row_hooks_->final_bias = [this, b, out] {
    if (step_hooks_ && step_hooks_->gradient_final) step_hooks_->gradient_final(b, b + out);
  };
  linear->SetRowBlocks(std::move(forward), std::move(backward), row_hooks_.get());
  first_in_blocks_ = linear->in_row_blocks();
}

float Model::TrainStep(const float* x, const float* targets, int64_t n, int64_t step, const int64_t* rows,
                       const StepHooks& hooks) {
  stack_->set_samples({static_cast<uint64_t>(step), rows, n});
  step_hooks_ = &hooks;
  PrepareFor(n);
  const int64_t params = spec_.num_params();
  const float* out;
  if (hooks.weights_needed) {
    int64_t asked = 0;
    out = stack_->Forward(x, n, nn::Pass::kTraining, [&](std::size_t i) {
      // (A first layer in blocks asks block by block.)
      if (i == 0 && first_in_blocks_) {
        asked = needed_to_[0];
        return;
      }
      if (needed_to_[i] > asked) hooks.weights_needed(asked = needed_to_[i]);
    });
    if (asked < params) hooks.weights_needed(params);
  } else {
    out = stack_->Forward(x, n, nn::Pass::kTraining);
  }
  float loss = loss_->Forward(out, targets, n);
  loss_->Backward(stack_->output_gradient());
  if (!hooks.gradient_final) {
    stack_->Backward(x, nullptr, input_grad_.get(), n);
    step_hooks_ = nullptr;
    return loss;
  }
  int64_t reported = params;
  stack_->Backward(x, nullptr, input_grad_.get(), n, [&](std::size_t i) {
    // (Not for the whole gradient: Push follows at once. A first layer in
    // blocks reported its own.)
    if (final_from_[i] > 0 && final_from_[i] < reported) {
      hooks.gradient_final(final_from_[i], reported);
      reported = final_from_[i];
    }
  });
  step_hooks_ = nullptr;
  return loss;
}

void Model::UseGradientBuffer(std::span<float> buffer) {
  if (!buffer.empty() && static_cast<int64_t>(buffer.size()) != spec_.num_params())
    throw std::invalid_argument("model: a gradient buffer of " + std::to_string(buffer.size()) + " floats for " +
                                std::to_string(spec_.num_params()) + " parameters");
  float* to = buffer.empty() ? grads_.get() : buffer.data();
  if (to == grads_in_use_) return;
  stack_->MoveGradients(grads_in_use_, to);
  grads_in_use_ = to;
}

void Model::ScaleGradients(float factor) {
  float* g = grads_in_use_;
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
