// Reads a job's trained weights from its committed checkpoints.
//
// A checkpoint is committed when every server has written it (the
// coordinator records that in its job store, <checkpoint.dir>/coordinator);
// server i holds its key range in <checkpoint.dir>/server-<i>. Both are
// opened read-only, so this works while the job runs, and every server's
// part is checked (its range is the one the spec assigns it, the CRCs hold)
// before the weights are put together.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/model_spec.h"
#include "common/status.h"

namespace psforge {

struct CommittedWeights {
  int64_t step = 0;
  std::vector<float> weights;  // spec.num_params() values in key order
};

// The weights of committed checkpoint `step`, or of the newest one when
// step < 0. Errors name what is missing: no checkpoints configured, none
// committed yet, the step not (or no longer) kept, a server's store.
Result<CommittedWeights> ReadCommittedWeights(const JobConfig& config, const ModelSpec& spec, int64_t step);

// Points config->checkpoint.dir at the checkpoints to read: those of
// `run_dir` if given, else checkpoint.dir if the config sets it, else the
// newest run of `config_path` under runs/ (a finished one first; `program`
// says on stderr which run it reads). The error says what to type.
Status FindCheckpoints(const char* program, const std::string& config_path, const std::string& run_dir,
                       JobConfig* config);

}  // namespace psforge
