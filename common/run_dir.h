// Run directories: where a job's metrics, plot, summary, logs and (by
// default) checkpoints go: runs/<config's name>-<time> unless one is given.
// RUN_DIR/launch.json records the config a run belongs to, so that
// `--resume` and ps-export find the run again without being told its path.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace psforge {

// Under this folder (relative to the working directory) runs are created.
inline constexpr const char* kRunsFolder = "runs";

// runs/<config's file name without extension>-<YYYYmmdd-HHMMSS>, with -2,
// -3, ... appended when a run of the same second has that name.
std::string DefaultRunDir(const std::string& config_path);

// The config's path as recorded and compared: canonical where it exists.
std::string ConfigIdentity(const std::string& config_path);

// Writes RUN_DIR/launch.json for `config_path` and the --set overrides
// the run was started with (section.field=value each).
Status WriteRunRecord(const std::string& run_dir, const std::string& config_path,
                      const std::vector<std::string>& sets = {});
// The config recorded in RUN_DIR/launch.json ("" without one).
std::string RunRecordConfig(const std::string& run_dir);
// The overrides recorded there (none without them).
std::vector<std::string> RunRecordSets(const std::string& run_dir);

// The newest run directory under `base` recorded for `config_path`: a
// finished one (it has a summary.json) or one that is not ("" when none).
std::string NewestRun(const std::string& base, const std::string& config_path, bool finished);

// The run directory `--resume [RUN_DIR]` continues, checked: `resume_dir`
// (the flag's value) or `run_dir` (--run-dir) if either is given, else the
// newest unfinished run of `config_path` under runs/. "" when none is
// needed because checkpoint.dir names the checkpoints (`checkpoint_dir_set`).
// The error says why the run cannot be resumed and what to type instead.
Result<std::string> ResumeRunDir(const std::string& program, const std::string& resume_dir,
                                 const std::string& run_dir, const std::string& config_path,
                                 bool checkpoint_dir_set);

// Where a run keeps its checkpoints unless checkpoint.dir says otherwise.
std::string RunCheckpointDir(const std::string& run_dir);
// Where the servers of a run evict table rows to: <run_dir>/spill (absolute).
std::string RunSpillDir(const std::string& run_dir);

// Checks, before any work, that a file can be written at `path` (given as
// `flag`): not a directory, its folder exists and is writable. Ok for "".
Status CheckOutputFile(const std::string& path, const std::string& flag);

// Creates `dir` (and its parents) and checks it is writable; the error names
// the path, the flag and the reason.
Status PrepareOutputDir(const std::string& dir, const std::string& flag);

}  // namespace psforge
