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
#include "worker/sparse_batch.h"

namespace psforge {
class RecordBlocks;
}

namespace psforge {

struct EpochResult {
  int64_t epoch = 0;
  int64_t step = 0;        // steps taken when it was evaluated
  double train_loss = 0;   // mean over this process's batches of the epoch
  double test_metric = 0;  // accuracy, mean squared error for regression, AUC for ctr
  // The second metric (SecondMetricName): ctr, the log loss of the
  // predicted click probabilities; data.task masked, the bits per masked
  // character.
  double test_logloss = 0;
  double wall_s = 0;       // since training started
};

struct TrainResult {
  std::string metric_name;  // "test_accuracy", "test_mse", "test_auc", ...
  bool evaluated = false;   // false: a cluster worker whose job another worker evaluated
  const char* second_name = nullptr;  // the second metric's name (test_logloss holds it), or none
  double test_metric = 0;
  double test_logloss = 0;
  // data.task classify: what answering the training set's most frequent
  // class scores on the test set; NaN otherwise.
  double majority_accuracy = std::numeric_limits<double>::quiet_NaN();
  int64_t epochs = 0;
  int64_t steps = 0;
  int64_t samples = 0;       // records this process trained on
  double samples_per_s = 0;  // training steps only, evaluation excluded
  WireBytes wire;            // payload bytes this process pushed and pulled (a cluster worker)
  // Where a training step's time went, summed over the steps: forward,
  // loss and backward; the push and the pull of the next weights (the
  // optimizer, in one process; the servers' round trip, in a cluster).
  double compute_s = 0, exchange_s = 0;
  int64_t pushes = 0;  // steps this process pushed (its empty ones too)
  int64_t parts_sent_ahead = 0;  // parts pushed during backward (cluster.push_during_backward)
  int64_t parts_pulled_late = 0;  // parts that came in during the next forward pass (cluster.priority_pulls)
  double wall_s = 0;
  std::vector<EpochResult> history;
};

class Trainer {
 public:
  Trainer(const JobConfig& config, Model* model, ParameterClient* client, ProgressPrinter* progress);
  ~Trainer();

  // Trains on the batches `source` plans, evaluating when it says so, then
  // runs the final evaluation (unless another process does).
  Result<TrainResult> Run(const Dataset& train, const Dataset& test, BatchSource* source);

  // The metric over a whole data set (accuracy, mean squared error; ctr:
  // AUC) and the second metric where there is one (ctr: the log loss;
  // masked: bits per masked character) in *second, for the weights of
  // `version` at hand (a ctr model pulls the rows each batch uses at that
  // version).
  Result<double> Evaluate(const Dataset& data, int64_t version, double* second = nullptr);

  // Estimates the batch statistics evaluation needs (batchnorm) from the
  // first kStatisticsBatches batches of `train`; nothing without batchnorm.
  void EstimateStatistics(const Dataset& train);
  static constexpr int64_t kStatisticsBatches = 50;

 private:
  // Copies records `rows` of `data` into the batch; an error only when a
  // streamed file cannot be read as it was indexed.
  Status Gather(const Dataset& data, const int64_t* rows, int64_t n);
  Status GatherStreamed(const Dataset& data, const int64_t* rows, int64_t n);
  // data.task masked: BERT's masks on the gathered batch, chosen by
  // (training.seed, epoch, row): the same in every process.
  void Mask(const int64_t* rows, int64_t n, int64_t epoch);
  // ctr: plans the gathered batch's rows, pulls them at `version` and pools
  // them into its input.
  Status PullEmbeddings(int64_t version, int64_t n);
  Status EvaluateEpoch(const Dataset& test, BatchSource* source, int64_t epoch, int64_t step,
                       bool final, double epoch_loss, TrainResult* result);

  const JobConfig& config_;
  Model* model_;
  ParameterClient* client_;
  ProgressPrinter* progress_;
  std::chrono::steady_clock::time_point start_;
  std::vector<float> batch_x_, batch_t_;
  std::vector<uint64_t> batch_keys_;    // ctr: the batch's categorical feature keys
  std::unique_ptr<SparseBatch> sparse_;  // ctr: the batch's rows of the sparse tables
  std::vector<std::unique_ptr<RecordBlocks>> streams_;  // streamed data sets' blocks, by index
  std::vector<float> scores_, labels_;  // ctr: a test set's predictions, for its AUC
  std::vector<int64_t> rows_;
  bool masked_ = false;
  const Dataset* train_ = nullptr;  // during Run
};

nlohmann::json SummaryJson(const TrainResult& result, const JobConfig& config);

}  // namespace psforge
