// LeaseTable: which data shards the workers train, epoch by epoch.
//
// Epoch e visits the shards of a ShardPlan in EpochOrder(e). The k-th shard
// of that order belongs first to worker k mod W, so a run without failures
// hands every worker the same shards whatever the timing (BSP with
// data.shard_size equal to a worker's batch is then the same computation as
// one process on the whole batch). A worker whose own shards are gone takes
// one from the worker with the most left; a dead worker's held leases go
// back to the pool and are handed out first. The next epoch starts only when
// every shard of this one is reported done, so each record is trained once
// an epoch. Not thread-safe: the coordinator's loop owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <vector>

#include "common/shard_plan.h"
#include "common/status.h"
#include "common/wire.h"

namespace psforge {

class LeaseTable {
 public:
  LeaseTable(const ShardPlan* plan, int64_t workers, int64_t epochs);

  struct Grant {
    LeaseStatus status = LeaseStatus::kWait;
    uint64_t lease = 0;
    int64_t epoch = 0;
    KeyRange positions;
  };

  // `worker` has pushed every record of `lease`. A repeated report is
  // ignored; a lease the worker does not hold is an error. Returns the epoch
  // this completed, or 0.
  Result<int64_t> Done(uint32_t worker, uint64_t lease);

  // The next shard for `worker`, or wait (others still train this epoch's
  // last shards), or finished (every epoch is done).
  Grant Next(uint32_t worker);

  // `worker` is dead: the leases it holds go back to the pool.
  void ReturnLeases(uint32_t worker);

  int64_t epoch() const { return epoch_; }  // the epoch being handed out (1-based)
  int64_t epochs_completed() const { return completed_; }
  bool finished() const { return completed_ >= epochs_; }
  // Records reported done in the current epoch.
  int64_t records_done_in_epoch() const { return records_done_; }
  int64_t held() const { return static_cast<int64_t>(held_.size()); }

 private:
  void StartEpoch(int64_t epoch);

  const ShardPlan* plan_;
  const int64_t workers_, epochs_;
  int64_t epoch_ = 0, completed_ = 0;
  std::vector<std::deque<int64_t>> own_;  // per worker: shards not yet handed out
  std::deque<int64_t> returned_;          // shards of dead workers, handed out first
  std::map<uint64_t, uint32_t> held_;     // lease -> worker
  std::set<uint64_t> done_;               // this epoch's leases reported done
  int64_t shards_done_ = 0, records_done_ = 0;
};

}  // namespace psforge
