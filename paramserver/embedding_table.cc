#include "paramserver/embedding_table.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "common/row_ids.h"
#include "common/split_mix.h"

namespace psforge {
namespace {

int64_t StateFloats(const TableOptions& o) {
  switch (o.optimizer) {
    case RowOptimizerKind::kSgd: return 0;
    case RowOptimizerKind::kAdaGrad: return 1;
    case RowOptimizerKind::kLazyAdam: return 2 * o.dim;
  }
  return 0;
}

}  // namespace

Result<std::unique_ptr<EmbeddingTable>> EmbeddingTable::Create(const TableOptions& o) {
  const std::string table = "table '" + o.name + "': ";
  if (o.rows < 1 || static_cast<uint64_t>(o.rows) > kMaxTableRows)
    return InvalidArgument(table + "rows " + std::to_string(o.rows) + " outside [1, 2^40]");
  if (o.dim < 1 || o.dim > 1024) return InvalidArgument(table + "dim " + std::to_string(o.dim) + " outside [1, 1024]");
  if (!(o.init_scale >= 0) || !std::isfinite(o.init_scale))
    return InvalidArgument(table + "init_scale must be finite and >= 0");
  if (!(o.learning_rate > 0) || !std::isfinite(o.learning_rate))
    return InvalidArgument(table + "learning_rate must be finite and > 0");
  if (!(o.epsilon > 0)) return InvalidArgument(table + "epsilon must be > 0");
  if (!(o.beta1 >= 0 && o.beta1 < 1) || !(o.beta2 >= 0 && o.beta2 < 1))
    return InvalidArgument(table + "beta1 and beta2 must be in [0, 1)");
  if (!(o.initial_accumulator >= 0)) return InvalidArgument(table + "initial_accumulator must be >= 0");
  return std::unique_ptr<EmbeddingTable>(new EmbeddingTable(o));
}

EmbeddingTable::EmbeddingTable(const TableOptions& options)
    : options_(options), record_floats_(options.dim + StateFloats(options)) {}

void EmbeddingTable::InitialWeights(uint64_t row, std::span<float> out) const {
  const uint64_t base = SplitMix64(options_.seed ^ SplitMix64(row));
  const double s = options_.init_scale;
  for (std::size_t j = 0; j < out.size(); ++j) {
    if (options_.init == RowInit::kUniform) {
      out[j] = static_cast<float>((2 * UnitInterval(SplitMix64(base + j)) - 1) * s);
    } else {
      // Box-Muller on two independent draws per element.
      const double u1 = 1.0 - UnitInterval(SplitMix64(base + 2 * j));  // (0, 1]
      const double u2 = UnitInterval(SplitMix64(base + 2 * j + 1));
      out[j] = static_cast<float>(s * std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2));
    }
  }
}

std::size_t EmbeddingTable::SlotOf(uint64_t row) {
  auto [found, created] = index_.TryEmplace(row, static_cast<uint32_t>(index_.size()));
  const std::size_t slot = found;
  if (!created) return slot;
  if (slot / kRowsPerBlock == blocks_.size())
    blocks_.push_back(std::make_unique<float[]>(kRowsPerBlock * static_cast<std::size_t>(record_floats_)));
  float* r = blocks_[slot / kRowsPerBlock].get() + (slot % kRowsPerBlock) * record_floats_;
  InitialWeights(row, {r, static_cast<std::size_t>(options_.dim)});
  const float state = options_.optimizer == RowOptimizerKind::kAdaGrad ? static_cast<float>(options_.initial_accumulator) : 0.0f;
  std::fill(r + options_.dim, r + record_floats_, state);
  steps_.push_back(0);
  changed_.push_back(0);
  return slot;
}

float* EmbeddingTable::Record(uint64_t row) {
  const std::size_t slot = SlotOf(row);
  return blocks_[slot / kRowsPerBlock].get() + (slot % kRowsPerBlock) * record_floats_;
}

void EmbeddingTable::Read(std::span<const uint64_t> rows, std::span<float> out) {
  const std::size_t d = static_cast<std::size_t>(options_.dim);
  for (std::size_t i = 0; i < rows.size() && (i + 1) * d <= out.size(); ++i)
    std::memcpy(out.data() + i * d, Record(rows[i]), d * sizeof(float));
}

