#include "common/model_spec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/npz_reader.h"
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

std::vector<int> LayerSpec::AllTensors() const {
  std::vector<int> all = tensors;
  for (const LayerSpec& l : body)
    for (int t : l.AllTensors()) all.push_back(t);
  return all;
}

Status LayerShaper::Error(const std::string& what) const {
  return InvalidArgument(where_ + " (" + layer_->type() + ", input " + ShapeText(layer_->in_shape) + "): " + what);
}

void LayerShaper::Name(const std::string& prefix) {
  auto it = std::find_if(counts_->begin(), counts_->end(), [&](const auto& c) { return c.first == prefix; });
  if (it == counts_->end()) it = counts_->insert(counts_->end(), {prefix, 0});
  layer_->name = name_prefix_ + prefix + std::to_string(it->second++);
}

void LayerShaper::SetName(const std::string& name) { layer_->name = name_prefix_ + name; }

void LayerShaper::AddTensor(const std::string& suffix, std::vector<int64_t> shape, InitKind init, float bound) {
  layer_->tensors.push_back(static_cast<int>(spec_->tensors_.size()));
  spec_->tensors_.push_back({layer_->name + "." + suffix, std::move(shape), init, bound, 0});
}

Status LayerShaper::TieToEmbedding(int64_t in, int64_t out) {
  LayerSpec* embedding = nullptr;
  for (LayerSpec& l : spec_->layers_) {
    if (&l == layer_) break;
    if (std::string_view(l.type()) == EmbeddingLayer::kType) embedding = &l;
  }
  if (embedding == nullptr)
    return Error("tied: needs an embedding earlier in model.layers (the model's own list) to share its table");
  const int t = embedding->tensors[0];
  const std::vector<int64_t>& table = spec_->tensors_[static_cast<std::size_t>(t)].shape;
  if (table[1] != in)
    return Error("tied: the embedding's vectors have " + std::to_string(table[1]) + " features, this layer's input " +
                 std::to_string(in));
  if (table[0] < out)
    return Error("tied: the embedding has " + std::to_string(table[0]) + " rows, fewer than the " +
                 std::to_string(out) + " outputs");
  embedding->gradient_shared = true;
  layer_->tensors.push_back(t);
  return Status::Ok();
}

Result<std::vector<int64_t>> LayerShaper::AddBody(const std::vector<LayerOptions>& layers) {
  return spec_->InferStack(layers, layer_->in_shape, where_ + ".layers", layer_->name + ".", classes_, regression_,
                           &layer_->body);
}

bool ModelSpec::has_batch_statistics() const {
  return std::any_of(layers_.begin(), layers_.end(),
                     [](const LayerSpec& l) { return l.options.settings->batch_statistics(); });
}

Result<std::vector<int64_t>> ModelSpec::InferStack(const std::vector<LayerOptions>& layers, std::vector<int64_t> shape,
                                                   const std::string& where, const std::string& name_prefix,
                                                   int64_t classes, bool regression, std::vector<LayerSpec>* out) {
  if (layers.empty()) return InvalidArgument(where + ": no layers");
  std::vector<std::pair<std::string, int>> counts;
  out->reserve(layers.size());  // shapers hold pointers into it
  for (std::size_t i = 0; i < layers.size(); ++i) {
    LayerSpec& l = out->emplace_back();
    l.options = layers[i];
    l.in_shape = l.out_shape = shape;
    LayerShaper shaper(this, &l, &counts, name_prefix, where + "[" + std::to_string(i) + "]", classes, regression);
    PSF_RETURN_IF_ERROR(l.options.settings->Infer(shaper));
    shape = l.out_shape;
  }
  return shape;
}

int64_t LayerShaper::tokens() const { return spec_->tokens_; }

