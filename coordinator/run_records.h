// RunRecords: what a run leaves behind in its run directory.
//
//   metrics.jsonl  one JSON object a line: progress (time_s, step, epoch,
//                  loss, samples_per_s, samples) and evaluations (time_s,
//                  step, epoch, and the metric, e.g. test_accuracy)
//   curves.png     loss and the metric against steps (Debian's gnuplot)
//   summary.json   the job's result (written by the coordinator)
//
// An empty directory name turns it all off. Not thread-safe.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace psforge {

struct EvaluationRecord {
  int64_t epoch = 0;
  int64_t step = 0;
  double metric = 0;
  double time_s = 0;
  bool final = false;
  // The evaluating worker's mean over its steps of the epoch; NaN (null in
  // JSON) when it trained none.
  double train_loss = 0;
  double test_logloss = 0;  // the second metric (SecondMetricName): ctr's log loss, masked bits per character
};

class RunRecords {
 public:
  // `second_name`: the second metric's (SecondMetricName), "" when none.
  RunRecords(std::string dir, std::string metric_name, std::string second_name = "");

  const std::string& dir() const { return dir_; }
  std::string metrics_path() const { return dir_ + "/metrics.jsonl"; }
  // Empty when there is no run directory, else why it cannot be written.
  const std::string& error() const { return error_; }

  void Progress(double time_s, int64_t step, int64_t epoch, double loss, double samples_per_s,
                int64_t samples);
  void Evaluation(const EvaluationRecord& e);

  // A point of the plot's loss curve (finer than the progress records).
  void LossPoint(int64_t step, double loss);

  // The plot's title (the config, the run).
  void set_title(std::string title) { title_ = std::move(title); }

  // Draws curves.png with gnuplot: the training loss and the metric against
  // steps, each with a dashed line where an epoch ended, a few round step
  // tics, and whatever curve there is (a run of one step has one point).
  // gnuplot's own messages go to curves.log, not the terminal. Returns a
  // line saying where, or why not.
  std::string Plot();

 private:
  std::string dir_, metric_name_, second_name_, error_, title_;
  std::ofstream metrics_;
  std::vector<std::pair<int64_t, double>> loss_;    // step, loss
  std::vector<std::pair<int64_t, double>> metric_;  // step, metric
  std::vector<std::pair<int64_t, int64_t>> epoch_ends_;  // step, epoch
};

// A tic spacing of 1, 2 or 5 times a power of ten giving at most `most`
// tics over [0, span].
int64_t RoundTicSpacing(int64_t span, int most);

}  // namespace psforge
