// The single-process baseline (ps-train): the model, the optimizer and
// the checkpoints (in the cluster's format, worker/local_checkpoints.h) in
// one process, no network. Its library (psforge_local_training) links the
// server's stores; the cluster worker's (psforge_worker) does not.
#pragma once

#include <cstdio>
#include <string>

#include "common/config.h"
#include "worker/trainer.h"

namespace psforge {

struct LocalTrainingOptions {
  std::string export_path;  // "": no export
  // Checkpoints go to <run_dir>/checkpoints unless checkpoint.dir says
  // where; "": only where checkpoint.dir says.
  std::string run_dir;
  bool resume = false;  // continue from the newest committed checkpoint
};

// Loads the data, builds the model and the in-process optimizer, trains
// (checkpointing as config.checkpoint says, in the cluster's format:
// worker/local_checkpoints.h); then writes the trained model to
// options.export_path (model_export.h) unless it is "".
Result<TrainResult> RunLocalTraining(const JobConfig& config, std::FILE* progress_out,
                                     const LocalTrainingOptions& options = {});

}  // namespace psforge
