// ParamShard: one contiguous key range of the model, its weights, its
// optimizer state, and the consistency clock (BSP / SSP / ASP).
//
// Pure state, no I/O, so every rule can be tested in-process; the server
// loop (server.h) feeds it decoded messages. Invariants:
//  - Each push carries the number of records its gradient is the mean over.
//  - BSP: version() counts applied steps. A push for step t is accepted only
//    when t == version(); when every active worker has pushed, the pushes'
//    record-weighted mean is applied once (nothing when all were empty) and
//    the version becomes t + 1.
//  - SSP/ASP: each worker has a clock (the next step it may push); a push for
//    exactly that step is applied at once, on its own (an empty one only
//    advances the clock). version() is the smallest clock of the active
//    workers: every one of them has pushed every step below it.
//  - A worker removed from the job (it left, or the coordinator declared it
//    dead) is no longer waited for; what it pushed stays applied.
//  - A push already applied (same worker, same step) is reported as a
//    duplicate and changes nothing. A push that fails validation (range,
//    length, dtype, worker, step, NaN/Inf) changes nothing.
// Not thread-safe: one server loop owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/config.h"
#include "common/model_spec.h"
#include "paramserver/param_store.h"
#include "paramserver/optimizer.h"
#include "paramserver/table_shard.h"

namespace psforge {

enum class PushOutcome { kApplied, kAccumulated, kDuplicate };

class ParamShard {
 public:
  static Result<std::unique_ptr<ParamShard>> Create(const ModelSpec& spec, KeyRange range,
                                                    const OptimizerOptions& optimizer,
                                                    const ClusterOptions& cluster);

  KeyRange range() const { return range_; }
  int64_t version() const { return version_; }
  int64_t workers() const { return workers_; }
  // BSP: the workers whose pushes the current step waits for (the job's
  // batch is split among them); 0 under SSP/ASP.
  int64_t workers_waited_for() const { return consistency_ == Consistency::kBsp ? active_count_ : 0; }

  // `payload` holds (end - begin) float32 values, any alignment: the mean
  // gradient over `samples` records; `sparse`, the rows of sparse tables
  // the same step touched, with theirs (applied by the same rules: a BSP
  // step updates each touched row once, by the record-weighted mean).
  // `defer_tables`: a push that completes a step applies the dense part
  // and counts the new version, but leaves the rows' update pending
  // (tables_behind()) until CatchUpTables(), which the caller runs before
  // anything else touches the shard (`sparse` must live until then): the
  // dense weights of the new version can go out while the rows update.
  Result<PushOutcome> Push(uint32_t worker, int64_t step, int64_t samples, int64_t begin,
                           int64_t end, std::span<const std::byte> payload,
                           std::span<const SparseSection> sparse = {}, bool defer_tables = false);
  bool tables_behind() const { return tables_behind_; }
  void CatchUpTables();

  // This server's part of the model's sparse tables (none until attached).
  void AttachTables(std::unique_ptr<TableShard> tables) { tables_ = std::move(tables); }
  TableShard* tables() { return tables_.get(); }
  const TableShard* tables() const { return tables_.get(); }

  // Stops waiting for `worker`. True when that completed a step (pulls may be ready).
  bool RemoveWorker(uint32_t worker);
  // Counts `worker` again (one that replaces a removed one): the step from
  // which its pushes are expected, the current one (BSP: version(); SSP/ASP:
  // its clock becomes version()). For a worker that is active, the step
  // its next push is for.
  int64_t AdmitWorker(uint32_t worker);
  bool removed(uint32_t worker) const { return worker < active_.size() && !active_[worker]; }
  // BSP: some pushes of the current step have been taken in, not yet
  // applied (a snapshot now would not match the data positions).
  bool step_in_progress() const { return consistency_ == Consistency::kBsp && pushed_count_ > 0; }

  // Checks a pull for version `wanted` of keys [begin, end); NotReady is not
  // an error: Ready() says when it can be answered.
  // `with_rows`: the pull also asks for sparse rows, and may ask for no
  // dense keys (begin == end).
  Status ValidatePull(uint32_t worker, int64_t wanted, int64_t begin, int64_t end, bool with_rows = false) const;
  // Whether a pull of version `wanted` can be answered now (one with
  // sparse rows not while the rows' update is pending).
  bool Ready(int64_t wanted, bool with_rows = true) const;

  // The current weights of [begin, end) (inside range()).
  std::span<const float> Weights(int64_t begin, int64_t end) const;

  // BSP: the workers whose push for the current step has not arrived; SSP:
  // those whose clock is the minimum (the ones a waiting pull depends on).
  std::vector<uint32_t> Lagging() const;

  // Per worker: how many of its steps this shard has taken in.
  std::vector<int64_t> WorkerSteps() const;

  // Copies the weights, optimizer state and version into `out` (its buffers
  // are reused: no allocation once they have the size). BSP: call it right
  // after a step is applied, before the next push is taken in. With sparse
  // tables, out->id set: the rows changed since the last checkpoint known
  // written, `durable` (TableShard::Snapshot).
  void Snapshot(ServerCheckpoint* out, int64_t durable = 0);
  // Continues from checkpoint `c` of this range: its weights, optimizer
  // state and version; every worker is active again and at that version.
  Status Restore(const ServerCheckpoint& c);

 private:
  ParamShard(KeyRange range, const ClusterOptions& cluster, std::unique_ptr<Optimizer> optimizer);
  void ApplyAccumulated(bool defer_tables = false);
  bool StepComplete() const;
  void UpdateSspVersion();

  const KeyRange range_;
  const Consistency consistency_;
  const int64_t staleness_;
  int64_t workers_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<TableShard> tables_;  // null: the model has no sparse tables
  std::vector<float> weights_;
  std::vector<float> sum_;           // BSP with W > 1: the current step's gradients, summed
  std::vector<float> incoming_;      // an unaligned payload, copied (empty until one arrives)
  std::vector<bool> pushed_;         // BSP: who has pushed the current step
  int64_t pushed_count_ = 0;
  int64_t step_samples_ = 0;         // BSP: records in the current step's pushes
  std::vector<bool> active_;         // not removed from the job
  int64_t active_count_;
  std::vector<int64_t> clock_;       // SSP/ASP: next step per worker
  int64_t version_ = 0;
  // A deferred rows' update: a push's own rows, or the step's sums scaled.
  bool tables_behind_ = false;
  std::span<const SparseSection> deferred_rows_;
  float deferred_scale_ = 0;
};

}  // namespace psforge
