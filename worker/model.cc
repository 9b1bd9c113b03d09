#include "worker/model.h"

#include <cstdlib>
#include <algorithm>
#include <cstring>

#include "worker/nn/conv.h"
#include "worker/nn/dnnl_util.h"
#include "worker/nn/layers.h"
#include "worker/nn/norm.h"
#include "worker/nn/sequence.h"

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

Result<std::unique_ptr<Model>> Model::Create(const ModelSpec& spec, int64_t max_batch, uint64_t seed,
                                             bool choose_layouts) {
  if (max_batch <= 0) return InvalidArgument("model: batch size must be positive");
  // Two buffers (values and gradients) per layer output, sized for the batch:
  // a config that needs more memory than a machine has is an error, not a crash.
  double bytes = 2.0 * 4.0 * static_cast<double>(spec.num_params());
  for (const LayerSpec& l : spec.layers()) bytes += 2.0 * 4.0 * static_cast<double>(max_batch) * l.out_size();
  constexpr double kMaxModelBytes = 64.0 * (1ull << 30);
  if (bytes > kMaxModelBytes)
    return ResourceExhausted("model: " + std::to_string(static_cast<int64_t>(bytes / (1 << 30))) +
                             " GiB of weights, gradients and activations for batches of " + std::to_string(max_batch) +
                             "; more than the 64 GiB allowed: lower training.batch_size, data.window or the layers' sizes");
  std::unique_ptr<Model> m(new Model(spec, max_batch));
  m->weights_ = Allocate(spec.num_params());
  m->grads_ = Allocate(spec.num_params());
  // The embeddings of a ctr model are its input: their gradient is the input's.
  if (spec.categorical() > 0) m->input_grad_ = Allocate(max_batch * spec.inputs());
  float* w = m->weights_.get();
  float* g = m->grads_.get();
  nn::DnnlContext* ctx = m->ctx_.get();
  for (std::size_t i = 0; i < spec.layers().size(); ++i) {
    const LayerSpec& l = spec.layers()[i];
    const TensorSpec* weight = l.weight_tensor >= 0 ? &spec.tensors()[l.weight_tensor] : nullptr;
    const TensorSpec* bias = l.bias_tensor >= 0 ? &spec.tensors()[l.bias_tensor] : nullptr;
    const LayerOptions& o = l.options;
    auto image = [&](int64_t d) { return l.in_shape.size() == 3 ? l.in_shape[d] : 0; };
    std::unique_ptr<nn::Layer> layer;
    switch (l.kind()) {
      case LayerKind::kLinear: {
        // On [positions, features]: the same layer at every position (n * positions rows).
        auto linear = std::make_unique<nn::Linear>(ctx, l.in_shape.back(), l.out_shape.back());
        linear->Bind(w + weight->offset, w + bias->offset, g + weight->offset, g + bias->offset);
        layer = std::move(linear);
        break;
      }
      case LayerKind::kConv: {
        auto conv = std::make_unique<nn::Conv2d>(
            ctx, nn::Window{l.in_shape[0], l.in_shape[1], l.in_shape[2], o.size, o.kernel, o.stride, o.padding},
            choose_layouts);
        conv->Bind(w + weight->offset, w + bias->offset, g + weight->offset, g + bias->offset);
        layer = std::move(conv);
        break;
      }
      case LayerKind::kMaxPool:
        layer = std::make_unique<nn::MaxPool2d>(
            ctx, nn::Window{l.in_shape[0], l.in_shape[1], l.in_shape[2], l.in_shape[0], o.kernel, o.stride, o.padding});
        break;
      case LayerKind::kBatchNorm: {
        const bool relu_next = i + 1 < spec.layers().size() && spec.layers()[i + 1].kind() == LayerKind::kRelu;
        auto bn = std::make_unique<nn::BatchNorm>(ctx, l.in_shape[0], image(1), image(2), relu_next);
        bn->Bind(w + weight->offset, w + bias->offset, g + weight->offset, g + bias->offset);
        m->batch_norms_.push_back(bn.get());
        m->batch_norm_names_.push_back(l.name);
        layer = std::move(bn);
        break;
      }
      case LayerKind::kDropout: {
        auto dropout = std::make_unique<nn::Dropout>(ctx, o.rate, l.in_size(), seed * 1000003 + i);
        m->dropouts_.push_back(dropout.get());
        layer = std::move(dropout);
        break;
      }
      case LayerKind::kRelu:
        if (i > 0 && spec.layers()[i - 1].kind() == LayerKind::kBatchNorm) break;  // fused into it
        [[fallthrough]];
      case LayerKind::kSigmoid:
      case LayerKind::kTanh:
        layer = std::make_unique<nn::Eltwise>(ctx, l.kind(), l.in_size());
        break;
      case LayerKind::kEmbedding: {
        auto embedding = std::make_unique<nn::Embedding>(weight->shape[0], o.size, l.in_shape[0]);
        embedding->Bind(w + weight->offset, g + weight->offset);
        layer = std::move(embedding);
        break;
      }
      case LayerKind::kLstm: {
        const TensorSpec& recurrent = spec.tensors()[l.recurrent_tensor];
        auto lstm = std::make_unique<nn::Lstm>(ctx, l.in_shape[0], l.in_shape[1], o.size);
        lstm->Bind(w + weight->offset, w + recurrent.offset, w + bias->offset, g + weight->offset,
                   g + recurrent.offset, g + bias->offset);
        layer = std::move(lstm);
        break;
      }
      case LayerKind::kFlatten:
        layer = l.in_shape.size() == 3
                    ? std::make_unique<nn::Flatten>(ctx, l.in_shape[0], l.in_shape[1], l.in_shape[2])
                    : std::make_unique<nn::Flatten>(ctx, l.in_size(), 1, 1);
        break;
    }
    m->layers_.push_back(std::move(layer));
    m->rows_.push_back(l.kind() == LayerKind::kLinear && l.in_shape.size() == 2 ? l.in_shape[0] : 1);
  }
  // Where each layer's keys begin, and whether every key from there up
  // belongs to it or a later layer.
  const int64_t none = spec.num_params();
  std::vector<int64_t> first(spec.layers().size(), none), end(spec.layers().size(), 0);
  for (std::size_t i = 0; i < spec.layers().size(); ++i) {
    const LayerSpec& l = spec.layers()[i];
    for (int t : {l.weight_tensor, l.bias_tensor, l.recurrent_tensor}) {
      if (t < 0) continue;
      first[i] = std::min(first[i], spec.tensors()[t].offset);
      end[i] = std::max(end[i], spec.tensors()[t].offset + spec.tensors()[t].size());
    }
  }
  m->final_from_.assign(spec.layers().size(), -1);
  int64_t from = none, below_end = 0;
  for (std::size_t i = spec.layers().size(); i-- > 0;) {
    from = std::min(from, first[i]);
    below_end = 0;
    for (std::size_t j = 0; j < i; ++j) below_end = std::max(below_end, end[j]);
    if (first[i] < none && below_end <= from) m->final_from_[i] = from;
  }
  m->out_buffers_.resize(m->layers_.size());
  m->dout_buffers_.resize(m->layers_.size());
  m->out_.resize(m->layers_.size());
  m->dout_.resize(m->layers_.size());
  m->capacity_.assign(m->layers_.size(), 0);
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
      m->loss_ = std::make_unique<nn::SequenceCrossEntropy>(ctx, spec.target_width(), spec.classes(), max_batch);
      break;
  }
  return m;
}

