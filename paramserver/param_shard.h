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
//  - Parts (cluster.chunk_kb): the range is cut into parts() equal parts;
//    a worker may push a step as several pushes, each a run of whole
//    parts, in any order (its last layers' parts while backward still
//    computes the first layers'). Each part is checked and applied (SSP/ASP,
//    or BSP once every active worker has pushed that part) when it comes,
//    so its new weights can go out while other parts travel. A part's
//    version (PartVersion) counts the steps applied to it; a pull of keys is
//    ready when every part it touches has the version. The optimizer's step
//    count, the rows of sparse tables (sent with the push that completes the
//    worker's step) and the step's records count once, with that push.
//  - A worker removed from the job (it left, or the coordinator declared it
//    dead) is no longer waited for; what it pushed stays applied.
//  - A push already applied (same worker, same step) is reported as a
//    duplicate and changes nothing. A push that fails validation (range,
//    length, dtype, worker, step, NaN/Inf) changes nothing.
// Not thread-safe: one server loop owns it.
#pragma once

#include <algorithm>
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

// kApplied: the shard's version advanced; kAccumulated: the worker's step
// is taken in whole, the version waits for others; kPart: a part of the
// worker's step (not its last) is taken in; kDuplicate: nothing changed.
enum class PushOutcome { kApplied, kAccumulated, kPart, kDuplicate };

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
  // [begin, end): the whole range, or a run of whole parts that starts
  // where the worker's last push of the step ended.
  Result<PushOutcome> Push(uint32_t worker, int64_t step, int64_t samples, int64_t begin,
                           int64_t end, std::span<const std::byte> payload,
                           std::span<const SparseSection> sparse = {}, bool defer_tables = false);
  // The parts a push may come in (PartCount: equal parts of about
  // cluster.chunk_kb); one when the optimizer needs the range whole
  // (clip_norm) or chunk_kb is 0.
  int64_t parts() const { return parts_; }
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
  bool step_in_progress() const { return consistency_ == Consistency::kBsp && pushes_taken_ > 0; }

  // Checks a pull for version `wanted` of keys [begin, end); NotReady is not
  // an error: Ready() says when it can be answered.
  // `with_rows`: the pull also asks for sparse rows, and may ask for no
  // dense keys (begin == end).
  Status ValidatePull(uint32_t worker, int64_t wanted, int64_t begin, int64_t end, bool with_rows = false) const;
  // Whether a pull of version `wanted` of keys [begin, end) can be
  // answered now (one with sparse rows not while the rows' update is
  // pending, nor before the whole range has reached the version).
  bool Ready(int64_t wanted, int64_t begin, int64_t end, bool with_rows) const;
  // The same for a pull of the whole range.
  bool Ready(int64_t wanted, bool with_rows = true) const { return Ready(wanted, range_.begin, range_.end, with_rows); }
  // The version a reply to a pull of [begin, end) carries: the least of
  // its parts'.
  int64_t VersionOf(int64_t begin, int64_t end) const;

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
  // BSP: applies those of parts [first, last) every active worker has
  // pushed, and when that was the last one, completes the step.
  // `rows_applied`: the push that completes the step was its only one and
  // has applied (or deferred) its rows itself.
  void ApplyCompleteParts(int64_t first, int64_t last, bool defer_tables = false, bool rows_applied = false);
  // Marks parts [first, last) of `worker`'s current step as taken in.
  void TakeParts(uint32_t worker, int64_t first, int64_t last);
  bool PartIn(int64_t worker, int64_t part) const { return part_in_[worker * parts_ + part] != 0; }
  // The steps applied to part `part` (BSP), or taken in from every active
  // worker (SSP/ASP).
  int64_t PartVersion(int64_t part) const;
  void CompleteStep(bool defer_tables, bool rows_applied);
  // Forgets what the current step has taken in (every worker at its first part).
  void ClearStep();
  bool PartComplete(int64_t part) const;
  // Offset into the range of part `part`'s first key (parts_: the range's size).
  int64_t PartBegin(int64_t part) const {
    return part == parts_ ? range_.size() : PartitionKeys(range_.size(), parts_, part).begin;
  }
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
  int64_t parts_ = 1;
  // Per worker: which parts of its current step are in (part_in_, workers
  // x parts), and how many (BSP: of step version(); SSP/ASP: of step
  // clock_[w]). BSP: parts_ once it has pushed the step.
  std::vector<int64_t> parts_in_;
  std::vector<char> part_in_;
  int64_t pushes_taken_ = 0;          // BSP: pushes (whole or parts) taken in this step
  int64_t step_samples_ = 0;          // BSP: records of the workers whose step is in
  // BSP, per part of the current step: the workers that pushed it, their
  // records, whether it was applied from a lone payload, and whether it is
  // done (every active worker's gradient in and applied); parts_done_ are.
  std::vector<int64_t> part_pushes_, part_samples_;
  std::vector<char> part_applied_, part_done_;
  int64_t parts_done_ = 0;
  bool step_updates_ = false;         // BSP: the optimizer ran on a part this step
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
