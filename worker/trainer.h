// The training loop: epochs of shuffled batches through a Model, gradients
// exchanged through a ParameterClient, evaluation on the test set after every
// epoch, progress on a console, and a summary.
//
// The data order depends only on (training.seed, epoch), so two runs with the
// same config see the same batches. Batch buffers are allocated once. Not
// thread-safe; one trainer per process or thread.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/dataset.h"
#include "worker/model.h"
#include "worker/parameter_client.h"

namespace psforge {

struct EpochResult {
  int64_t epoch = 0;
  double train_loss = 0;   // mean over the epoch's batches
  double test_metric = 0;  // accuracy, or mean squared error for regression
  double wall_s = 0;       // since training started
};

struct TrainResult {
  std::string metric_name;  // "test_accuracy" or "test_mse"
  double test_metric = 0;
  int64_t epochs = 0;
  int64_t steps = 0;
  double samples_per_s = 0;  // training steps only, evaluation excluded
  double wall_s = 0;
  std::vector<EpochResult> history;
};

// Fills `order` with a permutation of [0, n) that depends only on the seed.
void ShuffledOrder(uint64_t seed, std::vector<int64_t>* order);

// Writes progress to a console: a live line on a terminal, periodic lines otherwise.
class ProgressPrinter {
 public:
  ProgressPrinter(std::FILE* out, double interval_s);
  void Step(int64_t epoch, int64_t epochs, int64_t step_in_epoch, int64_t steps_per_epoch,
            double loss, double samples_per_s, double eta_s, double now_s);
  void Line(const std::string& text);

 private:
  std::FILE* out_;
  bool tty_;
  double interval_s_;
  double last_s_ = 0;  // the first update waits one interval: step 1 pays for primitive creation
  bool live_line_ = false;
};

// Which share of every global batch this process trains on: worker `index`
// of `count` takes the index-th of `count` balanced contiguous parts.
struct WorkerShare {
  int64_t index = 0;
  int64_t count = 1;
};

class Trainer {
 public:
  Trainer(const JobConfig& config, Model* model, ParameterClient* client, ProgressPrinter* progress,
          WorkerShare share = {});

  // Trains for config.training.epochs epochs and evaluates after each.
  Result<TrainResult> Run(const Dataset& train, const Dataset& test);

  // The metric over a whole data set (accuracy or mean squared error).
  double Evaluate(const Dataset& data);

 private:
  void Gather(const Dataset& data, const int64_t* rows, int64_t n);

  const JobConfig& config_;
  Model* model_;
  ParameterClient* client_;
  ProgressPrinter* progress_;
  WorkerShare share_;
  std::vector<float> batch_x_, batch_t_;
  std::vector<int64_t> order_;
};

nlohmann::json SummaryJson(const TrainResult& result, const JobConfig& config);

}  // namespace psforge
