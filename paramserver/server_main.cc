// ps-server: serves one key range of a job's model.
//
//   ps-server --coordinator tcp://HOST:PORT [--bind tcp://127.0.0.1:0]
//             [--advertise HOST] [--connect-timeout S]
//             [--key FILE --cluster-keys FILE] [--faults SPEC]
//
// Binds (port 0: the OS picks), joins the coordinator's job, which says which
// server it is and so which key range it owns, prints "ps-server I listening
// on ENDPOINT keys [a, b) MODE", and serves until the job ends, SIGINT or
// SIGTERM: exit 0 (paramserver/server_runner.h).
#include <atomic>
#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "common/openmp_env.h"
#include "common/transport.h"
#include "paramserver/server_runner.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }
}  // namespace

int main(int argc, char** argv) {
  psforge::BoundOpenMpSpinning(argv);  // common/openmp_env.h
  CLI::App app{"ps-server: one parameter server of a psforge job"};
  psforge::ServerOptions options;
  psforge::AddMemberFlags(&app, &options.member);
  app.add_option("--bind", options.bind, "endpoint to bind; port 0 lets the OS pick");
  app.add_option("--advertise", options.advertise,
                 "host workers reach this server at, when bound to a wildcard (default: this host's address on "
                 "the route to the coordinator)");
  PSF_PARSE_FLAGS(app, argc, argv);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  psforge::RaiseOpenFileLimit();
  const psforge::Status served = psforge::RunServer(options, g_stop, stdout);
  if (served.ok()) return 0;
  std::fprintf(stderr, "ps-server: %s\n", served.message().c_str());
  return 1;
}
