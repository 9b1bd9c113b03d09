// One whole single-process training job from a validated config: load the
// data, build the model and the in-process optimizer, train, evaluate.
#pragma once

#include <cstdio>

#include "common/config.h"
#include "worker/trainer.h"

namespace psforge {

Result<TrainResult> RunLocalTraining(const JobConfig& config, std::FILE* progress_out);

}  // namespace psforge
