#include "common/model_spec.h"

#include <algorithm>
#include <cmath>

namespace psforge {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t HashName(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

}  // namespace

int64_t TensorSpec::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

KeyRange PartitionKeys(int64_t total, int64_t parts, int64_t index) {
  int64_t base = total / parts, extra = total % parts;
  int64_t begin = index * base + std::min(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

Result<ModelSpec> ModelSpec::FromConfig(const ModelOptions& model, int64_t inputs) {
  if (inputs <= 0) return InvalidArgument("model: the data set has no features");
  ModelSpec spec;
  spec.inputs_ = inputs;
  spec.activation_ = model.activation;
  spec.init_seed_ = model.init_seed;

  std::vector<int64_t> widths{inputs};
  switch (model.kind) {
    case ModelKind::kMlp:
      widths.insert(widths.end(), model.hidden.begin(), model.hidden.end());
      widths.push_back(model.classes);
      spec.loss_ = LossKind::kSoftmaxCrossEntropy;
      break;
    case ModelKind::kLinearRegression:
      widths.push_back(1);
      spec.loss_ = LossKind::kMeanSquaredError;
      break;
    case ModelKind::kLogisticRegression:
      widths.push_back(1);
      spec.loss_ = LossKind::kSigmoidBinaryCrossEntropy;
      break;
  }
  bool regression = model.kind != ModelKind::kMlp;
  for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
    int64_t in = widths[i], out = widths[i + 1];
    std::string prefix = regression ? "linear" : "fc" + std::to_string(i);
    // PyTorch's default for Linear: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    // Regression models start at zero, the usual choice for a convex problem.
    float bound = regression ? 0.0f : 1.0f / std::sqrt(static_cast<float>(in));
    InitKind init = regression ? InitKind::kZeros : InitKind::kUniform;
    LinearLayerSpec layer{in, out, static_cast<int>(spec.tensors_.size()),
                          static_cast<int>(spec.tensors_.size() + 1), i + 2 < widths.size()};
    spec.tensors_.push_back({prefix + ".weight", {out, in}, init, bound, 0});
    spec.tensors_.push_back({prefix + ".bias", {out}, init, bound, 0});
    spec.layers_.push_back(layer);
  }
  for (auto& t : spec.tensors_) {
    t.offset = spec.num_params_;
    spec.num_params_ += t.size();
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
      float v = 0.0f;
      if (t.init == InitKind::kUniform) {
        uint64_t r = SplitMix64(seed + static_cast<uint64_t>(key - t.offset));
        double u = static_cast<double>(r >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
        v = static_cast<float>((2.0 * u - 1.0) * t.bound);
      }
      out[static_cast<std::size_t>(key - range.begin)] = v;
    }
  }
}

}  // namespace psforge
