// ps-server: serves one key range of a job's model.
//
//   ps-server --config FILE --index I [--bind tcp://127.0.0.1:0] [--set section.field=value]
//
// Prints "ps-server I listening on ENDPOINT" once bound (port 0 = the OS picks),
// serves until SIGINT/SIGTERM or a shutdown control message, exits 0.
#include <omp.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "common/cli_flags.h"
#include "common/dataset.h"
#include "common/model_spec.h"
#include "paramserver/server.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ps-server: one parameter server of a psforge job"};
  psforge::CommonFlags flags;
  psforge::AddCommonFlags(&app, &flags, /*with_training=*/false);
  std::string bind = "tcp://127.0.0.1:0";
  int64_t index = 0;
  app.add_option("--index", index, "which server of cluster.servers (0-based)")->required();
  app.add_option("--bind", bind, "endpoint to bind; port 0 lets the OS pick");
  CLI11_PARSE(app, argc, argv);

  auto config = psforge::LoadConfigFromFlags(flags);
  if (!config.ok()) return std::fprintf(stderr, "ps-server: %s\n", config.status().message().c_str()), 2;
  omp_set_num_threads(static_cast<int>(config->cluster.server_threads));
  auto features = psforge::ReadFeatureCount(*config);
  if (!features.ok()) return std::fprintf(stderr, "ps-server: %s\n", features.status().ToString().c_str()), 1;
  auto spec = psforge::ModelSpec::FromConfig(config->model, *features);
  if (!spec.ok()) return std::fprintf(stderr, "ps-server: %s\n", spec.status().ToString().c_str()), 1;

  auto transport = psforge::Transport::CreateZmq();
  auto server = psforge::ParamServer::Create(*config, *spec, index, transport.get(), bind);
  if (!server.ok()) return std::fprintf(stderr, "ps-server: %s\n", server.status().ToString().c_str()), 1;
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::printf("ps-server %lld listening on %s keys [%lld, %lld) %s\n", (long long)index,
              (*server)->endpoint().c_str(), (long long)(*server)->range().begin,
              (long long)(*server)->range().end, psforge::ConsistencyName(config->cluster.consistency));
  std::fflush(stdout);
  psforge::Status served = (*server)->Serve(g_stop);
  std::fprintf(stderr, "ps-server %lld: stopped; stats %s\n", (long long)index,
               (*server)->stats().ToJson().c_str());
  if (!served.ok()) return std::fprintf(stderr, "ps-server: %s\n", served.ToString().c_str()), 1;
  return 0;
}
