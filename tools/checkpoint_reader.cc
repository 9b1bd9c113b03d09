#include "tools/checkpoint_reader.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

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
  const int64_t servers = config.cluster.servers;
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

}  // namespace psforge
