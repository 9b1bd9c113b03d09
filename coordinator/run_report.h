// RunReport: what the coordinator tells people about a run while it goes
// and once it ends.
//
// It owns the progress line (ProgressPrinter), the run directory's records
// and plot (RunRecords), the dashboard's curve and events (Timeline), the
// training rate, stalled-step reports, the evaluations so far, and the
// final summary. AuditServers checks the servers' final accounting against
// the data: every record applied exactly once in every completed epoch, on
// every server.
//
// It reads the members' state and reports; it decides nothing about the
// job. Not thread-safe, except timeline() (Timeline is): the coordinator's
// loop owns it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/config.h"
#include "common/coordinator_link.h"
#include "common/progress.h"
#include "coordinator/dashboard.h"
#include "coordinator/membership.h"
#include "coordinator/run_records.h"

namespace psforge {

// The servers' accounting of a job whose data has `records` records, over
// its first `epochs` epochs: the summary's "audit" object, and the log lines
// that say what it found ("audit: ...").
struct AuditResult {
  nlohmann::json json;
  std::vector<std::string> lines;
  bool exactly_once = true;
};
AuditResult AuditServers(const std::vector<Member>& servers, int64_t records, int64_t epochs);

class RunReport {
 public:
  // `out`: where the progress line and log lines go; `run_dir`: where the
  // records go ("" = nowhere).
  RunReport(const JobConfig& config, int64_t records, std::FILE* out, const std::string& run_dir);

  // Non-empty when the run directory cannot take the records.
  const std::string& error() const { return records_out_.error(); }
  void set_title(std::string title) { records_out_.set_title(std::move(title)); }
  // data.task classify: the majority class's test accuracy, for the summary.
  void set_majority_accuracy(double a) { majority_accuracy_ = a; }

  // A line in the log and an event on the dashboard at `elapsed_s` of training.
  void Log(double elapsed_s, const std::string& line);

  // The workers' totals, from their latest heartbeats.
  struct Totals {
    int64_t step = 0, samples = 0;
    double loss = 0;  // the mean over active workers that have trained
    WireBytes wire;   // payload bytes the workers moved (each since it last joined)
  };
  static Totals Sum(const std::vector<Member>& workers);

  // Where the data stands, from the lease table.
  struct Epochs {
    int64_t current = 0, completed = 0;
    bool finished = false;
  };
  // Updates the rate (an average that follows the last few seconds) and, while
  // training (`training`: some worker has trained and the job is not over),
  // the progress line, the curve and the records. Throttled to a quarter of
  // training.progress_interval_s (at least 0.2 s) unless `force`; nullopt when
  // throttled. `now_s`: seconds since the coordinator started.
  std::optional<ProgressState> Update(double now_s, double elapsed_s, const Totals& totals, const Epochs& epochs,
                                      bool training, bool force);
  double rate() const { return rate_; }

  // A step that every active worker has been at for cluster.stall_report_s:
  // which workers are behind and which servers wait, every stall_report_s
  // while it lasts (returned when new, to print; kept for the snapshot).
  // `params`: the model's size, to name the servers' key ranges.
  std::optional<std::string> CheckStall(Clock::time_point now, bool running, const Membership& members,
                                        int64_t params);
  const std::string& stall() const { return stall_report_; }

  void Evaluation(const EvaluationRecord& e);
  const std::vector<EvaluationRecord>& history() const { return history_; }
  // A restarted generation keeps the evaluations of the epochs it kept.
  void RestoreHistory(std::vector<EvaluationRecord> history) { history_ = std::move(history); }
  // The evaluations as JSON (the summary's and the snapshot's "history").
  nlohmann::json HistoryJson(bool with_final) const;

  // The job succeeded: logs its final line and the records' paths, and
  // returns the summary (without the audit and the checkpoints, which come
  // once the members have gone). Needs an evaluation.
  nlohmann::json Finish(double wall_s, int64_t samples, int64_t steps, std::size_t workers_lost,
                        const std::string& run_dir);

  Timeline& timeline() { return timeline_; }
  const Timeline& timeline() const { return timeline_; }
  const std::string& audit_line() const { return audit_; }  // the latest "audit:" line

 private:
  const JobConfig config_;
  const int64_t records_;
  ProgressPrinter progress_;
  RunRecords records_out_;
  double majority_accuracy_ = std::numeric_limits<double>::quiet_NaN();
  Timeline timeline_;
  int64_t timeline_step_ = 0;
  double rate_ = 0, last_rate_time_ = 0, last_record_time_ = -1e9;
  int64_t last_rate_samples_ = 0;
  int64_t stall_step_ = -1;
  Clock::time_point stall_since_{}, next_stall_report_{};
  std::string stall_report_, audit_;
  std::vector<EvaluationRecord> history_;
};

}  // namespace psforge
