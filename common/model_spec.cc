#include "common/model_spec.h"

#include <algorithm>
#include <cmath>

#include "common/row_ids.h"
#include "common/split_mix.h"

namespace psforge {
namespace {

uint64_t HashName(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

int64_t TensorSpec::size() const { return Product(shape); }

KeyRange PartitionKeys(int64_t total, int64_t parts, int64_t index) {
  int64_t base = total / parts, extra = total % parts;
  int64_t begin = index * base + std::min(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

int64_t PartOfKey(int64_t total, int64_t parts, int64_t key) {
  const int64_t base = total / parts, extra = total % parts;
  if (key < extra * (base + 1)) return key / (base + 1);
  return extra + (key - extra * (base + 1)) / base;
}

int64_t PartCount(int64_t keys, int64_t chunk_kb) {
  const int64_t chunk = chunk_kb * 1024 / static_cast<int64_t>(sizeof(float));
  if (chunk <= 0 || keys <= chunk) return 1;
  return (keys + chunk / 2) / chunk;
}

int64_t LayerSpec::in_size() const { return Product(in_shape); }
int64_t LayerSpec::out_size() const { return Product(out_shape); }

bool ModelSpec::has_batch_statistics() const {
  return std::any_of(layers_.begin(), layers_.end(),
                     [](const LayerSpec& l) { return l.kind() == LayerKind::kBatchNorm; });
}

Result<ModelSpec> ModelSpec::FromConfig(const ModelOptions& model, int64_t inputs, int64_t classes,
                                        int64_t categorical) {
  if (inputs <= 0) return InvalidArgument("model: the data set has no features");
  ModelSpec spec;
  spec.inputs_ = spec.dense_inputs_ = inputs;
  spec.init_seed_ = model.init_seed;
  for (std::size_t t = 0; t < model.tables.size(); ++t) {
    TableOptions table = model.tables[t];
    const std::string name = "model.tables[" + std::to_string(t) + "]";
    if (table.name.empty()) return InvalidArgument(name + ": a table needs a name");
    for (const TableOptions& other : spec.tables_)
      if (other.name == table.name) return InvalidArgument(name + ": a second table named '" + table.name + "'");
    if (table.rows < 1 || static_cast<uint64_t>(table.rows) > kMaxTableRows)
      return InvalidArgument(name + ": rows " + std::to_string(table.rows) + " outside [1, 2^40]");
    if (table.dim < 1 || table.dim > 1024)
      return InvalidArgument(name + ": dim " + std::to_string(table.dim) + " outside [1, 1024]");
    if (table.seed == 0) table.seed = SplitMix64(model.init_seed ^ SplitMix64(t + 1));
    spec.tables_.push_back(table);
  }
  if (model.tables.size() > kMaxSparseTables)
    return InvalidArgument("model.tables: " + std::to_string(model.tables.size()) + " tables, at most " +
                           std::to_string(kMaxSparseTables));

  if (model.kind == ModelKind::kCtr) {
    // Each categorical field's embedding, pooled, after the dense features.
    const auto tables = static_cast<int64_t>(spec.tables_.size());
    if (categorical <= 0) return InvalidArgument("model.kind ctr: the data has no categorical fields (data.format criteo)");
    if (tables != 1 && tables != categorical)
      return InvalidArgument("model.tables: " + std::to_string(tables) + " tables for " + std::to_string(categorical) +
                             " categorical fields; give one table shared by every field, or one per field");
    for (int64_t f = 0; f < categorical; ++f) {
      const auto t = static_cast<uint16_t>(tables == 1 ? 0 : f);
      spec.field_tables_.push_back(t);
      spec.field_offsets_.push_back(spec.inputs_);
      spec.inputs_ += spec.tables_[t].dim;
    }
  }
  std::vector<LayerOptions> layers;
  std::vector<int64_t> shape{spec.inputs_};
  auto linear = [](int64_t out) { return LayerOptions{LayerKind::kLinear, out}; };
  switch (model.kind) {
    case ModelKind::kCtr:
    case ModelKind::kMlp: {
      static constexpr LayerKind kActivation[] = {LayerKind::kRelu, LayerKind::kSigmoid, LayerKind::kTanh};
      for (int64_t h : model.hidden) {
        layers.push_back(linear(h));
        layers.push_back({kActivation[static_cast<int>(model.activation)]});
      }
      if (model.kind == ModelKind::kCtr) {  // one logit
        layers.push_back(linear(1));
        spec.loss_ = LossKind::kSigmoidBinaryCrossEntropy;
      } else {
        layers.push_back(linear(model.classes));
        spec.loss_ = LossKind::kSoftmaxCrossEntropy;
      }
      break;
    }
    case ModelKind::kLinearRegression:
    case ModelKind::kLogisticRegression:
      layers.push_back(linear(1));
      spec.loss_ = model.kind == ModelKind::kLinearRegression ? LossKind::kMeanSquaredError
                                                              : LossKind::kSigmoidBinaryCrossEntropy;
      break;
    case ModelKind::kSequential:
      layers = model.layers;
      spec.loss_ = LossKind::kSoftmaxCrossEntropy;
      if (!model.input_shape.empty()) {
        if (Product(model.input_shape) != inputs)
          return InvalidArgument("model.input_shape " + ShapeText(model.input_shape) + " has " +
                                 std::to_string(Product(model.input_shape)) +
                                 " values per sample, but the data set has " + std::to_string(inputs) +
                                 " features");
        shape = model.input_shape;
      }
      break;
  }
  if (layers.empty()) return InvalidArgument("model.layers: the model has no layers");
  const int64_t num_classes = classes > 0 ? classes : model.classes;
  for (LayerOptions& o : layers)
    if (o.kind == LayerKind::kLinear && o.size == 0) o.size = num_classes;
  const bool regression = model.kind == ModelKind::kLinearRegression || model.kind == ModelKind::kLogisticRegression;
  int counts[5] = {0, 0, 0, 0, 0};  // linear, conv, batchnorm, embedding, lstm: for names
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const LayerOptions& o = layers[i];
    LayerSpec l{o, "", shape, shape};
    auto where = [&] {
      return "model.layers[" + std::to_string(i) + "] (" + LayerKindName(o.kind) + ", input " +
             ShapeText(shape) + ")";
    };
    auto add_tensors = [&](std::string name, std::vector<int64_t> weight_shape, int64_t bias_size,
                           InitKind weight_init, InitKind bias_init, float bound) {
      l.name = std::move(name);
      l.weight_tensor = static_cast<int>(spec.tensors_.size());
      l.bias_tensor = l.weight_tensor + 1;
      spec.tensors_.push_back({l.name + ".weight", std::move(weight_shape), weight_init, bound, 0});
      spec.tensors_.push_back({l.name + ".bias", {bias_size}, bias_init, bound, 0});
    };
    switch (o.kind) {
      case LayerKind::kLinear: {
        if (shape.size() == 3)
          return InvalidArgument(where() + ": needs one feature vector per sample; put a flatten layer before it");
        int64_t in = shape.back();
        l.out_shape = shape;  // [features] -> [out]; [positions, features] -> [positions, out]
        l.out_shape.back() = o.size;
        // PyTorch's default for Linear: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
        // Regression models start at zero, the usual choice for a convex problem.
        if (regression) {
          add_tensors("linear", {o.size, in}, o.size, InitKind::kZeros, InitKind::kZeros, 0.0f);
        } else {
          add_tensors("fc" + std::to_string(counts[0]), {o.size, in}, o.size, InitKind::kUniform,
                      InitKind::kUniform, 1.0f / std::sqrt(static_cast<float>(in)));
        }
        ++counts[0];
        break;
      }
      case LayerKind::kConv:
      case LayerKind::kMaxPool: {
        if (shape.size() != 3)
          return InvalidArgument(where() + ": needs [channels, height, width] per sample; set model.input_shape");
        int64_t out_h = (shape[1] + 2 * o.padding - o.kernel) / o.stride + 1;
        int64_t out_w = (shape[2] + 2 * o.padding - o.kernel) / o.stride + 1;
        if (shape[1] + 2 * o.padding < o.kernel || shape[2] + 2 * o.padding < o.kernel)
          return InvalidArgument(where() + ": the " + std::to_string(o.kernel) + "x" + std::to_string(o.kernel) +
                                 " kernel is larger than the padded input");
        if (o.kind == LayerKind::kMaxPool) {
          l.out_shape = {shape[0], out_h, out_w};
          break;
        }
        l.out_shape = {o.size, out_h, out_w};
        int64_t fan_in = shape[0] * o.kernel * o.kernel;
        // PyTorch's default for Conv2d, as for Linear: U(+-1/sqrt(fan_in)).
        add_tensors("conv" + std::to_string(counts[1]++), {o.size, shape[0], o.kernel, o.kernel}, o.size,
                    InitKind::kUniform, InitKind::kUniform, 1.0f / std::sqrt(static_cast<float>(fan_in)));
        break;
      }
      case LayerKind::kBatchNorm:
        if (shape.size() == 2)
          return InvalidArgument(where() + ": batch normalisation of sequences is not supported");
        // Per channel for images, per feature for vectors; scale 1, shift 0.
        add_tensors("bn" + std::to_string(counts[2]++), {shape[0]}, shape[0], InitKind::kOnes,
                    InitKind::kZeros, 0.0f);
        break;
      case LayerKind::kFlatten:
        l.out_shape = {Product(shape)};
        break;
      case LayerKind::kEmbedding: {
        if (shape.size() != 1)
          return InvalidArgument(where() + ": needs one sequence of character ids per sample");
        const int64_t vocabulary = num_classes;
        l.out_shape = {shape[0], o.size};
        // PyTorch's default for Embedding: N(0, 1).
        l.name = "embedding" + std::to_string(counts[3]++);
        l.weight_tensor = static_cast<int>(spec.tensors_.size());
        spec.tensors_.push_back({l.name + ".weight", {vocabulary, o.size}, InitKind::kNormal, 1.0f, 0});
        break;
      }
      case LayerKind::kLstm: {
        if (shape.size() != 2)
          return InvalidArgument(where() + ": needs a sequence of vectors per sample ([positions, features])");
        const int64_t in = shape[1], h = o.size;
        l.out_shape = {shape[0], h};
        // PyTorch's default for LSTM: U(+-1/sqrt(hidden)) for every tensor.
        const float bound = 1.0f / std::sqrt(static_cast<float>(h));
        l.name = "lstm" + std::to_string(counts[4]++);
        l.weight_tensor = static_cast<int>(spec.tensors_.size());
        l.recurrent_tensor = l.weight_tensor + 1;
        l.bias_tensor = l.weight_tensor + 2;
        spec.tensors_.push_back({l.name + ".weight_ih", {4 * h, in}, InitKind::kUniform, bound, 0});
        spec.tensors_.push_back({l.name + ".weight_hh", {4 * h, h}, InitKind::kUniform, bound, 0});
        spec.tensors_.push_back({l.name + ".bias", {4 * h}, InitKind::kUniform, bound, 0});
        break;
      }
      case LayerKind::kDropout:
      case LayerKind::kRelu:
      case LayerKind::kSigmoid:
      case LayerKind::kTanh:
        break;
    }
    shape = l.out_shape;
    spec.layers_.push_back(std::move(l));
  }
  const int64_t want = regression || model.kind == ModelKind::kCtr ? 1 : classes > 0 ? classes : model.classes;
  if (shape.size() == 2) spec.loss_ = LossKind::kSequenceSoftmaxCrossEntropy;
  if (shape.size() > 2 || shape.back() != want)
    return InvalidArgument("model.layers: the last layer gives " + ShapeText(shape) + " per sample; the loss needs [" +
                           std::to_string(want) + "] or [positions, " + std::to_string(want) + "] (" +
                           (classes > 0 ? "the vocabulary's size" : "model.classes") + ")");
  for (auto& t : spec.tensors_) {
    t.offset = spec.num_params_;
    spec.num_params_ += t.size();
    if (spec.num_params_ > (int64_t{1} << 34))
      return InvalidArgument("model: more than 2^34 parameters (64 GiB) by " + t.name + " " + ShapeText(t.shape) +
                             "; that is not a model this system trains");
  }
  return spec;
}

void ModelSpec::Initialize(KeyRange range, std::span<float> out) const {
  for (const TensorSpec& t : tensors_) {
    int64_t begin = std::max(range.begin, t.offset);
    int64_t end = std::min(range.end, t.offset + t.size());
    if (begin >= end) continue;
    uint64_t seed = SplitMix64(init_seed_ ^ HashName(t.name));
    for (int64_t key = begin; key < end; ++key) {
      float v = t.init == InitKind::kOnes ? 1.0f : 0.0f;
      const auto i = static_cast<uint64_t>(key - t.offset);
      auto unit = [&](uint64_t r) { return static_cast<double>(r >> 11) * (1.0 / 9007199254740992.0); };  // [0, 1)
      if (t.init == InitKind::kUniform) {
        v = static_cast<float>((2.0 * unit(SplitMix64(seed + i)) - 1.0) * t.bound);
      } else if (t.init == InitKind::kNormal) {
        // Box-Muller from two draws of this element alone.
        const double u1 = 1.0 - unit(SplitMix64(seed + 2 * i)), u2 = unit(SplitMix64(seed + 2 * i + 1));
        v = static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2) * t.bound);
      }
      out[static_cast<std::size_t>(key - range.begin)] = v;
    }
  }
}

}  // namespace psforge
