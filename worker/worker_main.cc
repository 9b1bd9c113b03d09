// ps-worker: one worker of a cluster job.
//
//   ps-worker --config FILE --index I --servers EP0,EP1,... [--epochs N] [--threads N]
//             [--summary FILE] [--set section.field=value]
//
// Trains on its share of every global batch, exchanging gradients and
// weights with the servers (server i at the i-th endpoint owns the i-th key
// range), and evaluates on the test set after each epoch.
#include <omp.h>

#include <cstdio>
#include <sstream>

#include "common/cli_flags.h"
#include "worker/train_job.h"

int main(int argc, char** argv) {
  CLI::App app{"ps-worker: one worker of a psforge cluster job"};
  psforge::CommonFlags flags;
  psforge::AddCommonFlags(&app, &flags, /*with_training=*/true);
  int64_t index = 0;
  std::string servers;
  app.add_option("--index", index, "which worker of cluster.workers (0-based)")->required();
  app.add_option("--servers", servers, "server endpoints in server order, comma-separated")->required();
  CLI11_PARSE(app, argc, argv);

  auto config = psforge::LoadConfigFromFlags(flags);
  if (!config.ok()) return std::fprintf(stderr, "ps-worker: %s\n", config.status().message().c_str()), 2;
  std::vector<std::string> endpoints;
  std::stringstream ss(servers);
  for (std::string e; std::getline(ss, e, ',');)
    if (!e.empty()) endpoints.push_back(e);
  omp_set_num_threads(static_cast<int>(config->training.threads));
  auto result = psforge::RunClusterWorker(*config, index, endpoints, stderr);
  return psforge::ReportResult("ps-worker", result, *config, flags.summary_path);
}
