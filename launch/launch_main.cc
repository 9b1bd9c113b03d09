// ps-launch: a whole cluster on this machine with one command.
//
//   ps-launch --config FILE [--servers S] [--workers W] [--epochs N] [--threads N]
//             [--summary FILE] [--run-dir DIR] [--resume [RUN_DIR]] [--export FILE.npz]
//             [--set section.field=value]
//
// Starts a coordinator (its progress and results on this terminal), S
// servers and W workers (their logs in RUN_DIR/logs/), restarts a server or
// worker that crashes (a restarted server makes every server roll back to
// the last committed checkpoint; a restarted worker takes its old place) and
// a coordinator killed by a signal (on the same endpoint, with --resume when
// the job writes checkpoints: the members join it again), and exits with the
// coordinator's code once the job is over and every process is gone. Ctrl-C
// stops the whole cluster.
//
// Checkpoints go to RUN_DIR/checkpoints (unless checkpoint.dir says
// otherwise). --resume alone continues the newest unfinished run of the same
// config under runs/ (one without a summary.json), --resume RUN_DIR that
// one: the same run directory, its metrics continued.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/cli_flags.h"
#include "common/run_dir.h"
#include "launch/supervisor.h"

namespace {

std::atomic<int> g_signal{0};
void OnSignal(int sig) { g_signal.store(sig); }

std::string SiblingBinary(const char* argv0, const std::string& name) {
  std::error_code ec;
  auto self = std::filesystem::canonical("/proc/self/exe", ec);
  if (!ec && std::filesystem::exists(self.parent_path() / name)) return (self.parent_path() / name).string();
  (void)argv0;
  return name;  // from PATH
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ps-launch: runs a psforge cluster on this machine"};
  psforge::CommonFlags flags;
  psforge::AddCommonFlags(&app, &flags, /*with_training=*/true);
  int64_t servers = -1, workers = -1;
  std::string run_dir, resume_dir, export_path;
  auto* resume_flag =
      app.add_option("--resume", resume_dir,
                     "continue from the last committed checkpoint: the newest unfinished run of this config "
                     "under runs/, or the run directory given")
          ->expected(0, 1);
  app.add_option("--export", export_path, "write the final weights to this .npz file (ps-export's format)");
  app.add_option("--servers", servers, "parameter servers (default: cluster.servers)");
  app.add_option("--workers", workers, "workers (default: cluster.workers)");
  app.add_option("--run-dir", run_dir, "metrics, plot, summary and logs go here (default runs/<config>-<time>)");
  PSF_PARSE_FLAGS(app, argc, argv);
  if (servers != -1) flags.sets.push_back("cluster.servers=" + std::to_string(servers));
  if (workers != -1) flags.sets.push_back("cluster.workers=" + std::to_string(workers));
  // Validate here too, so a bad config is one clear line before anything starts.
  auto config = psforge::LoadConfigFromFlags(flags);
  if (!config.ok()) return std::fprintf(stderr, "ps-launch: %s\n", config.status().message().c_str()), 2;
  // Outputs that cannot be written are refused before anything trains.
  for (const auto& [path, flag] : {std::pair{export_path, "--export"}, std::pair{flags.summary_path, "--summary"}})
    if (auto s = psforge::CheckOutputFile(path, flag); !path.empty() && !s.ok())
      return std::fprintf(stderr, "ps-launch: %s\n", s.message().c_str()), 2;
  if (!export_path.empty() && !config->model.tables.empty())
    return std::fprintf(stderr, "ps-launch: --export writes dense models; this model's sparse tables "
                                "(model.tables) stay in the servers' checkpoints\n"), 2;
  if (!export_path.empty() && !config->checkpoint.enabled())
    return std::fprintf(stderr, "ps-launch: --export needs the end-of-job checkpoint, and this job writes none "
                                "(checkpoint.interval_steps and interval_s are 0)\n"), 2;
  const bool resume = resume_flag->count() > 0;
  if (resume) {
    auto dir = psforge::ResumeRunDir("ps-launch", resume_dir, run_dir, flags.config_path,
                                     !config->checkpoint.dir.empty());
    if (!dir.ok()) return std::fprintf(stderr, "ps-launch: %s\n", dir.status().message().c_str()), 2;
    run_dir = *dir;
    if (!run_dir.empty()) std::fprintf(stderr, "ps-launch: resuming %s\n", run_dir.c_str());
  }
  if (run_dir.empty()) run_dir = psforge::DefaultRunDir(flags.config_path);
  if (auto s = psforge::PrepareOutputDir(run_dir + "/logs", "the run directory's logs,"); !s.ok())
    return std::fprintf(stderr, "ps-launch: %s\n", s.message().c_str()), 2;
  std::error_code ec;
  if (auto s = psforge::WriteRunRecord(run_dir, flags.config_path, flags.sets); !s.ok())
    return std::fprintf(stderr, "ps-launch: %s\n", s.message().c_str()), 1;
  const std::string endpoint_file = run_dir + "/coordinator.endpoint";
  std::filesystem::remove(endpoint_file, ec);

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  psforge::Supervisor supervisor(stderr);
  std::vector<std::string> coordinator_argv{SiblingBinary(argv[0], "ps-coordinator"), "--config", flags.config_path,
                                            "--run-dir", run_dir, "--endpoint-file", endpoint_file,
                                            "--members-on-this-host"};
  for (const auto& s : flags.sets) coordinator_argv.insert(coordinator_argv.end(), {"--set", s});
  if (flags.epochs != -1) coordinator_argv.insert(coordinator_argv.end(), {"--epochs", std::to_string(flags.epochs)});
  if (flags.threads != -1) coordinator_argv.insert(coordinator_argv.end(), {"--threads", std::to_string(flags.threads)});
  if (!flags.summary_path.empty()) coordinator_argv.insert(coordinator_argv.end(), {"--summary", flags.summary_path});
  if (resume) coordinator_argv.push_back("--resume");
  // A coordinator that crashes (killed by a signal) is started again on the
  // same endpoint, resuming from the last committed checkpoint; the members
  // join it again. One that exits with an error ended the job.
  auto coordinator = supervisor.Start({"the coordinator", coordinator_argv, "", 3, /*restart_after_signal_only=*/true});
  if (!coordinator.ok()) return std::fprintf(stderr, "ps-launch: %s\n", coordinator.status().message().c_str()), 1;

  // The coordinator writes its endpoint once bound (it reads the data first).
  std::string endpoint;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (endpoint.empty()) {
    if (auto ended = supervisor.Poll(std::chrono::milliseconds(50)); ended == *coordinator)
      return supervisor.exit_code(*coordinator);
    std::ifstream(endpoint_file) >> endpoint;
    if (g_signal.load() || std::chrono::steady_clock::now() > deadline) {
      supervisor.StopAll(std::chrono::seconds(5));
      if (!g_signal.load()) std::fprintf(stderr, "ps-launch: the coordinator did not start within 120 s\n");
      return 1;
    }
  }
  coordinator_argv.insert(coordinator_argv.end(), {"--bind", endpoint});
  if (!resume && config->checkpoint.enabled()) coordinator_argv.push_back("--resume");
  supervisor.SetArgv(*coordinator, coordinator_argv);
  // CURVE: the members on this host share its key pair.
  std::vector<std::string> keys;
  if (config->security.curve())
    keys = {"--key", config->security.key, "--cluster-keys", config->security.cluster_keys};
  for (int64_t i = 0; i < config->cluster.servers; ++i) {
    std::vector<std::string> server{SiblingBinary(argv[0], "ps-server"), "--coordinator", endpoint};
    server.insert(server.end(), keys.begin(), keys.end());
    (void)supervisor.Start({"ps-server " + std::to_string(i), server,
                            run_dir + "/logs/server-" + std::to_string(i) + ".log", 3});
  }
  for (int64_t i = 0; i < config->cluster.workers; ++i) {
    std::vector<std::string> worker{SiblingBinary(argv[0], "ps-worker"), "--coordinator", endpoint,
                                    "--summary", run_dir + "/logs/worker-" + std::to_string(i) + ".json"};
    worker.insert(worker.end(), keys.begin(), keys.end());
    (void)supervisor.Start({"ps-worker " + std::to_string(i), worker,
                            run_dir + "/logs/worker-" + std::to_string(i) + ".log", 3});
  }

  // The job is over when the coordinator exits; the others follow it.
  bool stopping = false;
  while (supervisor.running(*coordinator)) {
    supervisor.Poll(std::chrono::milliseconds(200));
    if (g_signal.load() && !stopping) {
      stopping = true;
      std::fprintf(stderr, "\nps-launch: stopping the cluster\n");
      supervisor.DisableRestarts();
      supervisor.Signal(*coordinator, SIGTERM);
    }
  }
  supervisor.DisableRestarts();
  const auto grace = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!supervisor.AllEnded() && std::chrono::steady_clock::now() < grace) supervisor.Poll(std::chrono::milliseconds(200));
  if (!supervisor.AllEnded()) {
    std::fprintf(stderr, "ps-launch: stopping processes still running 15 s after the coordinator\n");
    supervisor.StopAll(std::chrono::seconds(5));
  }
  std::printf("logs: %s/logs\n", run_dir.c_str());
  if (stopping) return 130;
  const int code = supervisor.exit_code(*coordinator);
  if (code != 0 || export_path.empty()) return code;
  // The final weights, from the end-of-job checkpoint.
  std::vector<std::string> exporter{SiblingBinary(argv[0], "ps-export"), "--config", flags.config_path,
                                    "--run-dir", run_dir, "--out", export_path};
  for (const auto& s : flags.sets) exporter.insert(exporter.end(), {"--set", s});
  auto exported = supervisor.Start({"ps-export", exporter, "", 0});
  if (!exported.ok()) return std::fprintf(stderr, "ps-launch: %s\n", exported.status().message().c_str()), 1;
  while (supervisor.running(*exported)) supervisor.Poll(std::chrono::milliseconds(100));
  return supervisor.exit_code(*exported) == 0 ? 0 : 1;
}