Result<ModelSpec> ModelSpec::FromConfig(const ModelOptions& model, const DataShape& data) {
  const int64_t inputs = data.features, classes = data.classes, categorical = data.categorical;
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
  switch (model.kind) {
    case ModelKind::kCtr:
    case ModelKind::kMlp:
      for (int64_t h : model.hidden) {
        layers.push_back(MakeLayer(LinearLayer(h)));
        switch (model.activation) {
          case Activation::kRelu: layers.push_back(MakeLayer<ReluLayer>()); break;
          case Activation::kSigmoid: layers.push_back(MakeLayer<SigmoidLayer>()); break;
          case Activation::kTanh: layers.push_back(MakeLayer<TanhLayer>()); break;
        }
      }
      if (model.kind == ModelKind::kCtr) {  // one logit
        layers.push_back(MakeLayer(LinearLayer(1)));
        spec.loss_ = LossKind::kSigmoidBinaryCrossEntropy;
      } else {
        layers.push_back(MakeLayer(LinearLayer(model.classes)));
        spec.loss_ = LossKind::kSoftmaxCrossEntropy;
      }
      break;
    case ModelKind::kLinearRegression:
    case ModelKind::kLogisticRegression:
      layers.push_back(MakeLayer(LinearLayer(1)));
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
  const bool regression = model.kind == ModelKind::kLinearRegression || model.kind == ModelKind::kLogisticRegression;
  const int64_t num_classes = classes > 0 ? classes : model.classes;
  spec.tokens_ = data.tokens > 0 ? data.tokens : num_classes;
  PSF_ASSIGN_OR_RETURN(shape, spec.InferStack(layers, shape, "model.layers", "", num_classes, regression,
                                              &spec.layers_));
  const int64_t want = regression || model.kind == ModelKind::kCtr ? 1 : num_classes;
  if (shape.size() == 2)
    spec.loss_ = data.masked ? LossKind::kMaskedSequenceSoftmaxCrossEntropy : LossKind::kSequenceSoftmaxCrossEntropy;
  else if (data.masked)
    return InvalidArgument("model.layers: the last layer gives " + ShapeText(shape) +
                           " per sample; data.task masked needs one output per position ([positions, " +
                           std::to_string(want) + "])");
  if (shape.size() > 2 || shape.back() != want)
    return InvalidArgument("model.layers: the last layer gives " + ShapeText(shape) + " per sample; the loss needs [" +
                           std::to_string(want) + "] or [positions, " + std::to_string(want) + "] (" +
                           (classes > 0 ? "the data's classes" : "model.classes") + ")");
  for (auto& t : spec.tensors_) {
    t.offset = spec.num_params_;
    spec.num_params_ += t.size();
    if (spec.num_params_ > (int64_t{1} << 34))
      return InvalidArgument("model: more than 2^34 parameters (64 GiB) by " + t.name + " " + ShapeText(t.shape) +
                             "; that is not a model this system trains");
  }
  for (std::size_t i = 0; i < model.freeze.size(); ++i) {
    const std::string& prefix = model.freeze[i];
    bool any = false;
    for (const TensorSpec& t : spec.tensors_) {
      if (prefix.empty() || t.name.rfind(prefix, 0) != 0) continue;
      any = true;
      spec.frozen_.push_back({t.offset, t.offset + t.size()});
    }
    if (!any) {
      std::string names;
      for (std::size_t t = 0; t < spec.tensors_.size() && t < 8; ++t) names += (t ? ", " : "") + spec.tensors_[t].name;
      return InvalidArgument("model.freeze[" + std::to_string(i) + "]: '" + prefix + "' starts no tensor's name (" +
                             names + (spec.tensors_.size() > 8 ? ", ..." : "") + ")");
    }
  }
  std::sort(spec.frozen_.begin(), spec.frozen_.end(), [](const KeyRange& a, const KeyRange& b) { return a.begin < b.begin; });
  std::vector<KeyRange> merged;
  for (const KeyRange& r : spec.frozen_) {
    if (!merged.empty() && merged.back().end >= r.begin) merged.back().end = std::max(merged.back().end, r.end);
    else merged.push_back(r);
  }
  spec.frozen_ = std::move(merged);
  if (!spec.frozen_.empty() && spec.frozen_.front().begin == 0 && spec.frozen_.front().end == spec.num_params_)
    return InvalidArgument("model.freeze: every tensor of the model is frozen; nothing would train");
  return spec;
}

std::vector<KeyRange> ModelSpec::FrozenIn(KeyRange range) const {
  std::vector<KeyRange> out;
  for (const KeyRange& f : frozen_) {
    const int64_t b = std::max(f.begin, range.begin), e = std::min(f.end, range.end);
    if (b < e) out.push_back({b - range.begin, e - range.begin});
  }
  return out;
}

Status ModelSpec::LoadInitialValues(const ModelOptions& model) {
  if (model.init_from.empty()) return Status::Ok();
  PSF_ASSIGN_OR_RETURN(std::vector<NpzArray> arrays, ReadNpz(model.init_from));
  auto fresh = [&](const std::string& name) {
    return std::any_of(model.init_fresh.begin(), model.init_fresh.end(),
                       [&](const std::string& prefix) { return name.rfind(prefix, 0) == 0; });
  };
  // Batch normalisation's statistics (ps-export's, PyTorch's buffers) are
  // re-estimated from the data; they are not weights to start from.
  auto statistic = [](const std::string& name) {
    for (const char* s : {".running_mean", ".running_var", ".num_batches_tracked"})
      if (name.size() > std::strlen(s) && name.compare(name.size() - std::strlen(s), std::strlen(s), s) == 0) return true;
    return false;
  };
  auto values = std::make_shared<std::vector<std::vector<float>>>(tensors_.size());
  std::vector<std::string> missing, misshaped, extra;
  std::vector<bool> used(arrays.size(), false);
  for (std::size_t t = 0; t < tensors_.size(); ++t) {
    const TensorSpec& spec = tensors_[t];
    if (fresh(spec.name)) continue;
    auto it = std::find_if(arrays.begin(), arrays.end(), [&](const NpzArray& a) { return a.name == spec.name; });
    if (it == arrays.end()) {
      missing.push_back(spec.name + " " + ShapeText(spec.shape));
      continue;
    }
    used[static_cast<std::size_t>(it - arrays.begin())] = true;
    if (it->shape != spec.shape) {
      misshaped.push_back(spec.name + " (" + ShapeText(spec.shape) + " in the model, " + ShapeText(it->shape) +
                          " in the file)");
      continue;
    }
    (*values)[t] = std::move(it->values);
  }
  for (std::size_t a = 0; a < arrays.size(); ++a)
    if (!used[a] && !fresh(arrays[a].name) && !statistic(arrays[a].name))
      extra.push_back(arrays[a].name + " " + ShapeText(arrays[a].shape));
  auto list = [](const std::vector<std::string>& names, const std::string& what) {
    std::string s;
    if (names.empty()) return s;
    s = "; " + std::to_string(names.size()) + " " + what + ": ";
    for (std::size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + names[i];
    return s;
  };
  if (!missing.empty() || !misshaped.empty() || !extra.empty())
    return InvalidArgument("model.init_from " + model.init_from + " does not fit the model" +
                           list(missing, "missing from the file") + list(misshaped, "of another shape") +
                           list(extra, "in the file but not in the model") +
                           " (model.init_fresh lists tensors that start from their initialiser instead)");
  initial_values_ = std::move(values);
  return Status::Ok();
}

void ModelSpec::Initialize(KeyRange range, std::span<float> out) const {
  for (std::size_t ti = 0; ti < tensors_.size(); ++ti) {
    const TensorSpec& t = tensors_[ti];
    int64_t begin = std::max(range.begin, t.offset);
    int64_t end = std::min(range.end, t.offset + t.size());
    if (begin >= end) continue;
    if (initial_values_ != nullptr && !(*initial_values_)[ti].empty()) {
      const std::vector<float>& v = (*initial_values_)[ti];
      std::copy(v.begin() + (begin - t.offset), v.begin() + (end - t.offset), out.begin() + (begin - range.begin));
      continue;
    }
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
