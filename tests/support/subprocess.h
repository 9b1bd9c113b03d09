// Runs a program as a child process for tests: output captured to files,
// waited for with a deadline (pidfd + poll, no sleeping), killed with its
// process group if the deadline passes. Thread-compatible.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace psforge::testing {

struct ProcessResult {
  int exit_code = -1;   // exit status, or -1 when killed by a signal
  int signal = 0;       // the signal that ended it, 0 if none
  bool timed_out = false;
  std::string out;      // standard output
  std::string err;      // standard error
};

// Starts argv[0] (a path) in a process group of its own, with standard input
// from /dev/null and standard output and error on the given descriptors
// (which the child closes after duplicating). Returns the child's pid.
int SpawnInOwnGroup(const std::vector<std::string>& argv, int out_fd, int err_fd);

// Runs argv[0] (a path) with arguments; returns once it has exited or was
// killed at the deadline.
ProcessResult RunProcess(const std::vector<std::string>& argv, std::chrono::milliseconds deadline);

// The path of a psforge executable in build/bin/.
std::string BinPath(const std::string& name);

// A fresh, empty temporary directory removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);

// A loopback TCP port free a moment ago, below the kernel's ephemeral range
// (so no outgoing connection takes it before the program binds it), for a
// program that must be told its port up front.
int FreeLoopbackPort();

// Processes other than this one whose command line mentions `text`.
std::vector<int> PidsMentioning(const std::string& text);

}  // namespace psforge::testing
