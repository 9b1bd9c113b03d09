// A long-running child process for multi-process tests: started in its own
// process group with standard output on a pipe (read line by line with a
// deadline) and standard error to a file; signalled, waited for with a
// deadline, and killed with its group by the destructor if still running.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <vector>

namespace psforge::testing {

class ChildProcess {
 public:
  explicit ChildProcess(const std::vector<std::string>& argv);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // The first match of `pattern` (group 1 if it has one) in a stdout line
  // that arrives before the deadline; nullopt on timeout or end of output.
  std::optional<std::string> WaitForLine(const std::regex& pattern, std::chrono::milliseconds deadline);
  // The first stdout line from offset `from` on (see lines_read()) that
  // `accept` takes, arriving before the deadline; nullopt otherwise.
  std::optional<std::string> WaitForLine(const std::function<bool(const std::string&)>& accept,
                                         std::chrono::milliseconds deadline, std::size_t from = 0);
  // The offset just past the last whole line read so far.
  std::size_t lines_read() const;
  // The exit code once exited (-1 if killed by a signal); nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds deadline);
  void Signal(int sig);
  std::string Stdout();  // everything read so far plus what is left
  std::string Stderr() const;

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string err_path_;
  std::string buffered_;
  std::optional<int> exit_code_;
};

}  // namespace psforge::testing
