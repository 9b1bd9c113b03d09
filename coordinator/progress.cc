// The coordinator's view of progress: stalled steps reported, the progress
// line and records, and the snapshot /api/status and /metrics serve
// (coordinator.h).
#include <algorithm>
#include <cstdio>

#include "common/model_spec.h"
#include "coordinator/coordinator.h"
#include "coordinator/coordinator_util.h"

namespace psforge {

using namespace coordinator_util;

void Coordinator::ReportStall() {
  if (job_over_ || started_ == Clock::time_point{}) {
    stall_report_.clear();
    return;
  }
  int64_t min_step = -1;
  for (const Member& w : workers_)
    if (w.state == MemberState::kActive)
      min_step = min_step < 0 ? w.progress.step : std::min(min_step, w.progress.step);
  const auto now = Clock::now();
  if (min_step != stall_step_) {
    stall_step_ = min_step;
    stall_report_.clear();
    stall_since_ = now;
    next_stall_report_ = now + Seconds(config_.cluster.stall_report_s);
    return;
  }
  if (min_step < 0 || now < next_stall_report_) return;
  next_stall_report_ = now + Seconds(config_.cluster.stall_report_s);
  std::string behind, waiting;
  for (const Member& w : workers_)
    if (w.state == MemberState::kActive && w.progress.step == min_step)
      behind += (behind.empty() ? "" : ", ") + std::to_string(w.id) + " (last heard " +
                Fixed(Since(w.last_seen), 1) + " s ago)";
  for (const Member& s : servers_) {
    KeyRange r = PartitionKeys(params_, config_.cluster.servers, s.id);
    if (s.progress.step <= min_step)
      waiting += (waiting.empty() ? "" : ", ") + std::to_string(s.id) + " keys [" + std::to_string(r.begin) +
                 ", " + std::to_string(r.end) + ") at version " + std::to_string(s.progress.step);
  }
  char line[160];
  std::snprintf(line, sizeof line, "step %lld has waited %.1f s", (long long)min_step, Since(stall_since_));
  stall_report_ = std::string(line) + "; workers behind: " + (behind.empty() ? "none" : behind) +
                  "; servers waiting: " + (waiting.empty() ? "none" : waiting);
  std::fprintf(stderr, "ps-coordinator stall: %s\n", stall_report_.c_str());
}

void Coordinator::UpdateProgress(bool force) {
  const double now = Since(created_);
  if (!force && now - last_rate_time_ < std::max(0.2, config_.training.progress_interval_s / 4)) return;
  int64_t step = 0, samples = 0;
  double loss = 0;
  int losses = 0;
  for (const Member& w : workers_) {
    step = std::max(step, w.progress.step);
    samples += w.progress.samples;
    if (w.state == MemberState::kActive && w.progress.samples > 0) loss += w.progress.loss, ++losses;
  }
  if (losses > 0) loss /= losses;
  const double dt = now - last_rate_time_;
  if (dt > 0 && samples >= last_rate_samples_) {
    const double rate = (samples - last_rate_samples_) / dt;
    last_rate_ = last_rate_samples_ == 0 ? rate : 0.7 * last_rate_ + 0.3 * rate;
  }
  last_rate_time_ = now;
  last_rate_samples_ = samples;
  int64_t total = records_ * config_.training.epochs;
  if (config_.training.max_steps > 0)
    total = std::min(total, config_.training.max_steps * config_.training.batch_size);
  ProgressState p;
  p.epoch = std::min(leases_.epoch(), config_.training.epochs);
  p.epochs = config_.training.epochs;
  p.step = step;
  p.epoch_fraction = leases_.finished() ? 1.0
      : std::clamp(static_cast<double>(samples - leases_.epochs_completed() * records_) / records_, 0.0, 1.0);
  p.loss = loss;
  p.samples_per_s = last_rate_;
  p.eta_s = static_cast<double>(std::max<int64_t>(0, total - samples)) / std::max(1.0, last_rate_);
  timeline_step_ = step;
  if (samples > 0 && !job_over_) {
    timeline_.AddPoint({Elapsed(), step, loss, last_rate_, ScheduledLearningRate(config_.optimizer, step)});
    progress_.Step(p, now, force);
    records_out_.LossPoint(step, loss);  // the plot's curve, finer than the records
    if (now - last_record_time_ >= config_.training.progress_interval_s) {
      last_record_time_ = now;
      records_out_.Progress(Elapsed(), step, p.epoch, loss, last_rate_, samples);
    }
  }
  nlohmann::json members = nlohmann::json::array();
  auto state_name = [](MemberState s) {
    switch (s) {
      case MemberState::kJoining: return "joining";
      case MemberState::kActive: return "active";
      case MemberState::kFinished: return "finished";
      case MemberState::kDead: return "dead";
    }
    return "?";
  };
  for (const auto* list : {&servers_, &workers_})
    for (const Member& m : *list) {
      nlohmann::json j = {{"role", RoleName(m.role)}, {"id", m.id}, {"state", state_name(m.state)},
                          {"endpoint", m.endpoint}, {"step", m.progress.step}, {"samples", m.progress.samples},
                          {"last_heartbeat_s", Since(m.last_seen)}, {"pid", m.pid}};
      if (m.role == PeerRole::kServer) {
        const KeyRange r = PartitionKeys(params_, config_.cluster.servers, m.id);
        j["keys"] = {r.begin, r.end};
      }
      members.push_back(std::move(j));
    }
  nlohmann::json history = nlohmann::json::array();
  for (const auto& e : history_)
    history.push_back({{"epoch", e.epoch}, {"step", e.step}, {"train_loss", e.train_loss},
                       {MetricName(config_), e.metric}, {"wall_s", e.time_s}, {"final", e.final}});
  const char* state = job_over_ ? (outcome_.ok() ? "done" : "failed")
                      : started_ == Clock::time_point{} ? "waiting for members" : "training";
  nlohmann::json snap = {
      {"job", {{"config", config_.path}, {"model", ModelKindName(config_.model.kind)}, {"parameters", params_},
               {"records", records_}, {"epochs", config_.training.epochs},
               {"consistency", ConsistencyName(config_.cluster.consistency)},
               {"servers", config_.cluster.servers}, {"workers", config_.cluster.workers},
               {"batch_size", config_.training.batch_size}, {"seed", config_.training.seed},
               {"optimizer", OptimizerKindName(config_.optimizer.kind)},
               {"learning_rate", config_.optimizer.learning_rate},
               {"lr_schedule", LrScheduleName(config_.optimizer.lr_schedule)},
               {"checkpoint_interval_s", config_.checkpoint.interval_s},
               {"checkpoint_interval_steps", config_.checkpoint.interval_steps},
               {"checkpoint_bytes", CheckpointBytes()}}},
      {"generation", generation_}, {"learning_rate", ScheduledLearningRate(config_.optimizer, step)},
      {"state", state}, {"step", step}, {"epoch", p.epoch}, {"loss", loss}, {"samples", samples},
      {"samples_per_s", last_rate_}, {"eta_s", p.eta_s}, {"wall_s", Elapsed()},
      {"metric", MetricName(config_)},
      {"history", history}, {"members", members}, {"bad_messages", bad_messages_},
      {"checkpoints_committed", checkpoints_committed_}, {"checkpoint_committed_step", committed_checkpoint_},
      {"run_dir", options_.run_dir},
      {"peers_cut_off", limiter_.peers_cut_off()}, {"messages_dropped", limiter_.messages_dropped()}};
  if (!history_.empty()) snap["last_metric"] = history_.back().metric;
  if (!stall_report_.empty()) snap["stall"] = stall_report_;
  if (!audit_.empty()) snap["audit"] = audit_;
  if (job_over_ && !outcome_.ok()) snap["error"] = outcome_.message();
  MutexLock lock(snapshot_mu_);
  snapshot_ = std::move(snap);
}

int64_t Coordinator::CheckpointBytes() const {
  // The weights, and the optimizer's state per weight.
  int64_t per_weight = 1;
  switch (config_.optimizer.kind) {
    case OptimizerKind::kSgd: break;
    case OptimizerKind::kMomentum: case OptimizerKind::kAdaGrad: per_weight = 2; break;
    case OptimizerKind::kAdam: per_weight = 3; break;
  }
  return params_ * per_weight * static_cast<int64_t>(sizeof(float));
}

nlohmann::json Coordinator::Snapshot() const {
  MutexLock lock(snapshot_mu_);
  return snapshot_;
}

}  // namespace psforge
