// ps-coordinator: runs one job for the servers and workers that join it.
//
//   ps-coordinator --config FILE [--bind tcp://127.0.0.1:0] [--run-dir DIR] [--resume]
//                  [--servers S] [--workers W] [--epochs N] [--threads N]
//                  [--summary FILE] [--set section.field=value]
//
// Prints "ps-coordinator listening on ENDPOINT" (servers and workers are
// started with --coordinator ENDPOINT) and the HTTP status address, shows
// progress, and writes metrics, a plot and the summary to the run directory
// (default runs/<config>-<time>). Exits 0 when the job completed, 1 when it
// failed or was stopped (SIGINT, SIGTERM), 2 on a bad config.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/cli_flags.h"
#include "common/run_dir.h"
#include "coordinator/coordinator.h"
#include "coordinator/http_status.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ps-coordinator: runs a psforge cluster job"};
  psforge::CommonFlags flags;
  psforge::AddCommonFlags(&app, &flags, /*with_training=*/true);
  psforge::CoordinatorOptions options;
  int64_t servers = -1, workers = -1;
  bool no_run_dir = false;
  app.add_option("--bind", options.bind, "endpoint servers and workers reach the coordinator at");
  app.add_option("--run-dir", options.run_dir, "where metrics.jsonl, curves.png and summary.json go");
  app.add_flag("--no-run-dir", no_run_dir, "write no run directory");
  app.add_flag("--resume", options.resume,
               "continue the job from its last committed checkpoint (checkpoint.dir), not from the start");
  std::string endpoint_file;
  app.add_option("--endpoint-file", endpoint_file, "also write the endpoint to this file (for launchers)");
  app.add_flag("--members-on-this-host", options.members_on_this_host,
               "every server and worker runs on this machine (ps-launch): refuse a cluster its memory cannot hold");
  app.add_option("--servers", servers, "overrides cluster.servers");
  app.add_option("--workers", workers, "overrides cluster.workers");
  PSF_PARSE_FLAGS(app, argc, argv);
  if (servers != -1) flags.sets.push_back("cluster.servers=" + std::to_string(servers));
  if (workers != -1) flags.sets.push_back("cluster.workers=" + std::to_string(workers));

  auto config = psforge::LoadConfigFromFlags(flags);
  if (!config.ok()) return std::fprintf(stderr, "ps-coordinator: %s\n", config.status().message().c_str()), 2;
  options.summary_path = flags.summary_path;
  if (no_run_dir) {
    options.run_dir.clear();
  } else if (options.run_dir.empty() && options.resume && config->checkpoint.dir.empty()) {
    // Resuming without a run directory (ps-supervise restarting a crashed
    // coordinator under mpirun, or a user): the newest unfinished run of
    // this config, where its checkpoints are.
    auto dir = psforge::ResumeRunDir("ps-coordinator", "", "", flags.config_path, /*checkpoint_dir_set=*/false);
    if (!dir.ok()) return std::fprintf(stderr, "ps-coordinator: %s\n", dir.status().message().c_str()), 2;
    options.run_dir = *dir;
  } else if (options.run_dir.empty()) {
    options.run_dir = psforge::DefaultRunDir(flags.config_path);
  }
  // Outputs that cannot be written are refused before anything trains.
  if (auto s = psforge::CheckOutputFile(options.summary_path, "--summary"); !s.ok())
    return std::fprintf(stderr, "ps-coordinator: %s\n", s.message().c_str()), 2;
  if (!options.run_dir.empty())
    if (auto s = psforge::PrepareOutputDir(options.run_dir, "the run directory");
        !s.ok() || !(s = psforge::WriteRunRecord(options.run_dir, flags.config_path, flags.sets)).ok())
      return std::fprintf(stderr, "ps-coordinator: %s\n", s.message().c_str()), 2;

  if (auto s = psforge::CheckPlaintextBind("ps-coordinator", options.bind, config->security.curve(),
                                          config->security.plaintext);
      !s.ok())
    return std::fprintf(stderr, "ps-coordinator: %s\n", s.message().c_str()), 2;
  psforge::RaiseOpenFileLimit();
  auto created = psforge::CreateTransport(config->security.key, config->security.cluster_keys);
  if (!created.ok()) return std::fprintf(stderr, "ps-coordinator: %s\n", created.status().message().c_str()), 2;
  auto transport = std::move(*created);
  auto coordinator = psforge::Coordinator::Create(*config, transport.get(), options);
  if (!coordinator.ok())
    return std::fprintf(stderr, "ps-coordinator: %s\n", coordinator.status().message().c_str()), 1;
  std::unique_ptr<psforge::HttpStatus> http;
  if (!config->cluster.http.empty()) {
    psforge::Coordinator* c = coordinator->get();
    auto started = psforge::HttpStatus::Start(config->cluster.http, [c] { return c->Snapshot(); },
                                              [c] { return c->TimelineJson(); });
    if (!started.ok()) return std::fprintf(stderr, "ps-coordinator: %s\n", started.status().message().c_str()), 1;
    http = std::move(*started);
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  if (!endpoint_file.empty()) {
    // Written whole, then renamed: a reader never sees half of it.
    std::ofstream(endpoint_file + ".tmp") << (*coordinator)->endpoint() << "\n";
    std::error_code ec;
    std::filesystem::rename(endpoint_file + ".tmp", endpoint_file, ec);
    if (ec) return std::fprintf(stderr, "ps-coordinator: cannot write %s\n", endpoint_file.c_str()), 1;
  }
  std::printf("ps-coordinator listening on %s\n", (*coordinator)->endpoint().c_str());
  if (http)
    std::printf("dashboard: %s/  status: %s/api/status  metrics: %s/metrics\n", http->url().c_str(),
                http->url().c_str(), http->url().c_str());
  if (!options.run_dir.empty()) std::printf("run directory: %s\n", options.run_dir.c_str());
  std::fflush(stdout);
  psforge::Status outcome = (*coordinator)->Run(g_stop);
  if (!outcome.ok()) std::fprintf(stderr, "ps-coordinator: %s\n", outcome.message().c_str());
  // Something scrapes /metrics (Prometheus): the endpoint stays up until its
  // next scrape, which then sees the final values (at most
  // cluster.http_linger_s; a signal ends the wait).
  if (http && http->metrics_scrapes() > 0 && config->cluster.http_linger_s > 0 && !g_stop.load()) {
    const int64_t seen = http->metrics_scrapes();
    std::printf("status: serving the final values until the next scrape of %s/metrics (at most %.0f s)\n",
                http->url().c_str(), config->cluster.http_linger_s);
    std::fflush(stdout);
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double>(config->cluster.http_linger_s));
    while (http->metrics_scrapes() == seen && !g_stop.load() && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return outcome.ok() ? 0 : 1;
}
