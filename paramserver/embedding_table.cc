#include "paramserver/embedding_table.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "common/row_ids.h"
#include "common/split_mix.h"
#include "paramserver/optimizer.h"

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

namespace {
constexpr uint64_t kFreeSlot = ~uint64_t{0};
}  // namespace

std::size_t EmbeddingTable::NewSlot(uint64_t row) {
  std::size_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = steps_.size();
    if (slot / kRowsPerBlock == blocks_.size())
      blocks_.push_back(std::make_unique<float[]>(kRowsPerBlock * static_cast<std::size_t>(record_floats_)));
    steps_.push_back(0);
    changed_.push_back(0);
    if (cold_) slot_rows_.push_back(kFreeSlot), referenced_.push_back(0), dirty_.push_back(0);
  }
  steps_[slot] = 0;
  changed_[slot] = 0;
  if (cold_) slot_rows_[slot] = row, referenced_[slot] = 1, dirty_[slot] = 0;
  return slot;
}

void EmbeddingTable::InitRecord(uint64_t row, float* r) const {
  InitialWeights(row, {r, static_cast<std::size_t>(options_.dim)});
  const float state = options_.optimizer == RowOptimizerKind::kAdaGrad ? static_cast<float>(options_.initial_accumulator) : 0.0f;
  std::fill(r + options_.dim, r + record_floats_, state);
}

std::size_t EmbeddingTable::SlotOf(uint64_t row) {
  const uint32_t next = free_slots_.empty() ? static_cast<uint32_t>(steps_.size()) : free_slots_.back();
  auto [slot, created] = index_.TryEmplace(row, next);
  if (!created) {
    if (cold_) referenced_[slot] = 1;
    return slot;
  }
  NewSlot(row);
  InitRecord(row, RecordAt(slot));
  ++spill_stats_.created;
  return slot;
}

void EmbeddingTable::Spill(ColdRows* cold, uint16_t table, int64_t max_resident) {
  cold_ = cold;
  cold_table_ = table;
  max_resident_ = static_cast<std::size_t>(std::max<int64_t>(max_resident, 1));
  // Sized once for the budget and an operation's overshoot: it never grows.
  index_ = RowMap(max_resident_ + max_resident_ / 8 + kOvershootRows);
  read_rows_.clear();
  slot_rows_.assign(steps_.size(), kFreeSlot);
  referenced_.assign(steps_.size(), 0);
  dirty_.assign(steps_.size(), 0);
}

int64_t EmbeddingTable::MemoryFor(int64_t record_floats, int64_t rows) {
  const auto n = static_cast<std::size_t>(rows);
  // Record; step, changed, CLOCK and dirty bytes, its row and a free-list entry; the index; one block.
  return static_cast<int64_t>(n * (static_cast<std::size_t>(record_floats) * sizeof(float) + 4 + 3 + 8 + 4) +
                              RowMap::BytesFor(n + n / 8 + kOvershootRows) +
                              kRowsPerBlock * static_cast<std::size_t>(record_floats) * sizeof(float));
}

int64_t EmbeddingTable::RowsWithin(int64_t record_floats, int64_t bytes) {
  int64_t lo = 0, hi = bytes / (record_floats * static_cast<int64_t>(sizeof(float))) + 1;
  while (lo < hi) {  // the most rows whose memory fits
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (MemoryFor(record_floats, mid) <= bytes) lo = mid; else hi = mid - 1;
  }
  return lo;
}

Status EmbeddingTable::Prepare(std::span<const uint64_t> rows) {
  if (!cold_) return Status::Ok();
  missing_.clear();
  for (uint64_t row : rows) {
    if (const uint32_t* slot = index_.Find(row)) referenced_[*slot] = 1;
    else missing_.push_back(row);
  }
  if (missing_.empty()) return Status::Ok();
  std::sort(missing_.begin(), missing_.end());
  missing_.erase(std::unique(missing_.begin(), missing_.end()), missing_.end());
  const auto f = static_cast<std::size_t>(record_floats_);
  cold_records_.resize(missing_.size() * f);
  cold_steps_.resize(missing_.size());
  if (Status s = cold_->Get(cold_table_, missing_, cold_records_, cold_steps_, &found_); !s.ok())
    return s.WithContext("table '" + options_.name + "': reading " + std::to_string(missing_.size()) +
                         " evicted rows back from " + cold_->where());
  for (std::size_t i = 0; i < missing_.size(); ++i) {
    const uint32_t next = free_slots_.empty() ? static_cast<uint32_t>(steps_.size()) : free_slots_.back();
    index_.TryEmplace(missing_[i], next);
    const std::size_t slot = NewSlot(missing_[i]);
    if (found_[i]) {
      std::memcpy(RecordAt(slot), cold_records_.data() + i * f, f * sizeof(float));
      steps_[slot] = cold_steps_[i];
      ++spill_stats_.read_back;
    } else {
      InitRecord(missing_[i], RecordAt(slot));
      ++spill_stats_.created;
    }
  }
  return Status::Ok();
}

