// ps-supervise: runs one command and restarts it when it dies abnormally.
//
//   ps-supervise [--max-restarts N] [--signals-only] [--restart-with=ARG ...]
//                -- COMMAND [ARGS...]
//
// For mpirun: Open MPI ends the whole job when one rank exits abnormally, so
// each rank runs its role under ps-supervise, which restarts a crashed role
// (after 0.5 s, doubling each time) and exits with the role's code once it
// ends for good. SIGINT and SIGTERM are passed on. The coordinator's rank:
// `--signals-only --restart-with=--resume` (an exit code is the job's
// outcome; a crashed coordinator continues from the last checkpoint).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "common/cli_flags.h"
#include "launch/supervisor.h"

namespace {
std::atomic<int> g_signal{0};
void OnSignal(int sig) { g_signal.store(sig); }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ps-supervise: restarts a command that crashes"};
  int max_restarts = 5;
  std::vector<std::string> command, restart_with;
  bool signals_only = false;
  app.add_option("--max-restarts", max_restarts, "restarts after abnormal exits")->check(CLI::NonNegativeNumber);
  app.add_flag("--signals-only", signals_only, "restart only when killed by a signal (an exit code is final)");
  app.add_option("--restart-with", restart_with, "an argument added to the command when it is restarted (repeatable)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  // Everything after "--" is the command, taken as is (not parsed as options).
  int split = 1;
  while (split < argc && std::string(argv[split]) != "--") ++split;
  if (split >= argc - 1) {
    PSF_PARSE_FLAGS(app, split, argv);  // --help, or a bad option
    std::fprintf(stderr, "ps-supervise: no command given after --\n");
    return 2;
  }
  command.assign(argv + split + 1, argv + argc);
  PSF_PARSE_FLAGS(app, split, argv);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  psforge::Supervisor supervisor(stderr);
  auto child = supervisor.Start({command[0], command, "", max_restarts, signals_only});
  if (!child.ok()) return std::fprintf(stderr, "ps-supervise: %s\n", child.status().message().c_str()), 127;
  command.insert(command.end(), restart_with.begin(), restart_with.end());
  supervisor.SetArgv(*child, command);
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
