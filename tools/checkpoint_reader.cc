#include "tools/checkpoint_reader.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/run_dir.h"
#include "coordinator/job_store.h"
#include "paramserver/param_store.h"

namespace psforge {

Result<CommittedWeights> ReadCommittedWeights(const JobConfig& config, const ModelSpec& spec, int64_t step) {
  const CheckpointOptions& c = config.checkpoint;
  if (!c.enabled() || c.dir.empty())
    return FailedPrecondition("the job writes no checkpoints (checkpoint.interval_steps or interval_s, and "
                              "checkpoint.dir, are not set): there is nothing to read");
  const std::string job_path = c.dir + "/coordinator";
  if (!std::filesystem::is_directory(job_path))
    return NotFound("no job store at " + job_path + ": has this job run with checkpoint.dir " + c.dir + "?");
  PSF_ASSIGN_OR_RETURN(auto job, JobStore::OpenReadOnly(job_path));
  PSF_ASSIGN_OR_RETURN(std::vector<CommittedCheckpoint> committed, job->Committed());
  if (committed.empty()) return NotFound("no checkpoint of the job in " + c.dir + " is committed yet");
  int64_t chosen = committed.back().step;
  if (step >= 0) {
    auto it = std::find_if(committed.begin(), committed.end(), [&](const auto& k) { return k.step == step; });
    if (it == committed.end()) {
      std::string have;
      for (const auto& k : committed) have += (have.empty() ? "" : ", ") + std::to_string(k.step);
      return NotFound("no committed checkpoint at step " + std::to_string(step) + " in " + c.dir + "; kept: " + have);
    }
    chosen = step;
  }
  CommittedWeights out{chosen, std::vector<float>(static_cast<std::size_t>(spec.num_params()))};
  // The job that wrote the store says how many servers it had (ps-train's
  // run is a job of one server), whatever the config says now.
  int64_t servers = config.cluster.servers;
  PSF_ASSIGN_OR_RETURN(std::string fingerprint, job->Fingerprint());
  const auto identity = nlohmann::json::parse(fingerprint, nullptr, false);
  if (identity.is_object() && identity.contains("cluster.servers") && identity["cluster.servers"].is_number_integer() &&
      identity["cluster.servers"].get<int64_t>() >= 1 && identity["cluster.servers"].get<int64_t>() <= (1 << 16))
    servers = identity["cluster.servers"].get<int64_t>();
  for (int64_t i = 0; i < servers; ++i) {
    const std::string path = c.dir + "/server-" + std::to_string(i);
    PSF_ASSIGN_OR_RETURN(auto store, ParamStore::OpenRocksDbReadOnly(path));
    PSF_ASSIGN_OR_RETURN(ServerCheckpoint part, store->Read(chosen));
    const KeyRange want = PartitionKeys(spec.num_params(), servers, i);
    if (part.range != want || static_cast<int64_t>(part.weights.size()) != want.size())
      return DataLoss("checkpoint " + std::to_string(chosen) + " in " + path + " holds keys [" +
                      std::to_string(part.range.begin) + ", " + std::to_string(part.range.end) +
                      "), but server " + std::to_string(i) + " of this model owns [" + std::to_string(want.begin) +
                      ", " + std::to_string(want.end) + "): another model or cluster.servers?");
    std::memcpy(out.weights.data() + want.begin, part.weights.data(), part.weights.size() * sizeof(float));
  }
  return out;
}

Status FindCheckpoints(const char* program, const std::string& config_path, const std::string& given_run_dir,
                       JobConfig* config) {
  if (!config->checkpoint.enabled())
    return FailedPrecondition("this job writes no checkpoints (checkpoint.interval_steps and interval_s are 0): "
                              "there is nothing to read");
  std::string run_dir = given_run_dir;
  if (run_dir.empty() && !config->checkpoint.dir.empty()) return Status::Ok();
  if (run_dir.empty()) {
    run_dir = NewestRun(kRunsFolder, config_path, /*finished=*/true);
    if (run_dir.empty()) run_dir = NewestRun(kRunsFolder, config_path, false);
    if (run_dir.empty())
      return NotFound("no run of " + config_path + " under " + kRunsFolder + "/: name one with --run-dir RUN_DIR");
    std::fprintf(stderr, "%s: reading the run in %s\n", program, run_dir.c_str());
  }
  config->checkpoint.dir = RunCheckpointDir(run_dir);
  return Status::Ok();
}

}  // namespace psforge
