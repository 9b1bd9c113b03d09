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
  const bool running = !job_over_ && started_ != Clock::time_point{};
  if (auto report = report_.CheckStall(Clock::now(), running, members_, params_))
    std::fprintf(stderr, "ps-coordinator stall: %s\n", report->c_str());
}

void Coordinator::UpdateProgress(bool force) {
  const RunReport::Totals totals = RunReport::Sum(members_.workers());
  const auto p = report_.Update(Since(created_), Elapsed(), totals,
                                {leases_.epoch(), leases_.epochs_completed(), leases_.finished()},
                                /*training=*/!job_over_, force);
  if (!p) return;
  const int64_t step = totals.step;
  nlohmann::json members = nlohmann::json::array();
  for (const auto* list : {&members_.servers(), &members_.workers()})
    for (const Member& m : *list) {
      nlohmann::json j = {{"role", RoleName(m.role)}, {"id", m.id}, {"state", MemberStateName(m.state)},
                          {"endpoint", m.endpoint}, {"step", m.progress.step}, {"samples", m.progress.samples},
                          {"last_heartbeat_s", Since(m.last_seen)}, {"pid", m.pid}};
      if (m.role == PeerRole::kServer) {
        const KeyRange r = PartitionKeys(params_, config_.cluster.servers, m.id);
        j["keys"] = {r.begin, r.end};
      }
      members.push_back(std::move(j));
    }
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
      {"generation", commits_.generation()}, {"learning_rate", ScheduledLearningRate(config_.optimizer, step)},
      {"state", state}, {"step", step}, {"epoch", p->epoch}, {"loss", totals.loss},
      {"samples", totals.samples}, {"samples_per_s", report_.rate()},
      {"bytes_pushed", totals.wire.pushed}, {"bytes_pulled", totals.wire.pulled},
      {"eta_s", p->eta_s}, {"wall_s", Elapsed()},
      {"metric", MetricName(config_)},
      {"history", report_.HistoryJson(true)}, {"members", members}, {"bad_messages", bad_messages_},
      {"checkpoints_committed", commits_.commits()}, {"checkpoint_committed_step", commits_.committed()},
      {"run_dir", options_.run_dir},
      {"peers_cut_off", limiter_.peers_cut_off()}, {"messages_dropped", limiter_.messages_dropped()}};
  if (!report_.history().empty()) snap["last_metric"] = report_.history().back().metric;
  if (!report_.stall().empty()) snap["stall"] = report_.stall();
  if (!report_.audit_line().empty()) snap["audit"] = report_.audit_line();
  if (job_over_ && !outcome_.ok()) snap["error"] = outcome_.message();
  MutexLock lock(snapshot_mu_);
  snapshot_ = std::move(snap);
}

int64_t Coordinator::CheckpointBytes() const {
  // The weights, and the optimizer's state per weight.
  const OptimizerOptions& o = config_.optimizer;
  int64_t per_weight = 1;
  switch (o.kind) {
    case OptimizerKind::kSgd: break;
    case OptimizerKind::kMomentum: case OptimizerKind::kAdaGrad: per_weight = 2; break;
    case OptimizerKind::kAdam: case OptimizerKind::kAdamW: per_weight = 3; break;
    // The squared gradients' average, the gradients' when centered, a momentum buffer.
    case OptimizerKind::kRmsProp: per_weight = 2 + o.centered + (o.momentum > 0); break;
  }
  return params_ * per_weight * static_cast<int64_t>(sizeof(float));
}

nlohmann::json Coordinator::Snapshot() const {
  MutexLock lock(snapshot_mu_);
  return snapshot_;
}

}  // namespace psforge