void EmbeddingTable::Trim() {
  if (!cold_ || index_.size() <= max_resident_) return;
  const std::size_t target = max_resident_ - max_resident_ / 32;
  const std::size_t need = index_.size() - target;
  const std::size_t slots = steps_.size();
  victims_.clear();
  // CLOCK: a referenced slot gets its bit cleared and a second chance; two
  // rounds find every victim (the first clears every bit).
  for (std::size_t seen = 0; victims_.size() < need && seen < 2 * slots; ++seen, hand_ = (hand_ + 1) % slots) {
    if (slot_rows_[hand_] == kFreeSlot || referenced_[hand_] == 2) continue;
    if (referenced_[hand_] == 1) {
      referenced_[hand_] = 0;
      continue;
    }
    referenced_[hand_] = 2;  // chosen
    victims_.push_back(static_cast<uint32_t>(hand_));
  }
  const auto f = static_cast<std::size_t>(record_floats_);
  missing_.clear();
  cold_records_.clear();
  cold_steps_.clear();
  for (uint32_t slot : victims_) {
    if (!dirty_[slot]) continue;
    missing_.push_back(slot_rows_[slot]);
    const float* r = RecordAt(slot);
    cold_records_.insert(cold_records_.end(), r, r + f);
    cold_steps_.push_back(steps_[slot]);
  }
  if (!missing_.empty()) {
    if (Status s = cold_->Put(cold_table_, missing_, cold_records_, cold_steps_); !s.ok()) {
      ++spill_stats_.write_errors;
      if (!warned_)
        std::fprintf(stderr, "table '%s': evicted rows cannot be written to %s (they stay in memory, over the "
                             "memory budget): %s\n", options_.name.c_str(), cold_->where().c_str(), s.message().c_str());
      warned_ = true;
      for (uint32_t slot : victims_) referenced_[slot] = 1;
      return;
    }
  }
  spill_stats_.written += static_cast<int64_t>(missing_.size());
  spill_stats_.evicted += static_cast<int64_t>(victims_.size());
  if (!victims_.empty()) read_rows_.clear();  // their slots are freed
  for (uint32_t slot : victims_) {
    index_.Erase(slot_rows_[slot]);
    slot_rows_[slot] = kFreeSlot;
    referenced_[slot] = 0;
    free_slots_.push_back(slot);
  }
}

void EmbeddingTable::ResolveSlots(std::span<const uint64_t> rows) {
  slots_.resize(rows.size());
  for (std::size_t i = 0; i < std::min(rows.size(), kPrefetchAhead); ++i) index_.Prefetch(rows[i]);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i + kPrefetchAhead < rows.size()) index_.Prefetch(rows[i + kPrefetchAhead]);
    slots_[i] = static_cast<uint32_t>(SlotOf(rows[i]));
  }
}

Status EmbeddingTable::Read(std::span<const uint64_t> rows, std::span<float> out) {
  PSF_RETURN_IF_ERROR(Prepare(rows));
  const std::size_t d = static_cast<std::size_t>(options_.dim);
  const std::size_t n = std::min(rows.size(), out.size() / std::max<std::size_t>(d, 1));
  ResolveSlots(rows.first(n));
  for (std::size_t i = 0; i < std::min(n, kPrefetchAhead); ++i) PrefetchRecord(slots_[i]);
  for (std::size_t i = 0; i < n; ++i) {
    if (i + kPrefetchAhead < n) PrefetchRecord(slots_[i + kPrefetchAhead]);
    std::memcpy(out.data() + i * d, RecordAt(slots_[i]), d * sizeof(float));
  }
  read_rows_.assign(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(n));
  read_slots_.assign(slots_.begin(), slots_.end());
  Trim();
  return Status::Ok();
}

