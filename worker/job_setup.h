// What ps-train and ps-worker do alike before they train: load the data,
// build the model spec and the model, and say what is about to train.
#pragma once

#include <memory>
#include <string>

#include "common/config.h"
#include "common/dataset.h"
#include "common/model_spec.h"
#include "common/progress.h"
#include "worker/model.h"

namespace psforge {

struct PreparedJob {
  TrainTestData data;
  ModelSpec spec;
  std::unique_ptr<Model> model;
};

// Loads config's data and builds its model with room for `max_batch` rows.
// `member` makes this process's dropout masks its own (0 for ps-train).
Result<PreparedJob> PrepareJob(const JobConfig& config, int64_t max_batch, uint64_t member);

// The "training <model> (<n> parameters) on ..." line (and the data's
// report), `where` saying how this process takes part.
void AnnounceJob(ProgressPrinter& progress, const JobConfig& config, const PreparedJob& p, const std::string& where);

}  // namespace psforge
