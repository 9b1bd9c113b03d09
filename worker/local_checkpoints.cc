#include "worker/local_checkpoints.h"

#include <algorithm>
#include <filesystem>

#include "common/clock.h"

namespace psforge {

LocalCheckpoints::LocalCheckpoints(const JobConfig& config, int64_t num_params, std::unique_ptr<JobStore> job,
                                   std::unique_ptr<ParamStore> params)
    : options_(config.checkpoint),
      dir_(config.checkpoint.dir),
      num_params_(num_params),
      job_(std::move(job)),
      writer_(std::make_unique<CheckpointWriter>(
          std::move(params), config.checkpoint.keep,
          Milliseconds(config.checkpoint.write_timeout_s))),
      next_due_(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(config.checkpoint.interval_s))) {}

Result<std::unique_ptr<LocalCheckpoints>> LocalCheckpoints::Open(const JobConfig& config, const ModelSpec& spec,
                                                                 bool resume) {
  const std::string& dir = config.checkpoint.dir;
  if (!config.checkpoint.enabled() || dir.empty())
    return FailedPrecondition("this job writes no checkpoints (checkpoint.interval_steps and interval_s are 0)");
  for (const char* part : {"coordinator", "server-0"}) {
    std::error_code ec;
    std::filesystem::create_directories(dir + "/" + part, ec);
    if (ec) return Unavailable("checkpoint store " + dir + "/" + part + ": cannot create it: " + ec.message());
  }
  PSF_ASSIGN_OR_RETURN(auto job, JobStore::Open(dir + "/coordinator"));
  PSF_ASSIGN_OR_RETURN(auto params, ParamStore::OpenRocksDb(dir + "/server-0"));
  // One process is a job of one server (owning every key) and one worker.
  JobConfig as_job = config;
  as_job.cluster.servers = 1;
  as_job.cluster.workers = 1;
  const nlohmann::json identity = JobIdentity(as_job);
  std::unique_ptr<LocalCheckpoints> c(
      new LocalCheckpoints(config, spec.num_params(), std::move(job), std::move(params)));
  PSF_ASSIGN_OR_RETURN(std::string stored, c->job_->Fingerprint());
  if (resume && !stored.empty()) {
    PSF_RETURN_IF_ERROR(CheckSameJob(stored, identity, dir));
    PSF_ASSIGN_OR_RETURN(auto commits, c->job_->Committed());
    if (!commits.empty()) c->committed_ = commits.back().step;
    return c;
  }
  PSF_RETURN_IF_ERROR(c->job_->Reset(identity.dump()));
  PSF_RETURN_IF_ERROR(c->writer_->RestoreTo(0).status());  // a new job: no checkpoint of another one stays
  PSF_RETURN_IF_ERROR(c->job_->BeginGeneration(1, LeaseState{}));
  return c;
}

Result<int64_t> LocalCheckpoints::Restore(std::span<float> weights, Optimizer* optimizer) {
  if (committed_ == 0) return int64_t{0};
  // Also forgets checkpoints written after the commit (the run died before committing them).
  PSF_ASSIGN_OR_RETURN(ServerCheckpoint c, writer_->RestoreTo(committed_));
  const std::span<float> state = optimizer->state();
  if (c.range.begin != 0 || c.range.end != num_params_ || c.weights.size() != weights.size() ||
      c.optimizer_state.size() != state.size())
    return DataLoss("checkpoint " + std::to_string(committed_) + " in " + writer_->store().where() +
                    " holds keys [" + std::to_string(c.range.begin) + ", " + std::to_string(c.range.end) + ") and " +
                    std::to_string(c.optimizer_state.size()) + " optimizer values; this model has " +
                    std::to_string(num_params_) + " parameters and " + std::to_string(state.size()) +
                    " optimizer values");
  std::copy(c.weights.begin(), c.weights.end(), weights.begin());
  std::copy(c.optimizer_state.begin(), c.optimizer_state.end(), state.begin());
  optimizer->set_steps(c.optimizer_steps);
  started_ = committed_;
  return c.version;
}

Result<std::vector<EvaluationRecord>> LocalCheckpoints::Evaluations() const {
  PSF_ASSIGN_OR_RETURN(auto all, job_->Evaluations());
  std::erase_if(all, [&](const EvaluationRecord& e) { return e.step >= committed_ || e.final; });
  return all;
}

void LocalCheckpoints::Fill(ServerCheckpoint* c, int64_t step, std::span<const float> weights,
                            Optimizer& optimizer) const {
  c->id = step;
  c->version = step;
  c->range = {0, num_params_};
  c->optimizer_steps = optimizer.steps();
  c->weights.assign(weights.begin(), weights.end());  // the buffers are reused from the second on
  const std::span<float> state = optimizer.state();
  c->optimizer_state.assign(state.begin(), state.end());
  c->positions.clear();
  c->audit.clear();
}

Status LocalCheckpoints::CommitDurable() {
  const int64_t durable = writer_->durable();
  if (durable <= committed_ || durable != started_) return Status::Ok();
  PSF_RETURN_IF_ERROR(job_->Commit(durable, 1, options_.keep));
  committed_ = durable;
  writer_->SetCommitted(durable);
  return Status::Ok();
}

Result<bool> LocalCheckpoints::MaybeWrite(int64_t step, std::span<const float> weights, Optimizer& optimizer,
                                          bool at_end) {
  PSF_RETURN_IF_ERROR(CommitDurable());
  if (at_end) {
    PSF_RETURN_IF_ERROR(writer_->Drain());
    PSF_RETURN_IF_ERROR(CommitDurable());
    if (step == committed_ || step == 0) return false;
    ServerCheckpoint* c = writer_->Begin();
    Fill(c, step, weights, optimizer);
    started_ = step;
    writer_->Commit();
    PSF_RETURN_IF_ERROR(writer_->Drain());
    if (writer_->durable() != step)
      return Unavailable("the end-of-job checkpoint at step " + std::to_string(step) + " could not be written to " +
                         writer_->store().where() + " (the error is above); the last committed one is at step " +
                         std::to_string(committed_));
    PSF_RETURN_IF_ERROR(CommitDurable());
    return true;
  }
  const auto now = Clock::now();
  const bool due = (options_.interval_steps > 0 && step % options_.interval_steps == 0) ||
                   (options_.interval_s > 0 && now >= next_due_);
  if (!due || step <= started_) return false;
  ServerCheckpoint* c = writer_->Begin();
  if (c == nullptr) return false;  // the previous one is still being written: try at the next step
  if (options_.interval_s > 0)
    next_due_ = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options_.interval_s));
  Fill(c, step, weights, optimizer);
  started_ = step;
  writer_->Commit();
  return true;
}

}  // namespace psforge
