// ps-supervise: runs one command and restarts it when it dies abnormally.
//
//   ps-supervise [--max-restarts N] -- COMMAND [ARGS...]
//
// For mpirun: Open MPI ends the whole job when one rank exits abnormally, so
// each rank runs its role under ps-supervise, which restarts a crashed role
// (after 0.5 s, doubling each time) and exits with the role's code once it
// ends for good. SIGINT and SIGTERM are passed on.
#include <atomic>
#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "launch/supervisor.h"

namespace {
std::atomic<int> g_signal{0};
void OnSignal(int sig) { g_signal.store(sig); }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ps-supervise: restarts a command that crashes"};
  int max_restarts = 5;
  std::vector<std::string> command;
  app.add_option("--max-restarts", max_restarts, "restarts after abnormal exits")->check(CLI::NonNegativeNumber);
  app.add_option("command", command, "the command and its arguments (after --)")->required();
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  psforge::Supervisor supervisor(stderr);
  auto child = supervisor.Start({command[0], command, "", max_restarts});
  if (!child.ok()) return std::fprintf(stderr, "ps-supervise: %s\n", child.status().message().c_str()), 127;
  bool forwarded = false;
  while (supervisor.running(*child)) {
    supervisor.Poll(std::chrono::milliseconds(200));
    if (g_signal.load() && !forwarded) {
      forwarded = true;
      supervisor.SignalAll(g_signal.load());
    }
  }
  return supervisor.exit_code(*child);
}