Status EmbeddingTable::Apply(std::span<const uint64_t> rows, std::span<const float> grad, float grad_scale) {
  const std::size_t d = static_cast<std::size_t>(options_.dim);
  if (grad.size() != rows.size() * d)
    return InvalidArgument("table '" + options_.name + "': " + std::to_string(grad.size()) + " gradient values for " +
                           std::to_string(rows.size()) + " rows of " + std::to_string(d));
  if (const int64_t k = FirstNonFinite(grad.data(), static_cast<int64_t>(grad.size())); k >= 0)
    return InvalidArgument("table '" + options_.name + "': non-finite gradient for row " +
                           std::to_string(rows[static_cast<std::size_t>(k) / d]) + "; no row was changed");
  PSF_RETURN_IF_ERROR(Prepare(rows));
  const float lr = static_cast<float>(options_.learning_rate);
  const float eps = static_cast<float>(options_.epsilon);
  if (!rows.empty() && rows.size() == read_rows_.size() && std::equal(rows.begin(), rows.end(), read_rows_.begin())) {
    slots_.assign(read_slots_.begin(), read_slots_.end());  // the rows just read (and made resident by Prepare)
    if (cold_)
      for (uint32_t slot : slots_) referenced_[slot] = 1;
  } else {
    ResolveSlots(rows);
  }
  for (std::size_t i = 0; i < std::min(rows.size(), kPrefetchAhead); ++i) PrefetchRecord(slots_[i]);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i + kPrefetchAhead < rows.size()) {
      PrefetchRecord(slots_[i + kPrefetchAhead]);
      __builtin_prefetch(&changed_[slots_[i + kPrefetchAhead]], 1);
    }
    const std::size_t slot = slots_[i];
    float* w = RecordAt(slot);
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
    if (cold_) dirty_[slot] = 1;
  }
  Trim();
  return Status::Ok();
}

Status EmbeddingTable::Export(std::span<const uint64_t> rows, std::vector<float>* records,
                              std::vector<uint32_t>* steps) {
  const auto f = static_cast<std::size_t>(record_floats_);
  const std::size_t first = steps->size();
  records->resize(records->size() + rows.size() * f);
  steps->resize(first + rows.size());
  float* out = records->data() + first * f;
  // Evicted rows are read from the store in place: a checkpoint does not
  // bring the rows it writes back into memory.
  std::vector<std::size_t> evicted;
  missing_.clear();
  for (std::size_t k = 0; k < rows.size(); ++k) {
    const uint32_t* slot = index_.Find(rows[k]);
    if (slot) {
      std::memcpy(out + k * f, RecordAt(*slot), f * sizeof(float));
      (*steps)[first + k] = steps_[*slot];
    } else if (cold_) {
      evicted.push_back(k);
      missing_.push_back(rows[k]);
    } else {
      InitRecord(rows[k], out + k * f);
      (*steps)[first + k] = 0;
    }
  }
  if (missing_.empty()) return Status::Ok();
  cold_records_.resize(missing_.size() * f);
  cold_steps_.resize(missing_.size());
  if (Status s = cold_->Get(cold_table_, missing_, cold_records_, cold_steps_, &found_); !s.ok())
    return s.WithContext("table '" + options_.name + "': reading evicted rows for a checkpoint from " + cold_->where());
  for (std::size_t i = 0; i < evicted.size(); ++i) {
    const std::size_t k = evicted[i];
    if (found_[i]) {
      std::memcpy(out + k * f, cold_records_.data() + i * f, f * sizeof(float));
      (*steps)[first + k] = cold_steps_[i];
    } else {
      InitRecord(rows[k], out + k * f);
      (*steps)[first + k] = 0;
    }
  }
  return Status::Ok();
}

Status EmbeddingTable::Import(std::span<const uint64_t> rows, std::span<const float> records,
                              std::span<const uint32_t> steps) {
  const auto f = static_cast<std::size_t>(record_floats_);
  // With a budget, a chain larger than it goes through memory a part at a time.
  const std::size_t part = cold_ ? std::max<std::size_t>(max_resident_ / 2, 1) : rows.size() + 1;
  for (std::size_t k = 0; k < rows.size() && (k + 1) * f <= records.size() && k < steps.size(); ++k) {
    const std::size_t slot = SlotOf(rows[k]);
    std::memcpy(RecordAt(slot), records.data() + k * f, f * sizeof(float));
    steps_[slot] = steps[k];
    if (cold_) dirty_[slot] = 1;
    if ((k + 1) % part == 0) Trim();
  }
  Trim();
  return Status::Ok();
}

std::vector<uint64_t> EmbeddingTable::TakeChanged() {
  std::vector<uint64_t> taken;
  taken.swap(changed_rows_);
  for (uint64_t row : taken)
    if (const uint32_t* slot = index_.Find(row)) changed_[*slot] = 0;
  std::sort(taken.begin(), taken.end());
  taken.erase(std::unique(taken.begin(), taken.end()), taken.end());
  return taken;
}

}  // namespace psforge
