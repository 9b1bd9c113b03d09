#include "coordinator/run_report.h"

#include <algorithm>
#include <cmath>

#include "common/ctr_metrics.h"
#include "common/model_spec.h"
#include "coordinator/coordinator_util.h"

namespace psforge {

using coordinator_util::Fixed;
using coordinator_util::Since;

AuditResult AuditServers(const std::vector<Member>& servers, int64_t records, int64_t epochs) {
  const auto n = static_cast<uint64_t>(records);
  // Every record id in [0, N) once: sums mod 2^64, as the servers add them.
  const uint64_t id_sum = n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2);
  uint64_t f[3] = {n - 1, n, 2 * n - 1};  // (N-1)N(2N-1)/6: divide exactly, then wrap
  (f[0] % 2 == 0 ? f[0] : f[1]) /= 2;
  for (uint64_t& x : f)
    if (x % 3 == 0) {
      x /= 3;
      break;
    }
  const uint64_t id_square_sum = f[0] * f[1] * f[2];
  nlohmann::json problems = nlohmann::json::array();
  for (const Member& s : servers) {
    const std::string who = "server " + std::to_string(s.id);
    if (!s.farewell) problems.push_back(who + " sent no final report");
    for (int64_t e = 1; e <= epochs; ++e) {
      auto a = s.audit.find(e);
      if (a == s.audit.end()) {
        problems.push_back(who + " reported no records for epoch " + std::to_string(e));
      } else if (a->second.records != records || a->second.id_sum != id_sum ||
                 a->second.id_square_sum != id_square_sum) {
        problems.push_back(who + " applied " + std::to_string(a->second.records) + " records in epoch " +
                           std::to_string(e) + " (expected " + std::to_string(records) + ")" +
                           (a->second.records == records ? ", but not each one once (their id sums differ)" : ""));
      }
    }
  }
  AuditResult audit;
  audit.exactly_once = problems.empty();
  if (problems.empty() && epochs == 0)
    audit.lines.push_back("audit: no epoch was completed; nothing to check");
  else if (problems.empty())
    audit.lines.push_back("audit: every server applied each of the " + std::to_string(records) +
                          " records exactly once in " +
                          (epochs == 1 ? "the epoch" : "each of the " + std::to_string(epochs) + " epochs"));
  for (const auto& p : problems) audit.lines.push_back("audit: " + p.get<std::string>());
  nlohmann::json reported = nlohmann::json::array();  // per server, per epoch
  for (const Member& s : servers) {
    nlohmann::json epochs_of = nlohmann::json::array();
    for (const auto& [e, a] : s.audit)
      epochs_of.push_back({{"epoch", e}, {"records", a.records}, {"id_sum", a.id_sum},
                           {"id_square_sum", a.id_square_sum}});
    reported.push_back(epochs_of);
  }
  audit.json = {{"epochs_checked", epochs}, {"exactly_once", audit.exactly_once}, {"problems", problems},
                {"servers", reported}};
  return audit;
}

RunReport::RunReport(const JobConfig& config, int64_t records, std::FILE* out, const std::string& run_dir)
    : config_(config),
      records_(records),
      progress_(out, config.training.progress_interval_s),
      records_out_(run_dir, MetricName(config), SecondMetricName(config) ? SecondMetricName(config) : "") {}

void RunReport::Log(double elapsed_s, const std::string& line) {
  progress_.Line(line);
  timeline_.AddEvent(elapsed_s, timeline_step_, line);
  if (line.rfind("audit:", 0) == 0) audit_ = line;
}

RunReport::Totals RunReport::Sum(const std::vector<Member>& workers) {
  Totals t;
  int losses = 0;
  for (const Member& w : workers) {
    t.step = std::max(t.step, w.progress.step);
    t.samples += w.progress.samples;
    t.wire.pushed += w.progress.wire.pushed;
    t.wire.pulled += w.progress.wire.pulled;
    if (w.state == MemberState::kActive && w.progress.samples > 0) t.loss += w.progress.loss, ++losses;
  }
  if (losses > 0) t.loss /= losses;
  return t;
}

std::optional<ProgressState> RunReport::Update(double now_s, double elapsed_s, const Totals& t, const Epochs& epochs,
                                               bool training, bool force) {
  if (!force && now_s - last_rate_time_ < std::max(0.2, config_.training.progress_interval_s / 4))
    return std::nullopt;
  const double dt = now_s - last_rate_time_;
  if (dt > 0 && t.samples >= last_rate_samples_) {
    const double rate = (t.samples - last_rate_samples_) / dt;
    rate_ = last_rate_samples_ == 0 ? rate : 0.7 * rate_ + 0.3 * rate;
  }
  last_rate_time_ = now_s;
  last_rate_samples_ = t.samples;
  int64_t total = records_ * config_.training.epochs;
  if (config_.training.max_steps > 0)
    total = std::min(total, config_.training.max_steps * config_.training.batch_size);
  ProgressState p;
  p.epoch = std::min(epochs.current, config_.training.epochs);
  p.epochs = config_.training.epochs;
  p.step = t.step;
  p.epoch_fraction =
      epochs.finished ? 1.0
                      : std::clamp(static_cast<double>(t.samples - epochs.completed * records_) /
                                       static_cast<double>(std::max<int64_t>(1, records_)), 0.0, 1.0);
  p.loss = t.loss;
  p.samples_per_s = rate_;
  p.eta_s = static_cast<double>(std::max<int64_t>(0, total - t.samples)) / std::max(1.0, rate_);
  timeline_step_ = t.step;
  if (t.samples > 0 && training) {
    timeline_.AddPoint({elapsed_s, t.step, t.loss, rate_, ScheduledLearningRate(config_.optimizer, t.step)});
    progress_.Step(p, now_s, force);
    records_out_.LossPoint(t.step, t.loss);  // the plot's curve, finer than the records
    if (now_s - last_record_time_ >= config_.training.progress_interval_s) {
      last_record_time_ = now_s;
      records_out_.Progress(elapsed_s, t.step, p.epoch, t.loss, rate_, t.samples);
    }
  }
  return p;
}

