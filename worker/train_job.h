// Whole training jobs from a validated config: the single-process baseline
// (ps-train) and one worker of a cluster (ps-worker).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "common/config.h"
#include "worker/trainer.h"

namespace psforge {

// Loads the data, builds the model and the in-process optimizer, trains.
Result<TrainResult> RunLocalTraining(const JobConfig& config, std::FILE* progress_out);

// Worker `index` of config.cluster.workers against the servers at `servers`.
Result<TrainResult> RunClusterWorker(const JobConfig& config, int64_t index,
                                     const std::vector<std::string>& servers, std::FILE* progress_out);

// Prints the final line (or the error) and writes the summary; returns the exit code.
int ReportResult(const char* program, const Result<TrainResult>& result, const JobConfig& config,
                 const std::string& summary_path);

}  // namespace psforge
