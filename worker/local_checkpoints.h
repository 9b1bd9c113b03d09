// LocalCheckpoints: ps-train's checkpoints, in the cluster's store format,
// so that `ps-train --resume` continues a killed run and ps-export and
// ps-generate read a ps-train run as they read a cluster's.
//
// <dir>/coordinator is a JobStore (coordinator/job_store.h) holding the
// job's identity (as a job of 1 server and 1 worker), the committed steps
// and the epoch evaluations; <dir>/server-0 is a ParamStore
// (paramserver/param_store.h) whose checkpoints hold the whole key space as
// one server's range: the weights, the optimizer's state and its update
// count. When an interval has passed, the weights and state are copied and
// written by a CheckpointWriter's thread while training goes on; once
// durable, the step is committed in the job store (a crash before that
// leaves the previous commit valid) and older ones are pruned. The
// end-of-job checkpoint is written before the run reports its result. The data position needs no record: ps-train's
// batches are a function of the step (the seeded shard plan), so a resumed
// run replays the plan to the step and trains exactly what the undisturbed
// run would have. Not thread-safe; one per process.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/model_spec.h"
#include "common/status.h"
#include "coordinator/job_store.h"
#include "paramserver/checkpoint_writer.h"
#include "paramserver/optimizer.h"
#include "paramserver/param_store.h"

namespace psforge {

class LocalCheckpoints {
 public:
  // Opens (creating them) the stores under config.checkpoint.dir. With
  // `resume`, a store of another job is refused naming what differs; with
  // `resume` false the stores are reset for a new job.
  static Result<std::unique_ptr<LocalCheckpoints>> Open(const JobConfig& config, const ModelSpec& spec,
                                                        bool resume);

  // The newest committed step (0: none; a resumed run then starts afresh).
  int64_t committed() const { return committed_; }
  // Loads the committed checkpoint into `weights` and `optimizer` (state
  // and update count), verified; its step, or 0 when there is none.
  Result<int64_t> Restore(std::span<float> weights, Optimizer* optimizer);
  // The evaluations recorded before the committed step, by epoch (one at
  // the committed step is done again after it: it came after the checkpoint).
  Result<std::vector<EvaluationRecord>> Evaluations() const;

  // After update `step`: starts a checkpoint when an interval is due (and
  // the previous one is written), and commits one that has become durable.
  // With `at_end`, writes `step` and commits it before returning (unless it
  // is committed already). Returns whether it started or wrote one.
  Result<bool> MaybeWrite(int64_t step, std::span<const float> weights, Optimizer& optimizer, bool at_end);
  Status RecordEvaluation(const EvaluationRecord& e) { return job_->PutEvaluation(e); }

  const std::string& dir() const { return dir_; }
  int64_t written() const { return writer_->written(); }
  double write_ms_max() const { return writer_->write_ms_max(); }

 private:
  LocalCheckpoints(const JobConfig& config, int64_t num_params, std::unique_ptr<JobStore> job,
                   std::unique_ptr<ParamStore> params);
  // Commits the step the writer has made durable, if it is new.
  Status CommitDurable();
  void Fill(ServerCheckpoint* c, int64_t step, std::span<const float> weights, Optimizer& optimizer) const;

  using Clock = std::chrono::steady_clock;
  const CheckpointOptions options_;
  const std::string dir_;
  const int64_t num_params_;
  std::unique_ptr<JobStore> job_;
  std::unique_ptr<CheckpointWriter> writer_;
  int64_t committed_ = 0;
  int64_t started_ = 0;  // the step last handed to the writer
  Clock::time_point next_due_;
};

}  // namespace psforge
