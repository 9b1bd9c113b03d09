#include "worker/train_job.h"

#include <fstream>
#include <optional>

#include <omp.h>

#include "common/clock.h"
#include "common/coordinator_link.h"
#include "common/fault_transport.h"
#include "common/shard_plan.h"
#include "common/transport.h"
#include "worker/job_setup.h"
#include "worker/ps_client.h"

namespace psforge {

Status SaveWeights(std::span<const float> weights, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(weights.data()),
            static_cast<std::streamsize>(weights.size() * sizeof(float)));
  if (!out) return Unavailable("cannot write the weights to " + path);
  return Status::Ok();
}

Result<WorkerRun> RunClusterWorker(const WorkerOptions& options, std::FILE* progress_out) {
  const std::string& coordinator = options.member.coordinator;
  const CurveFlags& curve = options.member.curve;
  std::FILE* log = progress_out ? progress_out : stderr;
  PSF_ASSIGN_OR_RETURN(auto transport, CreateTransport(curve.key, curve.cluster_keys));
  PSF_ASSIGN_OR_RETURN(auto channel, CoordinatorChannel::Open(transport.get(), coordinator));
  auto joined = channel->Join(PeerRole::kWorker, "", Seconds(options.member.connect_timeout_s));
  if (!joined.ok() && joined.status().code() == StatusCode::kCancelled) {
    // Restarted after the job ended (or while it ended): nothing to do.
    std::fprintf(log, "ps-worker: %s\n", joined.status().message().c_str());
    return WorkerRun{};
  }
  PSF_RETURN_IF_ERROR(joined.status());
  JobAssignment job = std::move(*joined);
  const std::string job_encoded = EncodeJob(job.config, {});  // a restarted coordinator must run the same job
  WorkerRun run{MemberConfig(job.config, options.member), {}};
  const JobConfig* config = &run.config;
  // Chaos testing (cluster.faults, --faults; fault_transport.h): the
  // messages to and from the servers get lost, duplicated, delayed and
  // reordered, or this worker dies between its pushes to two servers.
  std::unique_ptr<Transport> faulty;
  FaultOptions faults;
  if (!config->cluster.faults.empty()) {
    PSF_ASSIGN_OR_RETURN(faults, ParseFaultOptions(config->cluster.faults));
    if (faults.any()) {
      PSF_ASSIGN_OR_RETURN(auto inner, CreateTransport(curve.key, curve.cluster_keys));
      faulty = WithFaults(std::move(inner), faults);
      std::fprintf(log, "ps-worker: injecting faults into server traffic: %s\n", config->cluster.faults.c_str());
    }
  }
  // Joined: a coordinator gone silent is given the job's connect timeout.
  const auto timeout = Seconds(config->cluster.connect_timeout_s);
  omp_set_num_threads(static_cast<int>(config->training.threads));
  const int64_t workers = config->cluster.workers;
  const int64_t share = (config->training.batch_size + workers - 1) / workers;
  ProgressPrinter progress(progress_out, config->training.progress_interval_s);
  std::optional<PreparedJob> p;  // loaded once, kept when the job restarts
  // Each pass is one generation of the job. When it restarts from a
  // checkpoint (a server died, say), this worker's work since then is void:
  // it joins again and starts where the coordinator says.
  while (true) {
    // Each pass's heartbeats, client and leases are gone before it joins
    // again: the coordinator declares a member dead that is silent for
    // cluster.peer_timeout_s after its welcome.
    auto result = [&]() -> Result<TrainResult> {
      // Heartbeats start now: loading the data may take longer than the
      // coordinator waits for a silent member.
      PSF_ASSIGN_OR_RETURN(auto heartbeat_channel, CoordinatorChannel::Open(transport.get(), coordinator));
      heartbeat_channel->Attach(job.id, PeerRole::kWorker, job.generation);
      auto heartbeat = std::make_unique<HeartbeatThread>(std::move(heartbeat_channel), config->cluster,
                                                         config->cluster.connect_timeout_s);
      HeartbeatThread* beats = heartbeat.get();
      if (!p) {
        // Room for the whole batch: under BSP a worker takes the share of
        // any that is missing (ParameterClient::workers_in_step).
        PSF_ASSIGN_OR_RETURN(PreparedJob loaded, PrepareJob(*config, config->training.batch_size));
        p.emplace(std::move(loaded));
      }
      // Servers take a push in parts only when the optimizer can apply one
      // part at a time (clip_norm scales by the whole range's norm).
      ClusterOptions wire = config->cluster;
      if (config->optimizer.clip_norm > 0) wire.chunk_kb = 0;
      PSF_ASSIGN_OR_RETURN(auto client, PsClient::Connect(faulty ? faulty.get() : transport.get(), p->spec,
                                                          wire, job.id,
                                                          job.servers, job.generation, job.step,
                                                          job.server_keys));
      // A restart (Aborted) or the coordinator's stop (Cancelled: this
      // worker was declared dead, or the job ended) ends any wait on a
      // server or on the coordinator (a lease asked of one that died).
      auto interrupt = [beats] {
        Status s = beats->status();
        return s.code() == StatusCode::kAborted || s.code() == StatusCode::kCancelled ? s : Status::Ok();
      };
      client->SetInterrupt(interrupt);
      if (faults.die_mid_push > 0) client->DieMidPush(faults.die_mid_push);
      channel->SetInterrupt(interrupt);
      struct Uninterrupt {
        CoordinatorChannel* c;
        ~Uninterrupt() { c->SetInterrupt(nullptr); }
      } uninterrupt{channel.get()};
      // The step to start at: the job's, or the servers' when this worker
      // takes the place of one that died while the others train on.
      PSF_ASSIGN_OR_RETURN(const int64_t first_step, client->Admit());
      const ShardPlan plan = ShardPlan::ForJob(*config, p->data.train.rows, config->cluster.workers);
      LeaseSource source(&plan, *config, channel.get(), std::move(heartbeat), first_step);
      AnnounceJob(progress, *config, *p,
               " as worker " + std::to_string(job.id) + " of " + std::to_string(workers) + " with " +
                   std::to_string(job.servers.size()) + " servers (" +
                   ConsistencyName(config->cluster.consistency) + "), batches of " + std::to_string(share) +
                   (first_step > 0 ? ", from step " + std::to_string(first_step) : ""));
      Trainer trainer(*config, p->model.get(), client.get(), &progress);
      return trainer.Run(p->data.train, p->data.test, &source);
    }();
    if (!result.ok() && result.status().code() == StatusCode::kAborted) {
      progress.Line("worker " + std::to_string(job.id) + ": " + result.status().message() + "; joining again");
      PSF_ASSIGN_OR_RETURN(job, channel->Join(PeerRole::kWorker, "", timeout));
      if (EncodeJob(job.config, {}) != job_encoded)
        return FailedPrecondition("the coordinator at " + coordinator + " restarted with another job");
      continue;
    }
    PSF_RETURN_IF_ERROR(result.status());
    if (result->evaluated && !options.save_weights.empty())
      PSF_RETURN_IF_ERROR(SaveWeights(p->model->weights(), options.save_weights));
    run.result = std::move(*result);
    return run;
  }
}

int ReportResult(const char* program, const Result<TrainResult>& result, const JobConfig& config,
                 const std::string& summary_path, const std::string& run_dir) {
  if (!result.ok()) {
    std::fprintf(stderr, "%s: %s\n", program, result.status().ToString().c_str());
    return 1;
  }
  if (result->evaluated)
    std::printf("final %s: %.4f (%lld epochs, %lld steps, %.0f samples/s, %.1f s)\n",
                result->metric_name.c_str(), result->test_metric, (long long)result->epochs,
                (long long)result->steps, result->samples_per_s, result->wall_s);
  else
    std::printf("done: %lld records in %lld steps, %.0f samples/s, %.1f s\n",
                (long long)result->samples, (long long)result->steps, result->samples_per_s,
                result->wall_s);
  std::fflush(stdout);
  const std::string summary = SummaryJson(*result, config).dump(2) + "\n";
  for (const std::string& path : {summary_path, run_dir.empty() ? std::string() : run_dir + "/summary.json"}) {
    if (path.empty()) continue;
    std::ofstream out(path);
    out << summary;
    if (!out) {
      std::fprintf(stderr, "%s: cannot write summary to %s\n", program, path.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace psforge
