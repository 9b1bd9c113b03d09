// The coordinator's checkpoints and restarts: committing a step every
// server has written, picking checkpoint steps by time, the job store,
// resuming from a committed checkpoint, falling back to an older one, and
// rolling every server back when one dies (coordinator.h).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <utility>

#include "common/clock.h"
#include "coordinator/coordinator.h"

namespace psforge {

Status Coordinator::OpenStore() {
  const bool on = config_.checkpoint.enabled();
  if (!on) {
    if (options_.resume)
      return FailedPrecondition("--resume: this job writes no checkpoints (checkpoint.interval_steps and interval_s are 0)");
    return Status::Ok();
  }
  const std::string path = config_.checkpoint.dir + "/coordinator";
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Unavailable("job store " + path + ": cannot create it: " + ec.message());
  PSF_ASSIGN_OR_RETURN(store_, JobStore::Open(path));
  const nlohmann::json identity = JobIdentity(config_);
  PSF_ASSIGN_OR_RETURN(std::string stored, store_->Fingerprint());
  if (options_.resume && !stored.empty()) {
    PSF_RETURN_IF_ERROR(CheckSameJob(stored, identity, config_.checkpoint.dir));
    PSF_ASSIGN_OR_RETURN(std::vector<CommittedCheckpoint> committed, store_->Committed());
    PSF_ASSIGN_OR_RETURN(uint32_t last, store_->LastGeneration());
    if (!committed.empty()) {
      commits_.Resume(std::move(committed), last);
      Restart("resuming the job");
      return Status::Ok();
    }
    Log("--resume: no checkpoint of this job was committed in " + config_.checkpoint.dir + "; starting from the beginning");
  }
  PSF_RETURN_IF_ERROR(store_->Reset(identity.dump()));
  return store_->BeginGeneration(commits_.generation(), LeaseState{});
}

void Coordinator::CommitCheckpoint() {
  if (!members_.all_servers_registered()) return;
  const std::optional<int64_t> step = commits_.Committable(members_.servers());
  if (!step) return;
  if (store_ && !Record(store_->Commit(*step, commits_.generation(), config_.checkpoint.keep)).ok()) return;
  commits_.Commit(*step);
  if (job_over_ && outcome_.ok() && !config_.model.tables.empty())
    Log("final checkpoint at step " + std::to_string(*step) + " committed (the weights and table rows the job "
        "ended with, in " + config_.checkpoint.dir + ")");
  else if (job_over_ && outcome_.ok())
    Log("final checkpoint at step " + std::to_string(*step) + " committed (the weights the job ended with; " +
        "ps-export reads them from " + config_.checkpoint.dir + ")");
  else
    Log("checkpoint at step " + std::to_string(*step) + " committed: every server has written it");
}

void Coordinator::PlanCheckpoint() {
  if (job_over_ || !members_.all_servers_registered()) return;
  int64_t step = 0;
  for (const Member& s : members_.servers()) step = std::max(step, s.progress.step);
  commits_.Plan(Clock::now(), step);
}

Status Coordinator::Record(const Status& s) {
  if (!s.ok() && !job_over_) EndJob(Unavailable("cannot record the job's state: " + s.message()));
  return s;
}

void Coordinator::RollBack(const std::string& why, int64_t at_most) {
  std::optional<std::vector<CommittedCheckpoint>> committed;
  if (store_) {
    auto listed = store_->Committed();
    if (!listed.ok()) {
      // The job ends, in the generation it was rolling back to.
      commits_.RollBack(at_most, std::nullopt);
      (void)Record(listed.status());
      return;
    }
    committed = std::move(*listed);
  }
  commits_.RollBack(at_most, std::move(committed));
  Restart(why);
}

void Coordinator::Restart(const std::string& why) {
  commits_.BeginCollecting(Clock::now());
  const int64_t step = commits_.restore_step();
  Log(why + ": generation " + std::to_string(commits_.generation()) + " starts from " +
      (step > 0 ? "the checkpoint at step " + std::to_string(step) : "the initial weights"));
  // Every worker's work since the checkpoint is void: they join again (their
  // next answer carries the new generation).
  for (const ParkedLease& p : parked_leases_)
    ReplyError(p.peer, p.request, Aborted("the job restarts from step " + std::to_string(step)));
  parked_leases_.clear();
  pending_evaluation_ = 0;
  evaluator_ = -1;
  final_steps_ = 0;
  // Workers waiting for a place join this generation like the others.
  for (const auto& [peer, request] : members_.NewGeneration()) HandleRegister(peer, request);
}

void Coordinator::FinishRestart() {
  if (!commits_.collecting() || job_over_ || !members_.all_servers_registered()) return;
  const int64_t step = commits_.restore_step();
  for (const Member& s : members_.servers()) {
    if (s.restored != -1) continue;
    // This checkpoint is damaged or missing there: the previous committed one.
    const std::string lost = "server " + std::to_string(s.id) + " cannot load " +
                             (step > 0 ? "the checkpoint at step " + std::to_string(step)
                                       : std::string("the initial weights")) +
                             " (its log says why)";
    if (!commits_.FallBack())
      return EndJob(DataLoss(lost + ", and no earlier committed checkpoint is left in " + config_.checkpoint.dir));
    return Restart(lost + "; falling back to the previous committed checkpoint");
  }
  const auto workers = static_cast<std::size_t>(config_.cluster.workers);
  for (const Member& s : members_.servers())
    if (s.state != MemberState::kActive || s.restored != step ||
        (step > 0 && s.restored_positions.size() < workers))
      return;
  LeaseState state;
  if (step > 0) {
    const uint32_t from = commits_.GenerationOf(step);
    auto base = store_->Base(from);
    auto grants = store_->Grants(from);
    if (!Record(base.status()).ok() || !Record(grants.status()).ok()) return;
    // Each worker's position at the checkpoint: the earliest any server has
    // (in BSP they agree; under SSP a server may have taken a later push).
    std::map<uint64_t, std::size_t> order;  // lease -> grant index
    for (std::size_t i = 0; i < grants->size(); ++i) order[(*grants)[i].lease] = i;
    auto rank = [&](const DataPosition& p) {
      auto o = order.find(p.lease);
      return std::make_pair(o == order.end() ? -1 : static_cast<int64_t>(o->second), p.lease_offset);
    };
    std::map<uint32_t, DataPosition> positions;
    for (const Member& s : members_.servers())
      for (const auto& [w, p] : s.restored_positions)
        if (!positions.count(w) || rank(p) < rank(positions[w])) positions[w] = p;
    state = ReplayLeases(plan_, config_.training.epochs, *base, *grants, positions);
  }
  leases_.Restore(state);
  report_.RestoreHistory({});  // the evaluations after the checkpoint are void, even if the store fails below
  std::vector<EvaluationRecord> kept;
  if (store_) {
    if (!Record(store_->ForgetCommitsAfter(step)).ok() ||
        !Record(store_->BeginGeneration(commits_.generation(), state)).ok())
      return;
    auto evaluations = store_->Evaluations();
    if (!Record(evaluations.status()).ok()) return;
    for (const auto& e : *evaluations)
      if (e.epoch <= leases_.epochs_completed()) kept.push_back(e);
  }
  report_.RestoreHistory(std::move(kept));
  commits_.EndCollecting(Clock::now(), config_.cluster.peer_timeout_s);
  Log("generation " + std::to_string(commits_.generation()) + ": every server has loaded " +
      (step > 0 ? "the checkpoint at step " + std::to_string(step) : "the initial weights") +
      "; the data resumes in epoch " + std::to_string(std::min(state.epoch, config_.training.epochs)) + " with " +
      std::to_string(state.done.size()) + " of " + std::to_string(plan_.shards()) + " shards done and " +
      std::to_string(state.partial.size()) + " partly trained");
  WelcomeAll();
}

}  // namespace psforge
