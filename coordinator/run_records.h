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
};

class RunRecords {
 public:
  RunRecords(std::string dir, std::string metric_name);

  const std::string& dir() const { return dir_; }
  std::string metrics_path() const { return dir_ + "/metrics.jsonl"; }
  // Empty when there is no run directory, else why it cannot be written.
  const std::string& error() const { return error_; }

  void Progress(double time_s, int64_t step, int64_t epoch, double loss, double samples_per_s,
                int64_t samples);
  void Evaluation(const EvaluationRecord& e);

  // Draws curves.png with gnuplot; returns a line saying where, or why not.
  std::string Plot();

 private:
  std::string dir_, metric_name_, error_;
  std::ofstream metrics_;
  std::vector<std::pair<int64_t, double>> loss_;    // step, loss
  std::vector<std::pair<int64_t, double>> metric_;  // step, metric
};

}  // namespace psforge
