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

// The seed of a job's dropout masks: the same in every process of the job,
// so that each draws the same masks for a record at a step (nn::PassSamples).
inline uint64_t DropoutSeed(const JobConfig& config) { return config.training.seed * 1000003; }

// Loads config's data and builds its model with room for `max_batch` rows
// (dropout seeded by DropoutSeed).
Result<PreparedJob> PrepareJob(const JobConfig& config, int64_t max_batch);

// The "training <model> (<n> parameters) on ..." line (and the data's
// report), `where` saying how this process takes part.
void AnnounceJob(ProgressPrinter& progress, const JobConfig& config, const PreparedJob& p, const std::string& where);

}  // namespace psforge
