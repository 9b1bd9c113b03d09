// LeaseTable: which data shards the workers train, epoch by epoch.
//
// Epoch e visits the shards of a ShardPlan in EpochOrder(e). The k-th shard
// of that order belongs first to worker k mod W, so a run without failures
// hands every worker the same shards whatever the timing (BSP with
// data.shard_size equal to a worker's batch is then the same computation as
// one process on the whole batch). A worker whose own shards are gone takes
// one from the worker with the most left (in lockstep, BSP, only from one
// that is absent or has 2 or more left, so that without failures which
// records a step trains never depends on timing); a
// dead worker's held leases go back to the pool and are handed out first,
// each from the first record the servers had not applied. The next epoch
// starts only when every shard of this one is done, so each record is
// trained once an epoch.
//
// In lockstep a shard is done as soon as it is known to be: its holder
// asked for more at step t (a worker asks only once its lease is used up,
// and in lockstep asks at once), and someone asks at a step after t, which
// it can only do once step t is applied everywhere. So the epoch turns over
// at the same step in every run, whichever worker's request comes first.
// Not thread-safe: the coordinator's loop owns it.
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

// Where the data stands: the epoch being handed out (every earlier one is
// complete), its shards wholly trained, and those trained from their first
// record up to an offset. What a checkpoint records of the leases.
struct LeaseState {
  int64_t epoch = 1;
  std::vector<int64_t> done;                          // shards, ascending
  std::vector<std::pair<int64_t, int64_t>> partial;   // (shard, records trained)
  // Partial shards a worker's position is in: that worker trains the rest
  // first, as it would have without the restart.
  std::map<int64_t, uint32_t> owner;
  bool operator==(const LeaseState&) const = default;
};

// One lease handed out: to whom, which, and from which record of its shard.
struct GrantRecord {
  uint32_t worker = 0;
  uint64_t lease = 0;
  int64_t offset = 0;
};

// The state at a checkpoint: `base` (where the job's generation started),
// then `grants` (in the order given), each trained as far as its worker's
// position at the checkpoint says: the leases a worker was granted before
// the one its position is in are trained wholly, that one up to the
// position's offset, later ones not at all. A worker without a position
// trained nothing.
LeaseState ReplayLeases(const ShardPlan& plan, int64_t epochs, const LeaseState& base,
                        const std::vector<GrantRecord>& grants,
                        const std::map<uint32_t, DataPosition>& positions);

class LeaseTable {
 public:
  // `lockstep`: BSP (no taking over others' shards; shards used up complete
  // by step, see above).
  LeaseTable(const ShardPlan* plan, int64_t workers, int64_t epochs, bool lockstep = false);

  // Starts over from `state`: no lease is held; its partial shards are
  // handed out first, from their offsets, then the rest of its epoch in
  // the usual order.
  void Restore(const LeaseState& state);

  struct Grant {
    LeaseStatus status = LeaseStatus::kWait;
    uint64_t lease = 0;
    int64_t epoch = 0;
    KeyRange positions;
    int64_t offset = 0;  // the shard's first records already trained: skip them
  };
  struct Returned {
    int64_t whole = 0, partial = 0, completed = 0;
    int64_t epoch_completed = 0;  // > 0: completing leases ended this epoch
  };

  // `worker` has pushed every record of `lease`. A repeated report is
  // ignored; a lease the worker does not hold is an error. Returns the epoch
  // this completed, or 0.
  Result<int64_t> Done(uint32_t worker, uint64_t lease);

  // The next shard for `worker`, or wait (others still train this epoch's
  // last shards), or finished (every epoch is done).
  Grant Next(uint32_t worker);

  // `worker` is dead and not replaced (true), or back (false): in lockstep
  // the others may take over its shards meanwhile.
  void SetAbsent(uint32_t worker, bool absent);

  // Lockstep: `worker` asks for more at `step`, so the leases it holds are
  // used up, their last records in `step` or before.
  void UsedUp(uint32_t worker, int64_t step);
  // Lockstep: a request at `step` means every step before it is applied:
  // the leases used up before `step` by a holder `alive` says is still a
  // member (a dead one's records may be missing) are done. Returns the
  // epoch this completed, or 0.
  template <typename Alive>
  int64_t CompleteUsedUp(int64_t step, const Alive& alive) {
    int64_t completed = 0;
    for (auto it = held_.begin(); it != held_.end();) {
      if (it->second.used_up >= 0 && it->second.used_up < step && alive(it->second.worker)) {
        const uint64_t lease = it->first;
        it = held_.erase(it);
        if (const int64_t e = Complete(lease); e > 0) completed = e;
        if (completed > 0) break;  // a new epoch: its leases are not held yet
      } else {
        ++it;
      }
    }
    return completed;
  }

  // `worker` is dead, and the servers applied its records up to `trained`
  // (a lease, and how many records of its shard). Leases granted to it
  // before that one are complete; that one goes back to the pool from that
  // offset, later ones from the offset they were granted at (whole, unless
  // they resumed a partly trained shard). A position in none of its leases
  // (it never pushed, or last pushed a lease already done) returns them all
  // from their grant offsets: records a checkpoint or an earlier holder
  // already trained are never handed out again.
  Returned ReturnLeases(uint32_t worker, const DataPosition& trained);
  // Where `lease` stands in the order `worker` was granted its held leases
  // (-1: not held by it).
  int64_t GrantOrder(uint32_t worker, uint64_t lease) const;

  int64_t epoch() const { return epoch_; }  // the epoch being handed out (1-based)
  int64_t epochs_completed() const { return completed_; }
  bool finished() const { return completed_ >= epochs_; }
  // Records reported done in the current epoch.
  int64_t records_done_in_epoch() const { return records_done_; }
  int64_t HeldBy(uint32_t worker) const;

 private:
  struct Held {
    uint32_t worker;
    int64_t order;   // grant sequence number
    int64_t offset;  // the shard's records already trained when it was granted
    int64_t used_up = -1;  // lockstep: the step its holder asked for more in (-1: not yet)
  };
  void StartEpoch(int64_t epoch);
  // Marks `lease` done; the epoch completed by it, or 0.
  int64_t Complete(uint64_t lease);

  const ShardPlan* plan_;
  const int64_t workers_, epochs_;
  const bool lockstep_;
  int64_t epoch_ = 0, completed_ = 0;
  std::vector<std::deque<int64_t>> own_;  // per worker: shards not yet handed out
  std::map<int64_t, int64_t> resume_at_;  // shards in own_ partly trained: their first record to train
  std::deque<std::pair<int64_t, int64_t>> returned_;  // (shard, offset) of dead workers', first
  std::map<uint64_t, Held> held_;         // lease -> holder
  int64_t grants_ = 0;
  std::set<uint64_t> done_;               // this epoch's leases reported done
  std::set<uint32_t> absent_;             // workers dead and not replaced
  int64_t shards_done_ = 0, records_done_ = 0;
};

}  // namespace psforge
