#include "paramserver/table_shard.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/row_ids.h"
#include "paramserver/optimizer.h"

namespace psforge {
namespace {

// A section's values as floats: in place when aligned, else copied into `scratch`.
std::span<const float> Values(const SparseSection& s, std::vector<float>* scratch) {
  const std::size_t n = s.values.size() / sizeof(float);
  if (reinterpret_cast<std::uintptr_t>(s.values.data()) % alignof(float) == 0)
    return {reinterpret_cast<const float*>(s.values.data()), n};
  scratch->resize(n);
  std::memcpy(scratch->data(), s.values.data(), s.values.size());
  return *scratch;
}

// The tables' evicted rows cannot be read back: the server cannot go on
// without losing updates, so it stops, and the job takes it back to its
// last committed checkpoint (as for a server that died).
[[noreturn]] void StoreFailed(const Status& s) {
  std::fprintf(stderr, "ps-server: %s; this server stops (the job goes back to its last committed checkpoint)\n",
               s.message().c_str());
  std::fflush(stderr);
  std::_Exit(3);
}

}  // namespace

Result<std::unique_ptr<TableShard>> TableShard::Create(const std::vector<TableOptions>& tables, int64_t index,
                                                       int64_t servers, const TableMemory& memory) {
  if (servers < 1 || index < 0 || index >= servers)
    return InvalidArgument("server " + std::to_string(index) + " of " + std::to_string(servers));
  std::unique_ptr<TableShard> shard(new TableShard(index, servers));
  std::vector<int64_t> record_floats;
  double total = 0;
  for (const TableOptions& o : tables) {
    PSF_ASSIGN_OR_RETURN(auto table, EmbeddingTable::Create(o));
    record_floats.push_back(table->record_floats());
    // This server's share of the table's declared rows.
    total += static_cast<double>(o.rows) / static_cast<double>(servers) * static_cast<double>(table->record_floats());
    shard->tables_.push_back(std::move(table));
    shard->dims_.push_back(o.dim);
    shard->rows_.push_back(static_cast<uint64_t>(o.rows));
  }
  if (memory.budget_bytes > 0 && !tables.empty()) {
    PSF_ASSIGN_OR_RETURN(shard->cold_, RocksColdRows::Create(memory.spill_dir, record_floats));
    for (std::size_t t = 0; t < tables.size(); ++t) {
      EmbeddingTable& table = *shard->tables_[t];
      const double share = static_cast<double>(tables[t].rows) / static_cast<double>(servers) *
                           static_cast<double>(table.record_floats()) / total;
      const int64_t bytes = static_cast<int64_t>(static_cast<double>(memory.budget_bytes) * share);
      const int64_t rows = EmbeddingTable::RowsWithin(table.record_floats(), bytes);
      if (rows < kMinResidentRows) {
        const double need = static_cast<double>(EmbeddingTable::MemoryFor(table.record_floats(), kMinResidentRows)) /
                            share / (1 << 20);
        return InvalidArgument("cluster.memory_budget_mb: " + std::to_string(memory.budget_bytes >> 20) +
                               " MiB gives table '" + tables[t].name + "' room for " + std::to_string(rows) +
                               " rows on a server; a table needs room for at least " +
                               std::to_string(kMinResidentRows) + " (a budget of at least " +
                               std::to_string(static_cast<int64_t>(std::ceil(need))) + " MiB), or 0 for no limit");
      }
      table.Spill(shard->cold_.get(), static_cast<uint16_t>(t), rows);
    }
  }
  shard->sums_.resize(tables.size());
  shard->unconfirmed_.resize(tables.size());
  return shard;
}

SpillStats TableShard::spill_stats() const {
  SpillStats all;
  for (const auto& t : tables_) {
    const SpillStats& s = t->spill_stats();
    all.evicted += s.evicted, all.written += s.written, all.read_back += s.read_back, all.created += s.created,
        all.write_errors += s.write_errors;
  }
  return all;
}

int64_t TableShard::resident_rows() const {
  int64_t n = 0;
  for (const auto& t : tables_) n += t->resident_rows();
  return n;
}

int64_t TableShard::spill_disk_bytes() const { return cold_ ? cold_->disk_bytes() : 0; }

void TableShard::Snapshot(int64_t durable, ServerCheckpoint* out) {
  // The previous snapshot was written: the next builds on it.
  if (durable == last_snapshot_) {
    base_ = last_snapshot_;
    for (auto& rows : unconfirmed_) rows.clear();
  }
  out->rows_base = base_;
  out->tables.resize(tables_.size());
  for (std::size_t t = 0; t < tables_.size(); ++t) {
    std::vector<uint64_t> changed = tables_[t]->TakeChanged();
    std::vector<uint64_t>& rows = unconfirmed_[t];
    const auto middle = static_cast<std::ptrdiff_t>(rows.size());
    rows.insert(rows.end(), changed.begin(), changed.end());
    std::inplace_merge(rows.begin(), rows.begin() + middle, rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    TableRowsCheckpoint& c = out->tables[t];
    c.table = static_cast<uint16_t>(t);
    c.record_floats = tables_[t]->record_floats();
    c.rows = rows;
    c.records.clear();
    c.steps.clear();
    if (Status s = tables_[t]->Export(c.rows, &c.records, &c.steps); !s.ok()) StoreFailed(s);
  }
  last_snapshot_ = out->id;
}

Status TableShard::Restore(int64_t id, std::span<const TableRowsCheckpoint> rows) {
  for (const TableRowsCheckpoint& c : rows) {
    if (c.table >= tables_.size())
      return DataLoss("the checkpoint holds rows of sparse table " + std::to_string(c.table) + "; the model has " +
                      std::to_string(tables_.size()));
    EmbeddingTable& table = *tables_[c.table];
    if (c.record_floats != table.record_floats() || c.records.size() != c.rows.size() * c.record_floats ||
        c.steps.size() != c.rows.size())
      return DataLoss("the checkpoint's rows of table '" + table.options().name + "' have records of " +
                      std::to_string(c.record_floats) + " floats; its optimizer needs " +
                      std::to_string(table.record_floats()) + " (was the table's optimizer or dim changed?)");
    PSF_RETURN_IF_ERROR(CheckRows(c.table, c.rows).WithContext("the checkpoint's rows"));
  }
  for (const TableRowsCheckpoint& c : rows) PSF_RETURN_IF_ERROR(tables_[c.table]->Import(c.rows, c.records, c.steps));
  last_snapshot_ = base_ = id;
  for (auto& r : unconfirmed_) r.clear();
  return Status::Ok();
}

Status TableShard::CheckRows(std::size_t t, std::span<const uint64_t> rows) const {
  if (t >= tables_.size())
    return InvalidArgument("table " + std::to_string(t) + "; the model has " + std::to_string(tables_.size()) +
                           " sparse tables");
  for (uint64_t r : rows) {
    if (r >= rows_[t])
      return InvalidArgument("row " + std::to_string(r) + " outside table '" + tables_[t]->options().name + "' of " +
                             std::to_string(rows_[t]) + " rows");
    if (ServerOfRow(r, servers_) != index_)
      return InvalidArgument("row " + std::to_string(r) + " of table '" + tables_[t]->options().name +
                             "' belongs to server " + std::to_string(ServerOfRow(r, servers_)) + ", not to server " +
                             std::to_string(index_));
  }
  return Status::Ok();
}

Status TableShard::CheckRowsOf(std::span<const SparseSection> sections) const {
  for (const SparseSection& s : sections) PSF_RETURN_IF_ERROR(CheckRows(s.table, s.rows));
  return Status::Ok();
}

Status TableShard::Check(std::span<const SparseSection> sections) const {
  for (const SparseSection& s : sections) {
    PSF_RETURN_IF_ERROR(CheckRows(s.table, s.rows));
    const std::size_t d = static_cast<std::size_t>(dims_[s.table]);
    if (s.values.size() != s.rows.size() * d * sizeof(float))
      return InvalidArgument("table '" + tables_[s.table]->options().name + "': " +
                             std::to_string(s.values.size()) + " bytes of gradients for " +
                             std::to_string(s.rows.size()) + " rows of " + std::to_string(d));
    const auto values = static_cast<int64_t>(s.values.size() / sizeof(float));
    if (const int64_t k = FirstNonFinite(s.values.data(), values); k >= 0)
      return InvalidArgument("table '" + tables_[s.table]->options().name + "': non-finite gradient for row " +
                             std::to_string(s.rows[static_cast<std::size_t>(k) / d]) + "; nothing applied");
  }
  return Status::Ok();
}

void TableShard::Accumulate(std::span<const SparseSection> sections, float weight) {
  for (const SparseSection& s : sections) {
    StepSum& sum = sums_[s.table];
    const std::size_t d = static_cast<std::size_t>(dims_[s.table]);
    std::span<const float> g = Values(s, &scratch_);
    for (std::size_t i = 0; i < s.rows.size(); ++i) {
      auto [place, created] = sum.index.TryEmplace(s.rows[i], static_cast<uint32_t>(sum.rows.size()));
      if (created) {
        sum.rows.push_back(s.rows[i]);
        sum.values.resize(sum.values.size() + d, 0.0f);
      }
      float* acc = sum.values.data() + static_cast<std::size_t>(place) * d;
      for (std::size_t j = 0; j < d; ++j) acc[j] += weight * g[i * d + j];
    }
  }
}

void TableShard::ApplyAccumulated(float scale) {
  for (std::size_t t = 0; t < tables_.size(); ++t) {
    StepSum& sum = sums_[t];
    // Checked as the pushes came in: Apply refuses them only when evicted rows cannot be read back.
    if (!sum.rows.empty())
      if (Status s = tables_[t]->Apply(sum.rows, sum.values, scale); !s.ok()) StoreFailed(s);
  }
  DropStep();
}

void TableShard::DropStep() {
  for (StepSum& sum : sums_) sum.index.Clear(), sum.rows.clear(), sum.values.clear();
}

void TableShard::ApplyNow(std::span<const SparseSection> sections) {
  for (const SparseSection& s : sections)
    if (Status st = tables_[s.table]->Apply(s.rows, Values(s, &scratch_)); !st.ok()) StoreFailed(st);
}

Status TableShard::Read(std::size_t t, std::span<const uint64_t> rows, std::vector<float>* out) {
  PSF_RETURN_IF_ERROR(CheckRows(t, rows));
  const std::size_t start = out->size();
  out->resize(start + rows.size() * static_cast<std::size_t>(dims_[t]));
  if (Status s = tables_[t]->Read(rows, std::span(*out).subspan(start)); !s.ok()) StoreFailed(s);
  return Status::Ok();
}

}  // namespace psforge