std::optional<std::string> RunReport::CheckStall(Clock::time_point now, bool running, const Membership& members,
                                                 int64_t params) {
  if (!running) {
    stall_report_.clear();
    return std::nullopt;
  }
  int64_t min_step = -1;
  for (const Member& w : members.workers())
    if (w.state == MemberState::kActive)
      min_step = min_step < 0 ? w.progress.step : std::min(min_step, w.progress.step);
  if (min_step != stall_step_) {
    stall_step_ = min_step;
    stall_report_.clear();
    stall_since_ = now;
    next_stall_report_ = now + Seconds(config_.cluster.stall_report_s);
    return std::nullopt;
  }
  if (min_step < 0 || now < next_stall_report_) return std::nullopt;
  next_stall_report_ = now + Seconds(config_.cluster.stall_report_s);
  std::string behind, waiting;
  for (const Member& w : members.workers())
    if (w.state == MemberState::kActive && w.progress.step == min_step)
      behind += (behind.empty() ? "" : ", ") + std::to_string(w.id) + " (last heard " +
                Fixed(std::chrono::duration<double>(now - w.last_seen).count(), 1) + " s ago)";
  for (const Member& s : members.servers()) {
    const KeyRange r = PartitionKeys(params, config_.cluster.servers, s.id);
    if (s.progress.step <= min_step)
      waiting += (waiting.empty() ? "" : ", ") + std::to_string(s.id) + " keys [" + std::to_string(r.begin) +
                 ", " + std::to_string(r.end) + ") at version " + std::to_string(s.progress.step);
  }
  stall_report_ = "step " + std::to_string(min_step) + " has waited " +
                  Fixed(std::chrono::duration<double>(now - stall_since_).count(), 1) +
                  " s; workers behind: " + (behind.empty() ? "none" : behind) +
                  "; servers waiting: " + (waiting.empty() ? "none" : waiting);
  return stall_report_;
}

void RunReport::Evaluation(const EvaluationRecord& e) {
  history_.push_back(e);
  records_out_.Evaluation(e);
}

nlohmann::json RunReport::HistoryJson(bool with_final) const {
  const char* metric = MetricName(config_);
  nlohmann::json history = nlohmann::json::array();
  for (const auto& e : history_) {
    nlohmann::json j = {{"epoch", e.epoch}, {"step", e.step}, {"train_loss", e.train_loss}, {metric, e.metric},
                        {"wall_s", e.time_s}};
    if (const char* second = SecondMetricName(config_)) j[second] = e.test_logloss;
    if (with_final) j["final"] = e.final;
    history.push_back(std::move(j));
  }
  return history;
}

nlohmann::json RunReport::Finish(double wall_s, int64_t samples, int64_t steps, std::size_t workers_lost,
                                 const std::string& run_dir) {
  const std::string metric = MetricName(config_);
  const EvaluationRecord& last = history_.back();
  const double rate = samples / std::max(1e-9, wall_s);
  char line[256];
  std::snprintf(line, sizeof line, "final %s: %.4f (%lld epochs, %lld steps, %.0f samples/s, %.1f s)",
                metric.c_str(), last.metric, (long long)last.epoch, (long long)steps, rate, wall_s);
  Log(wall_s, line);
  nlohmann::json summary = {{metric, last.metric}, {"metric", metric}, {"epochs", last.epoch},
                            {"steps", steps}, {"samples", samples},
                            {"samples_per_s", rate}, {"wall_s", wall_s},
                            {"servers", config_.cluster.servers}, {"workers", config_.cluster.workers},
                            {"workers_lost", workers_lost}, {"history", HistoryJson(false)},
                            {"config", ConfigToJson(config_)}};
  if (const char* second = SecondMetricName(config_)) summary[second] = last.test_logloss;
  if (std::isfinite(majority_accuracy_)) summary["majority_accuracy"] = majority_accuracy_;
  if (config_.model.kind == ModelKind::kCtr) {
    if (auto planted = PlantedModelOf(config_.data.test_tsv)) summary.update(*planted);
  }
  if (!run_dir.empty()) {
    Log(wall_s, "metrics: " + records_out_.metrics_path());
    Log(wall_s, records_out_.Plot());
  }
  return summary;
}

}  // namespace psforge
