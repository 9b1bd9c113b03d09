// CheckpointCommits: the coordinator's side of checkpoints and restarts.
//
// Servers write checkpoints on their own and report the steps that are
// durable; a step is committed once every server has written it (the
// latest such step, not the oldest of their latest: a server whose write
// failed lacks that step). With checkpoints by time, every
// checkpoint.interval_s a step far enough ahead for the servers to hear of
// it first is picked (the lead grows when a pick is missed).
//
// Each start from a checkpoint is a generation of the job: a resumed job,
// a rollback after a server died (to the last committed step, or one at or
// before a given step), a fallback to the previous committed checkpoint
// when a server cannot load one. While a generation starts the servers load
// its step ("collecting"); the coordinator lets the workers in once every
// server has.
//
// It decides; the coordinator records its decisions in the job store and
// tells the members. Not thread-safe: the coordinator's loop owns it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/clock.h"
#include "common/config.h"
#include "coordinator/job_store.h"
#include "coordinator/membership.h"

namespace psforge {

class CheckpointCommits {
 public:
  CheckpointCommits(const CheckpointOptions& options, double heartbeat_interval_s)
      : options_(options), heartbeat_interval_s_(heartbeat_interval_s) {}

  uint32_t generation() const { return generation_; }
  int64_t restore_step() const { return restore_step_; }  // the step the generation started from
  int64_t committed() const { return committed_; }        // every server has written this step
  int64_t commits() const { return commits_; }
  int64_t planned() const { return planned_; }  // by time: the step picked for the next one (0: none)
  int64_t restarts() const { return restarts_; }
  int64_t resumed_from() const { return resumed_from_; }  // -1: not resumed
  bool collecting() const { return collecting_; }         // the servers are loading restore_step()
  Clock::time_point collecting_since() const { return collecting_since_; }

  // The latest step newer than committed() that every server has written
  // (nullopt: none yet).
  std::optional<int64_t> Committable(const std::vector<Member>& servers) const;
  void Commit(int64_t step);

  // By time: picks the step of the next checkpoint when the interval has
  // passed, from the servers' newest step (`step`) and their rate since the
  // last pick. The first call, once every server is in, starts the interval.
  void Plan(Clock::time_point now, int64_t step);

  // Resuming: the newest of `committed` (ascending, not empty), in the
  // generation after `last_generation`.
  void Resume(std::vector<CommittedCheckpoint> committed, uint32_t last_generation);
  // A server died or servers disagree: the next generation starts from the
  // newest committed checkpoint at or before `at_most` (the initial weights
  // if none). `committed`: the job store's list (nullopt: no store, the
  // last committed step is used).
  void RollBack(int64_t at_most, std::optional<std::vector<CommittedCheckpoint>> committed);
  // A server cannot load restore_step(): the next generation starts from
  // the previous committed checkpoint. False when there is none.
  bool FallBack();
  // The generation starts: the servers load restore_step().
  void BeginCollecting(Clock::time_point now);
  // Every server has loaded it. After a rollback, worker places not taken
  // again within `rejoin_s` are dead (RejoinDeadlinePassed).
  void EndCollecting(Clock::time_point now, double rejoin_s);
  // True once, when the rejoin deadline of a rolled-back generation passes.
  bool RejoinDeadlinePassed(Clock::time_point now);
  // The generation whose leases lead to the committed checkpoint at `step`.
  uint32_t GenerationOf(int64_t step) const;

 private:
  const CheckpointOptions options_;
  const double heartbeat_interval_s_;
  uint32_t generation_ = 1;
  int64_t restore_step_ = 0;
  int64_t committed_ = 0;
  int64_t commits_ = 0;
  int64_t planned_ = 0;
  struct {
    Clock::time_point next{}, at{};  // next pick; when the last was made
    int64_t step = 0;                // the servers' step then
    double lead = 1;                 // grows when a pick is missed
  } plan_;
  std::vector<CommittedCheckpoint> candidates_;  // committed checkpoints to try, ascending
  int64_t restarts_ = 0;
  int64_t resumed_from_ = -1;
  bool collecting_ = false;
  bool rolled_back_ = false;  // a generation of this process started from a rollback
  Clock::time_point collecting_since_{}, rejoin_deadline_{};
};

}  // namespace psforge
