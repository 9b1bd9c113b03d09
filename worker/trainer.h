// The training loop: epochs of shuffled batches through a Model, gradients
// exchanged through a ParameterClient, evaluation on the test set after every
// epoch, progress on a console, and a summary.
//
// The trainer is the same for ps-train and a cluster worker: a BatchSource
// says which records each step trains (and when to evaluate), a
// ParameterClient exchanges gradients and weights. Batch buffers are
// allocated once. Not thread-safe; one trainer per process or thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/dataset.h"
#include "worker/model.h"
#include "common/progress.h"
#include "worker/batch_source.h"
#include "worker/parameter_client.h"

namespace psforge {

struct EpochResult {
  int64_t epoch = 0;
  int64_t step = 0;        // steps taken when it was evaluated
  double train_loss = 0;   // mean over this process's batches of the epoch
  double test_metric = 0;  // accuracy, or mean squared error for regression
  double wall_s = 0;       // since training started
};

struct TrainResult {
  std::string metric_name;  // "test_accuracy" or "test_mse"
  bool evaluated = false;   // false: a cluster worker whose job another worker evaluated
  double test_metric = 0;
  int64_t epochs = 0;
  int64_t steps = 0;
  int64_t samples = 0;       // records this process trained on
  double samples_per_s = 0;  // training steps only, evaluation excluded
  double wall_s = 0;
  std::vector<EpochResult> history;
};

class Trainer {
 public:
  Trainer(const JobConfig& config, Model* model, ParameterClient* client, ProgressPrinter* progress);

  // Trains on the batches `source` plans, evaluating when it says so, then
  // runs the final evaluation (unless another process does).
  Result<TrainResult> Run(const Dataset& train, const Dataset& test, BatchSource* source);

  // The metric over a whole data set (accuracy or mean squared error).
  double Evaluate(const Dataset& data);

  // Estimates the batch statistics evaluation needs (batchnorm) from the
  // first kStatisticsBatches batches of `train`; nothing without batchnorm.
  void EstimateStatistics(const Dataset& train);
  static constexpr int64_t kStatisticsBatches = 50;

 private:
  void Gather(const Dataset& data, const int64_t* rows, int64_t n);
  Status EvaluateEpoch(const Dataset& test, BatchSource* source, int64_t epoch, int64_t step,
                       bool final, double epoch_loss, TrainResult* result);

  const JobConfig& config_;
  Model* model_;
  ParameterClient* client_;
  ProgressPrinter* progress_;
  std::chrono::steady_clock::time_point start_;
  std::vector<float> batch_x_, batch_t_;
  std::vector<int64_t> rows_;
  const Dataset* train_ = nullptr;  // during Run
};

nlohmann::json SummaryJson(const TrainResult& result, const JobConfig& config);

}  // namespace psforge
