// One worker of a cluster job from the coordinator's welcome (ps-worker),
// and the result line and summary both ps-worker and ps-train end with. The
// single-process job is worker/local_training.h: it holds the optimizer and
// the checkpoint stores in-process, so it is a library of its own and
// ps-worker links neither RocksDB nor the server's code.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "common/cli_flags.h"
#include "common/config.h"
#include "worker/trainer.h"

namespace psforge {

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