void Model::PrepareFor(int64_t n) {
  if (std::find(prepared_.begin(), prepared_.end(), n) != prepared_.end()) return;
  // The data comes in plain; image layers hand each other their layouts,
  // everything else reads plain rows (nn/layers.h).
  auto plain = [&](const std::vector<int64_t>& shape, int64_t rows) {
    if (shape.size() == 3) return nn::Tensor(n, shape[0], shape[1], shape[2]);
    int64_t size = 1;
    for (int64_t d : shape) size *= d;
    return nn::Matrix(n * rows, size / rows);
  };
  dnnl::memory::desc md;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const LayerSpec& l = spec_.layers()[i];
    if (layers_[i] == nullptr) {  // a fused ReLU: the batchnorm's output is its own
      out_[i] = out_[i - 1];
      dout_[i] = dout_[i - 1];
      continue;
    }
    const bool image_in = l.in_shape.size() == 3 && i > 0 && md.dims().size() == 4;
    md = layers_[i]->Prepare(n * rows_[i], image_in ? md : plain(l.in_shape, rows_[i]));
    const auto floats = static_cast<int64_t>(std::max<std::size_t>(md.get_size() / sizeof(float),
                                                                   static_cast<std::size_t>(n * l.out_size())));
    if (floats > capacity_[i]) {
      out_buffers_[i] = Allocate(floats);
      dout_buffers_[i] = Allocate(floats);
      out_[i] = out_buffers_[i].get();
      dout_[i] = dout_buffers_[i].get();
      capacity_[i] = floats;
    }
  }
  prepared_.push_back(n);
}

