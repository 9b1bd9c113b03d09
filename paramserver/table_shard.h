// TableShard: one server's part of every sparse table of a model (the rows
// r with ServerOfRow(r, servers) == index), and the current BSP step's
// row gradients.
//
// The consistency rules are ParamShard's: it calls Check before taking a
// push in (so a bad sparse part changes nothing, dense or sparse), then
// Accumulate (BSP: summed per row, weighted by the push's records) or
// ApplyNow (SSP/ASP: the push's own update), and ApplyAccumulated when the
// step is complete. Rows are touched only where a push or pull names them.
// Not thread-safe: one server loop owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/row_map.h"
#include "common/sparse_payload.h"
#include "paramserver/cold_rows.h"
#include "paramserver/embedding_table.h"
#include "paramserver/param_store.h"

namespace psforge {

// A server's memory budget for its tables' rows (cluster.memory_budget_mb).
struct TableMemory {
  int64_t budget_bytes = 0;  // 0: every row in memory
  std::string spill_dir;     // where the evicted rows go (a fresh store under it)
};

class TableShard {
 public:
  // A table gets room for at least this many rows in memory.
  static constexpr int64_t kMinResidentRows = 4096;

  // The part of `tables` held by server `index` of `servers`. With a
  // budget, each table gets the part of it in proportion to its declared
  // rows x record size (InvalidArgument, naming the budget it needs, when
  // a table's part holds fewer than kMinResidentRows rows), and the
  // evicted rows go to a RocksColdRows store under memory.spill_dir,
  // removed with the shard (its cold rows are no one else's).
  static Result<std::unique_ptr<TableShard>> Create(const std::vector<TableOptions>& tables, int64_t index,
                                                    int64_t servers, const TableMemory& memory = {});

  // The memory budget's counters, summed over the tables; rows in memory;
  // the spill store's bytes on disk.
  SpillStats spill_stats() const;
  int64_t resident_rows() const;
  int64_t spill_disk_bytes() const;

  std::size_t tables() const { return tables_.size(); }
  const EmbeddingTable& table(std::size_t t) const { return *tables_[t]; }
  // Dims and row counts by table index, as SplitSparsePayload wants them.
  std::span<const int64_t> dims() const { return dims_; }
  std::span<const uint64_t> table_rows() const { return rows_; }

  // InvalidArgument, naming the table and row, unless every row of
  // `sections` is this server's and every value is finite.
  Status Check(std::span<const SparseSection> sections) const;

  // InvalidArgument unless every row a pull's `sections` name is this server's.
  Status CheckRowsOf(std::span<const SparseSection> sections) const;

  // BSP: adds `weight` x each row's gradient to the step's sum.
  void Accumulate(std::span<const SparseSection> sections, float weight);
  // BSP: one update of every row the step touched, by its sum x `scale`;
  // the next step starts from an empty sum.
  void ApplyAccumulated(float scale);
  // Forgets the step's sum unapplied (the shard goes back to a checkpoint).
  void DropStep();
  // SSP/ASP: one update of each row of `sections` by its gradient.
  void ApplyNow(std::span<const SparseSection> sections);

  // The weights of `rows` of table `t` (checked: this server's, in the
  // table), creating rows not yet touched; dim floats a row, appended to `out`.
  Status Read(std::size_t t, std::span<const uint64_t> rows, std::vector<float>* out);

  // Incremental checkpoints. Snapshot fills `out` (with id `id` set) with
  // the rows changed since its base: the last checkpoint known written
  // (`durable`, the writer's latest; a checkpoint whose write failed is not
  // built on, its rows go into the next one). Restore puts a restored
  // chain's rows (rows_base 0) back into freshly created tables, checked
  // against them; the next snapshot builds on checkpoint `id`.
  void Snapshot(int64_t durable, ServerCheckpoint* out);
  Status Restore(int64_t id, std::span<const TableRowsCheckpoint> rows);

 private:
  struct StepSum {
    RowMap index;  // row -> its place in rows / values
    std::vector<uint64_t> rows;
    std::vector<float> values;
  };
  TableShard(int64_t index, int64_t servers) : index_(index), servers_(servers) {}
  Status CheckRows(std::size_t t, std::span<const uint64_t> rows) const;

  const int64_t index_, servers_;
  std::unique_ptr<RocksColdRows> cold_;  // before tables_: they use it until they are gone
  std::vector<std::unique_ptr<EmbeddingTable>> tables_;
  std::vector<int64_t> dims_;
  std::vector<uint64_t> rows_;
  std::vector<StepSum> sums_;  // per table
  std::vector<float> scratch_;  // an unaligned section's values, copied
  // Incremental checkpoints: the last snapshot's id, the checkpoint the
  // next one builds on, and per table the rows changed since that base
  // already taken by a snapshot whose write is not known to have succeeded.
  int64_t last_snapshot_ = 0, base_ = 0;
  std::vector<std::vector<uint64_t>> unconfirmed_;
};

}  // namespace psforge