Status EmbeddingTable::Apply(std::span<const uint64_t> rows, std::span<const float> grad, float grad_scale) {
  const std::size_t d = static_cast<std::size_t>(options_.dim);
  if (grad.size() != rows.size() * d)
    return InvalidArgument("table '" + options_.name + "': " + std::to_string(grad.size()) + " gradient values for " +
                           std::to_string(rows.size()) + " rows of " + std::to_string(d));
  for (std::size_t k = 0; k < grad.size(); ++k)
    if (!std::isfinite(grad[k]))
      return InvalidArgument("table '" + options_.name + "': non-finite gradient for row " +
                             std::to_string(rows[k / d]) + "; no row was changed");
  const float lr = static_cast<float>(options_.learning_rate);
  const float eps = static_cast<float>(options_.epsilon);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::size_t slot = SlotOf(rows[i]);
    float* w = blocks_[slot / kRowsPerBlock].get() + (slot % kRowsPerBlock) * record_floats_;
    const float* g = grad.data() + i * d;
    switch (options_.optimizer) {
      case RowOptimizerKind::kSgd:
        for (std::size_t j = 0; j < d; ++j) w[j] -= lr * (g[j] * grad_scale);
        break;
      case RowOptimizerKind::kAdaGrad: {
        float squares = 0;
        for (std::size_t j = 0; j < d; ++j) squares += (g[j] * grad_scale) * (g[j] * grad_scale);
        float& sum = w[d];
        sum += squares / static_cast<float>(d);
        const float step = lr / (std::sqrt(sum) + eps);
        for (std::size_t j = 0; j < d; ++j) w[j] -= step * (g[j] * grad_scale);
        break;
      }
      case RowOptimizerKind::kLazyAdam: {
        const double t = ++steps_[slot];
        // 1 - beta in double: 1 - (float)0.999 is 1.3e-5 off, which shows in every step.
        const float b1 = static_cast<float>(options_.beta1), b2 = static_cast<float>(options_.beta2);
        const float r1 = static_cast<float>(1 - options_.beta1), r2 = static_cast<float>(1 - options_.beta2);
        const float c1 = static_cast<float>(1 - std::pow(options_.beta1, t));
        const float c2 = static_cast<float>(1 - std::pow(options_.beta2, t));
        float* m = w + d;
        float* v = w + 2 * d;
        for (std::size_t j = 0; j < d; ++j) {
          const float gj = g[j] * grad_scale;
          m[j] = b1 * m[j] + r1 * gj;
          v[j] = b2 * v[j] + r2 * gj * gj;
          w[j] -= lr * (m[j] / c1) / (std::sqrt(v[j] / c2) + eps);
        }
        break;
      }
    }
    if (!changed_[slot]) {
      changed_[slot] = 1;
      changed_rows_.push_back(rows[i]);
    }
  }
  return Status::Ok();
}

void EmbeddingTable::Export(std::span<const uint64_t> rows, std::vector<float>* records, std::vector<uint32_t>* steps) {
  for (uint64_t row : rows) {
    const std::size_t slot = SlotOf(row);
    const float* r = blocks_[slot / kRowsPerBlock].get() + (slot % kRowsPerBlock) * record_floats_;
    records->insert(records->end(), r, r + record_floats_);
    steps->push_back(steps_[slot]);
  }
}

void EmbeddingTable::Import(std::span<const uint64_t> rows, std::span<const float> records,
                            std::span<const uint32_t> steps) {
  const auto f = static_cast<std::size_t>(record_floats_);
  for (std::size_t k = 0; k < rows.size() && (k + 1) * f <= records.size() && k < steps.size(); ++k) {
    const std::size_t slot = SlotOf(rows[k]);
    std::memcpy(blocks_[slot / kRowsPerBlock].get() + (slot % kRowsPerBlock) * record_floats_, records.data() + k * f,
                f * sizeof(float));
    steps_[slot] = steps[k];
  }
}

std::vector<uint64_t> EmbeddingTable::TakeChanged() {
  std::vector<uint64_t> taken;
  taken.swap(changed_rows_);
  for (uint64_t row : taken) changed_[*index_.Find(row)] = 0;
  std::sort(taken.begin(), taken.end());
  return taken;
}

}  // namespace psforge