std::vector<std::string> Model::Implementations() const {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const LayerSpec& l = spec_.layers()[i];
    const std::string name = l.name.empty() ? LayerKindName(l.kind()) + std::to_string(i) : l.name;
    if (layers_[i] == nullptr) continue;
    for (const std::string& impl : layers_[i]->implementations()) out.push_back(name + ": " + impl);
  }
  for (const std::string& impl : loss_->implementations()) out.push_back("loss: " + impl);
  return out;
}

const float* Model::ForwardPass(const float* x, int64_t n, int pass) {
  PrepareFor(n);
  const float* in = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    if (layers_[i] != nullptr) layers_[i]->Forward(in, out_[i], n * rows_[i], static_cast<nn::Pass>(pass));
    in = out_[i];
  }
  return in;
}

float Model::TrainStep(const float* x, const float* targets, int64_t n, int64_t step,
                       const std::function<void(int64_t)>& gradient_final) {
  for (nn::Dropout* d : dropouts_) d->set_step(static_cast<uint64_t>(step));
  const float* out = ForwardPass(x, n, static_cast<int>(nn::Pass::kTraining));
  float loss = loss_->Forward(out, targets, n);
  loss_->Backward(dout_.back());
  int64_t reported = spec_.num_params();
  for (std::size_t i = layers_.size(); i-- > 0;) {
    if (layers_[i] == nullptr) continue;
    const float* input = i == 0 ? x : out_[i - 1];
    float* dinput = i == 0 ? input_grad_.get() : dout_[i - 1];
    layers_[i]->Backward(input, out_[i], dout_[i], dinput, n * rows_[i]);
    // (Not for the whole gradient: Push follows at once.)
    if (gradient_final && final_from_[i] > 0 && final_from_[i] < reported) {
      reported = final_from_[i];
      gradient_final(reported);
    }
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
  return loss_->Score(ForwardPass(x, n, static_cast<int>(nn::Pass::kInference)), targets, n);
}

std::span<const float> Model::Predict(const float* x, int64_t n) {
  const float* out = ForwardPass(x, n, static_cast<int>(nn::Pass::kInference));
  return {out, static_cast<std::size_t>(n * spec_.outputs())};
}

void Model::BeginStatistics() {
  for (nn::BatchNorm* bn : batch_norms_) bn->BeginStatistics();
}

void Model::AccumulateStatistics(const float* x, int64_t n) {
  if (!batch_norms_.empty()) ForwardPass(x, n, static_cast<int>(nn::Pass::kStatistics));
}

void Model::EndStatistics() {
  for (nn::BatchNorm* bn : batch_norms_) bn->EndStatistics();
}

std::vector<std::pair<std::string, std::vector<float>>> Model::Statistics() const {
  std::vector<std::pair<std::string, std::vector<float>>> out;
  for (std::size_t i = 0; i < batch_norms_.size(); ++i) {
    const auto mean = batch_norms_[i]->mean();
    const auto var = batch_norms_[i]->variance();
    out.emplace_back(batch_norm_names_[i] + ".running_mean", std::vector<float>(mean.begin(), mean.end()));
    out.emplace_back(batch_norm_names_[i] + ".running_var", std::vector<float>(var.begin(), var.end()));
  }
  return out;
}

}  // namespace psforge
