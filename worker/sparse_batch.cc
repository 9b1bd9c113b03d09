#include "worker/sparse_batch.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "common/criteo.h"
#include "common/radix_sort.h"
#include "common/row_ids.h"

namespace psforge {
namespace {
// Bits of a row's place in a batch packed below its id (64 - 40).
constexpr int kPlaceBits = 24;
static_assert(kMaxTableRows <= uint64_t{1} << (64 - kPlaceBits));
}  // namespace

SparseBatch::SparseBatch(const ModelSpec& spec, int64_t max_batch)
    : spec_(spec), fields_(spec.categorical()), inputs_(spec.inputs()), tables_(spec.tables().size()) {
  const auto slots = static_cast<std::size_t>(max_batch * fields_);
  place_.resize(slots);
  for (std::size_t t = 0; t < tables_.size(); ++t) {
    tables_[t].rows.reserve(slots);
    while (tables_[t].row_bits < 64 && (uint64_t{1} << tables_[t].row_bits) < static_cast<uint64_t>(spec.tables()[t].rows))
      ++tables_[t].row_bits;
  }
  weight_rows_.resize(tables_.size());
  grad_rows_.resize(tables_.size());
}

void SparseBatch::Plan(const uint64_t* keys, int64_t n) {
  n_ = n;
  for (Table& t : tables_) {
    t.rows.clear();
    t.seen.Clear();
  }
  const std::vector<TableOptions>& options = spec_.tables();
  // Each key's row, numbered in order of first appearance in its table...
  for (int64_t i = 0; i < n * fields_; ++i) {
    if (keys[i] == kNoFeature) {
      place_[i] = -1;
      continue;
    }
    const uint16_t t = spec_.field_table(i % fields_);
    const TableOptions& o = options[t];
    Table& table = tables_[t];
    const uint64_t row = RowOfFeature(keys[i], o.seed, static_cast<uint64_t>(o.rows));
    auto [local, fresh] = table.seen.TryEmplace(row, static_cast<uint32_t>(table.rows.size()));
    if (fresh) table.rows.push_back(row);
    place_[i] = static_cast<int32_t>(local);
  }
  // ... then the distinct rows sorted (the wire's order), and each key's
  // place renumbered to its row's rank.
  for (Table& table : tables_) {
    const std::size_t u = table.rows.size();
    table.rank.resize(u);
    sorted_.resize(u);
    if (u < (std::size_t{1} << kPlaceBits)) {
      // Rows are below 2^40 (kMaxTableRows): each row and its place in one
      // 64-bit word, sorted as plain integers (no comparisons through indices).
      for (std::size_t k = 0; k < u; ++k) sorted_[k] = table.rows[k] << kPlaceBits | k;
      RadixSort(&sorted_, &radix_scratch_, kPlaceBits + table.row_bits);
      for (std::size_t k = 0; k < u; ++k) {
        table.rank[sorted_[k] & ((uint64_t{1} << kPlaceBits) - 1)] = static_cast<uint32_t>(k);
        sorted_[k] >>= kPlaceBits;
      }
    } else {
      order_.resize(u);
      std::iota(order_.begin(), order_.end(), 0u);
      std::sort(order_.begin(), order_.end(), [&](uint32_t a, uint32_t b) { return table.rows[a] < table.rows[b]; });
      for (std::size_t k = 0; k < u; ++k) {
        table.rank[order_[k]] = static_cast<uint32_t>(k);
        sorted_[k] = table.rows[order_[k]];
      }
    }
    table.rows.swap(sorted_);
  }
  for (int64_t i = 0; i < n * fields_; ++i)
    if (place_[i] >= 0) place_[i] = static_cast<int32_t>(tables_[spec_.field_table(i % fields_)].rank[place_[i]]);
  for (std::size_t t = 0; t < tables_.size(); ++t) {
    Table& table = tables_[t];
    const int64_t dim = options[t].dim;
    table.weights.resize(table.rows.size() * dim);
    weight_rows_[t] = {static_cast<uint16_t>(t), dim, table.rows, table.weights};
  }
}

void SparseBatch::Pool(float* x) const {
  for (int64_t i = 0; i < n_; ++i) {
    for (int64_t f = 0; f < fields_; ++f) {
      const uint16_t t = spec_.field_table(f);
      const int64_t dim = spec_.tables()[t].dim;
      float* out = x + i * inputs_ + spec_.field_offset(f);
      const int32_t p = place_[i * fields_ + f];
      if (p < 0) std::fill(out, out + dim, 0.0f);
      else std::memcpy(out, tables_[t].weights.data() + p * dim, static_cast<std::size_t>(dim) * sizeof(float));
    }
  }
}

std::span<const SparseRows> SparseBatch::Gradients(std::span<const float> input_gradient) {
  for (std::size_t t = 0; t < tables_.size(); ++t) {
    Table& table = tables_[t];
    table.grads.assign(table.weights.size(), 0.0f);
    grad_rows_[t] = {static_cast<uint16_t>(t), spec_.tables()[t].dim, table.rows, table.grads};
  }
  for (int64_t i = 0; i < n_; ++i) {
    for (int64_t f = 0; f < fields_; ++f) {
      const int32_t p = place_[i * fields_ + f];
      if (p < 0) continue;
      const uint16_t t = spec_.field_table(f);
      const int64_t dim = spec_.tables()[t].dim;
      const float* g = input_gradient.data() + i * inputs_ + spec_.field_offset(f);
      float* sum = tables_[t].grads.data() + p * dim;
      for (int64_t j = 0; j < dim; ++j) sum[j] += g[j];
    }
  }
  return grad_rows_;
}

int64_t SparseBatch::unique_rows() const {
  int64_t rows = 0;
  for (const Table& t : tables_) rows += static_cast<int64_t>(t.rows.size());
  return rows;
}

}  // namespace psforge
