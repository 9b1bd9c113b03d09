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
namespace {


}  // namespace

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
    PSF_ASSIGN_OR_RETURN(candidates_, store_->Committed());
    PSF_ASSIGN_OR_RETURN(uint32_t last, store_->LastGeneration());
    if (!candidates_.empty()) {
      generation_ = last + 1;
      restore_step_ = candidates_.back().step;
      resumed_from_ = restore_step_;
      Restart("resuming the job");
      return Status::Ok();
    }
    Log("--resume: no checkpoint of this job was committed in " + config_.checkpoint.dir + "; starting from the beginning");
  }
  PSF_RETURN_IF_ERROR(store_->Reset(identity.dump()));
  return store_->BeginGeneration(generation_, LeaseState{});
}

void Coordinator::CommitCheckpoint() {
  if (static_cast<int64_t>(servers_.size()) < config_.cluster.servers || collecting_) return;
  // The latest step every server has written (not the oldest of their
  // latest: a server whose write failed lacks that step).
  int64_t step = -1;
  for (int64_t candidate : servers_[0].durable)
    if (candidate > committed_checkpoint_ &&
        std::all_of(servers_.begin(), servers_.end(), [&](const Member& s) { return s.durable.count(candidate) > 0; }))
      step = candidate;
  if (step < 0) return;
  if (store_ && !Record(store_->Commit(step, generation_, config_.checkpoint.keep)).ok()) return;
  committed_checkpoint_ = step;
  ++checkpoints_committed_;
  if (job_over_ && outcome_.ok())
    Log("final checkpoint at step " + std::to_string(step) + " committed (the weights the job ended with; " +
        "ps-export reads them from " + config_.checkpoint.dir + ")");
  else
    Log("checkpoint at step " + std::to_string(step) + " committed: every server has written it");
}

void Coordinator::PlanCheckpoint() {
  const double interval = config_.checkpoint.interval_s;
  if (interval <= 0 || collecting_ || job_over_ || static_cast<int64_t>(servers_.size()) < config_.cluster.servers)
    return;
  auto& plan = checkpoint_plan_;
  const auto now = Clock::now();
  int64_t step = 0;
  for (const Member& s : servers_) step = std::max(step, s.progress.step);
  const bool first = plan.next == Clock::time_point{};  // the first interval starts once every server is in
  if (!first && (now < plan.next || checkpoint_at_ > step)) return;  // not yet, or the last pick is still ahead
  const auto last = std::exchange(plan, {now + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(interval)),
                                         now, step, plan.lead});
  if (first) return;
  // The last pick passed uncommitted: a server heard of it too late (or is
  // still writing it). Aim further ahead from now on.
  if (checkpoint_at_ > committed_checkpoint_) plan.lead = std::min(plan.lead * 2, 16.0);
  // A server hears of the pick with its next heartbeat: aim two heartbeat
  // intervals ahead at the servers' current rate.
  const double seconds = std::chrono::duration<double>(now - last.at).count();
  const double rate = seconds > 0 ? static_cast<double>(step - last.step) / seconds : 0;
  checkpoint_at_ = step + 1 + static_cast<int64_t>(std::ceil(rate * 2 * config_.cluster.heartbeat_interval_s * plan.lead));
}

Status Coordinator::Record(const Status& s) {
  if (!s.ok() && !job_over_) EndJob(Unavailable("cannot record the job's state: " + s.message()));
  return s;
}

void Coordinator::RollBack(const std::string& why, int64_t at_most) {
  ++generation_;
  ++restarts_;
  rolled_back_ = true;
  restore_step_ = std::min(committed_checkpoint_, at_most);
  if (store_) {
    auto committed = store_->Committed();
    if (!Record(committed.status()).ok()) return;
    candidates_ = std::move(*committed);
  }
  // The newest committed one at or before the step asked for.
  std::optional<int64_t> found;
  for (const auto& c : candidates_)
    if (c.step <= restore_step_) found = c.step;
  if (store_ && restore_step_ > 0) restore_step_ = found.value_or(0);
  Restart(why);
}

