// Supervisor: starts the processes of a cluster on this machine, watches
// them, restarts one that dies abnormally (with a growing pause, a bounded
// number of times), and stops them all. Used by ps-launch (a whole cluster)
// and ps-supervise (one role of an mpirun job, so that a crash restarts the
// role instead of ending the MPI job).
//
// Children share the supervisor's process group, so a Ctrl-C on the
// terminal reaches them too. Not thread-safe: one owner thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace psforge {

struct ChildSpec {
  std::string name;               // for messages: "server 1", "worker 0"
  std::vector<std::string> argv;  // argv[0] is a path or a name on PATH
  std::string log_path;           // stdout and stderr go here; "" inherits ours
  int max_restarts = 0;           // after an abnormal exit (signal or non-zero code)
  bool restart_after_signal_only = false;  // a non-zero code is final (the job failed, say)
};

class Supervisor {
 public:
  explicit Supervisor(std::FILE* log = stderr) : log_(log) {}
  ~Supervisor();  // kills what still runs

  // Starts a child; returns its index.
  Result<int> Start(const ChildSpec& spec);

  // Reaps exits and restarts what is due, for at most `timeout`. Returns the
  // index of a child that ended for good (exited, or out of restarts).
  std::optional<int> Poll(std::chrono::milliseconds timeout);

  bool running(int i) const { return children_[i].pid > 0 || children_[i].restart_at.has_value(); }
  // The exit code of an ended child: its code, or 128 + signal.
  int exit_code(int i) const { return children_[i].exit_code; }
  bool AllEnded() const;
  void Signal(int i, int sig);
  void SignalAll(int sig);
  // From now on an exit is final: the cluster is stopping.
  void DisableRestarts();
  // SIGTERM, then SIGKILL what is still running after `grace`.
  void StopAll(std::chrono::milliseconds grace);
  const ChildSpec& spec(int i) const { return children_[i].spec; }
  // How child `i` is started from its next restart on.
  void SetArgv(int i, std::vector<std::string> argv) { children_[i].spec.argv = std::move(argv); }

 private:
  struct Child {
    ChildSpec spec;
    pid_t pid = -1;
    int restarts = 0;
    int exit_code = 0;
    std::optional<std::chrono::steady_clock::time_point> restart_at;
  };
  Status Spawn(Child& c);

  std::FILE* log_;
  std::vector<Child> children_;
};

std::string DescribeExit(int status);

}  // namespace psforge
