// Whole training jobs from a validated config: the single-process baseline
// (ps-train) and one worker of a cluster (ps-worker).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "common/cli_flags.h"
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

// One worker of a cluster job, as its command line says (ps-worker).
struct WorkerOptions {
  MemberOptions member;      // the coordinator, how long to wait for it, CURVE, faults
  std::string save_weights;  // when this worker runs the final evaluation: the final weights
                             // (raw little-endian float32, the model's flattened key order); "": none
};

struct WorkerRun {
  JobConfig config;  // the job's, as this worker ran it
  TrainResult result;
};

// One worker of the job the coordinator at options.member.coordinator runs:
// joins it (waiting at most member.connect_timeout_s), trains the shards it
// leases, joins again when the job restarts, leaves when it is done.
Result<WorkerRun> RunClusterWorker(const WorkerOptions& options, std::FILE* progress_out);

// Writes `weights` as raw float32 to `path`.
Status SaveWeights(std::span<const float> weights, const std::string& path);

// Prints the final line (or the error) and writes the summary; returns the
// exit code (also into <run_dir>/summary.json, which marks the run
// finished, unless run_dir is ""). A cluster worker whose job another
// worker evaluated prints its own numbers only.
int ReportResult(const char* program, const Result<TrainResult>& result, const JobConfig& config,
                 const std::string& summary_path, const std::string& run_dir = "");

}  // namespace psforge