void Coordinator::Restart(const std::string& why) {
  collecting_ = true;
  collecting_since_ = Clock::now();
  Log(why + ": generation " + std::to_string(generation_) + " starts from " +
      (restore_step_ > 0 ? "the checkpoint at step " + std::to_string(restore_step_) : "the initial weights"));
  for (Member& s : servers_) {
    s.restored = -2;
    s.restored_positions.clear();
    s.positions.clear();
    s.audit.clear();
    s.durable.clear();
  }
  // Every worker's work since the checkpoint is void: they join again (their
  // next answer carries the new generation).
  for (const ParkedLease& p : parked_leases_)
    ReplyError(p.peer, p.request, Aborted("the job restarts from step " + std::to_string(restore_step_)));
  parked_leases_.clear();
  workers_.clear();
  removed_.clear();
  for (Member& s : servers_) s.removals_known = 0;
  // Workers waiting for a place join this generation like the others.
  auto waiting = std::move(waiting_workers_);
  waiting_workers_.clear();
  for (const auto& [peer, request] : waiting) HandleRegister(peer, request);
  awaiting_positions_.clear();
  pending_evaluation_ = 0;
  evaluator_ = -1;
  final_steps_ = 0;
  committed_checkpoint_ = restore_step_;
  checkpoint_at_ = 0;
  checkpoint_plan_.next = {};
}

void Coordinator::FinishRestart() {
  if (!collecting_ || job_over_ || static_cast<int64_t>(servers_.size()) < config_.cluster.servers) return;
  for (const Member& s : servers_) {
    if (s.restored != -1) continue;
    // This checkpoint is damaged or missing there: the previous committed one.
    std::optional<CommittedCheckpoint> older;
    for (const auto& c : candidates_)
      if (c.step < restore_step_) older = c;
    const std::string lost = "server " + std::to_string(s.id) + " cannot load " +
                             (restore_step_ > 0 ? "the checkpoint at step " + std::to_string(restore_step_)
                                                : std::string("the initial weights")) +
                             " (its log says why)";
    if (!older)
      return EndJob(DataLoss(lost + ", and no earlier committed checkpoint is left in " + config_.checkpoint.dir));
    ++generation_;
    restore_step_ = older->step;
    if (resumed_from_ >= 0) resumed_from_ = restore_step_;
    return Restart(lost + "; falling back to the previous committed checkpoint");
  }
  const auto workers = static_cast<std::size_t>(config_.cluster.workers);
  for (const Member& s : servers_)
    if (s.state != MemberState::kActive || s.restored != restore_step_ ||
        (restore_step_ > 0 && s.restored_positions.size() < workers))
      return;
  LeaseState state;
  if (restore_step_ > 0) {
    uint32_t from = 0;
    for (const auto& c : candidates_)
      if (c.step == restore_step_) from = c.generation;
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
    for (const Member& s : servers_)
      for (const auto& [w, p] : s.restored_positions)
        if (!positions.count(w) || rank(p) < rank(positions[w])) positions[w] = p;
    state = ReplayLeases(plan_, config_.training.epochs, *base, *grants, positions);
  }
  leases_.Restore(state);
  history_.clear();
  if (store_) {
    if (!Record(store_->ForgetCommitsAfter(restore_step_)).ok() ||
        !Record(store_->BeginGeneration(generation_, state)).ok())
      return;
    auto evaluations = store_->Evaluations();
    if (!Record(evaluations.status()).ok()) return;
    for (const auto& e : *evaluations)
      if (e.epoch <= leases_.epochs_completed()) history_.push_back(e);
  }
  collecting_ = false;
  if (rolled_back_) rejoin_deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                          std::chrono::duration<double>(config_.cluster.peer_timeout_s));
  Log("generation " + std::to_string(generation_) + ": every server has loaded " +
      (restore_step_ > 0 ? "the checkpoint at step " + std::to_string(restore_step_) : "the initial weights") +
      "; the data resumes in epoch " + std::to_string(std::min(state.epoch, config_.training.epochs)) + " with " +
      std::to_string(state.done.size()) + " of " + std::to_string(plan_.shards()) + " shards done and " +
      std::to_string(state.partial.size()) + " partly trained");
  WelcomeAll();
}

}  // namespace psforge
