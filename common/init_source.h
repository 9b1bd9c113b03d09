// model.init_from naming a trained job instead of an .npz file.
//
// init_from may name a job's config (.yaml: its newest run under runs/, a
// finished one first), a run directory (it has launch.json) or that run's
// checkpoints/ folder; the weights are those of the run's newest committed
// checkpoint. Reading them needs the coordinator's job store and every
// server's store, which only ps-export links: the process that starts a job
// (ps-coordinator, ps-train) runs the ps-export installed next to it once,
// into an .npz in the run directory, and the job (every member, through the
// config it is sent) starts from that file.
#pragma once

#include <string>

#include "common/config.h"
#include "common/status.h"

namespace psforge {

// When config->model.init_from names a run (a job's .yaml config, a run
// directory or its checkpoints/ folder; not an .npz), writes its
// newest committed checkpoint to <out_dir>/init_from.npz (a temporary file
// when out_dir is "") and points model.init_from there; otherwise does
// nothing. `program` names the caller in messages. Errors name the source
// and say why it gave no weights (ps-export's own message).
Status ResolveInitFrom(const char* program, JobConfig* config, const std::string& out_dir);

}  // namespace psforge
