// Where a trainer's records come from, step by step.
//
// LocalShardSource walks a ShardPlan alone (ps-train): every epoch's shards
// in order, batches of the whole batch size, the last batch of an epoch
// short. LeaseSource (a cluster worker) leases shards from the coordinator,
// reports them done once their records are pushed, publishes progress in
// heartbeats from a thread of its own, and learns from the coordinator when
// to evaluate and when to stop. Neither is thread-safe; one trainer each.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "common/coordinator_link.h"
#include "common/mutex.h"
#include "common/shard_plan.h"
#include "common/status.h"

namespace psforge {

struct BatchPlan {
  int64_t rows = 0;            // records in this step's batch; 0 is an empty step (BSP keeps pace)
  bool stop = false;           // no more steps: run the final evaluation
  int64_t evaluate_epoch = 0;  // > 0: first evaluate the current weights as this epoch's result
  int64_t epoch = 0;           // the epoch being trained, for progress
  double epoch_fraction = 0;   // of it done, for progress
  uint64_t lease = 0;          // the lease the batch ends in (0: none), and how many of
  int64_t lease_offset = 0;    // its shard's records are trained with this batch
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // The plan of step `step`; its record ids go to `rows` (at most `max_rows`).
  virtual Result<BatchPlan> Next(int64_t step, int64_t max_rows, std::vector<int64_t>* rows) = 0;
  // Step `step`'s gradient has been pushed; the servers have applied the
  // first `applied_steps` steps for certain; `wire`: the payload bytes
  // moved so far.
  virtual void Pushed(int64_t /*step*/, double /*loss*/, int64_t /*rows*/, int64_t /*applied_steps*/,
                      const WireBytes& /*wire*/) {}
  // An evaluation's result; `final` after the last step.
  // `test_logloss`: a ctr model's, besides its AUC (0 for other models).
  virtual Status Report(int64_t /*epoch*/, int64_t /*step*/, double /*metric*/, bool /*final*/,
                        double /*train_loss*/, double /*test_logloss*/) {
    return Status::Ok();
  }
  // After stop (and after leaving the servers): the weight version to
  // evaluate; -1 means the weights at hand, and kNoFinalEvaluation that
  // another process evaluates. A cluster worker may wait here until the
  // coordinator knows which worker evaluates (the last one to finish, or
  // one that already finished when the last one died).
  static constexpr int64_t kNoFinalEvaluation = -2;
  virtual Result<int64_t> FinalVersion() { return int64_t{-1}; }
  virtual int64_t epochs() const = 0;
  // The step training starts at (a job resumed from a checkpoint starts there).
  virtual int64_t first_step() const { return 0; }
  // The job's expected total of records, for the ETA (0 when unknown).
  virtual int64_t total_records() const = 0;
};

class LocalShardSource final : public BatchSource {
 public:
  // A run resumed at `first_step` replays the plan to it (batches of
  // `batch_size`): step by step the same batches as an undisturbed run.
  LocalShardSource(const ShardPlan* plan, int64_t epochs, int64_t max_steps, int64_t first_step = 0,
                   int64_t batch_size = 0);
  Result<BatchPlan> Next(int64_t step, int64_t max_rows, std::vector<int64_t>* rows) override;
  int64_t epochs() const override { return epochs_; }
  int64_t first_step() const override { return first_step_; }
  int64_t total_records() const override { return plan_->records() * epochs_; }

 private:
  const ShardPlan* plan_;
  const int64_t epochs_, max_steps_;
  int64_t first_step_ = 0;
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  std::size_t next_shard_ = 0;
  std::vector<int64_t> shard_records_;
  std::size_t shard_pos_ = 0;
  int64_t epoch_done_ = 0;
};

// Heartbeats to the coordinator from a thread of its own, so a worker that
// waits on a slow step is not taken for dead.
class HeartbeatThread {
 public:
  HeartbeatThread(std::unique_ptr<CoordinatorChannel> channel, const ClusterOptions& cluster,
                  double lost_after_s);
  ~HeartbeatThread();
  void Publish(const MemberProgress& progress);
  // Not ok once the coordinator stopped the job or has gone silent, or
  // Aborted once the job has restarted from a checkpoint (rejoin).
  Status status() const;

 private:
  void Run();

  std::unique_ptr<CoordinatorChannel> channel_;
  const std::chrono::steady_clock::duration interval_, lost_after_;
  mutable Mutex mu_;
  CondVar cv_;
  MemberProgress progress_ PSF_GUARDED_BY(mu_);
  Status status_ PSF_GUARDED_BY(mu_);
  bool closing_ PSF_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class LeaseSource final : public BatchSource {
 public:
  // `channel` has joined the job; `heartbeat` has beaten since.
  // It starts at `first_step` (the coordinator's welcome says which).
  LeaseSource(const ShardPlan* plan, const JobConfig& config, CoordinatorChannel* channel,
              std::unique_ptr<HeartbeatThread> heartbeat, int64_t first_step);

  Result<BatchPlan> Next(int64_t step, int64_t max_rows, std::vector<int64_t>* rows) override;
  void Pushed(int64_t step, double loss, int64_t rows, int64_t applied_steps, const WireBytes& wire) override;
  Status Report(int64_t epoch, int64_t step, double metric, bool final, double train_loss,
                double test_logloss) override;
  Result<int64_t> FinalVersion() override;
  int64_t epochs() const override { return epochs_; }
  int64_t total_records() const override { return 0; }
  int64_t first_step() const override { return first_step_; }

 private:
  Result<msg::LeaseReply> Lease(int64_t step, bool finished);

  const ShardPlan* plan_;
  CoordinatorChannel* channel_;
  const int64_t epochs_, max_steps_, first_step_;
  const std::chrono::steady_clock::duration timeout_;
  const bool lockstep_;  // BSP: ask for the next lease as soon as one is used up
  std::unique_ptr<HeartbeatThread> heartbeat_;
  // The shard being read, and the leases whose records are all handed out,
  // with the step of their last record (done once that step is applied).
  uint64_t lease_ = 0;
  int64_t epoch_ = 0;
  bool holding_ = false;
  std::vector<int64_t> shard_records_;
  std::size_t shard_pos_ = 0;
  std::vector<std::pair<uint64_t, int64_t>> consumed_;
  int64_t applied_steps_ = 0;
  int64_t final_version_ = 0;  // as the coordinator said: > 0 evaluate it, -1 not this worker, 0 undecided
  bool stopped_ = false;
  int64_t last_step_ = 0;  // steps trained when it stopped
  MemberProgress progress_;
  int64_t trained_steps_ = 0;
};

}  // namespace psforge
