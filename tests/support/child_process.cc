#include "tests/support/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

#include "tests/support/subprocess.h"

namespace psforge::testing {

using Clock = std::chrono::steady_clock;

ChildProcess::ChildProcess(const std::vector<std::string>& argv) {
  char tmpl[] = "/tmp/psforge_child_err_XXXXXX";
  int err_fd = mkostemp(tmpl, O_CLOEXEC);
  err_path_ = tmpl;
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  pid_ = SpawnInOwnGroup(argv, pipe_fds[1], err_fd);
  close(pipe_fds[1]);
  close(err_fd);
  out_fd_ = pipe_fds[0];
}

ChildProcess::~ChildProcess() {
  if (!exit_code_) {
    kill(-pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  unlink(err_path_.c_str());
}

std::optional<std::string> ChildProcess::WaitForLine(const std::regex& pattern,
                                                     std::chrono::milliseconds deadline) {
  std::string found;
  auto accept = [&](const std::string& line) {
    std::smatch m;
    if (!std::regex_search(line, m, pattern)) return false;
    found = m.size() > 1 ? m[1].str() : m[0].str();
    return true;
  };
  if (!WaitForLine(accept, deadline)) return std::nullopt;
  return found;
}

std::size_t ChildProcess::lines_read() const {
  const auto nl = buffered_.rfind('\n');
  return nl == std::string::npos ? 0 : nl + 1;
}

std::optional<std::string> ChildProcess::WaitForLine(const std::function<bool(const std::string&)>& accept,
                                                     std::chrono::milliseconds deadline, std::size_t from) {
  const auto end = Clock::now() + deadline;
  std::size_t scanned = from;
  while (true) {
    std::size_t nl;
    while ((nl = buffered_.find('\n', scanned)) != std::string::npos) {
      std::string line = buffered_.substr(scanned, nl - scanned);
      scanned = nl + 1;
      if (accept(line)) return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{out_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = read(out_fd_, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    buffered_.append(buf, static_cast<std::size_t>(n));
  }
}

std::optional<int> ChildProcess::Wait(std::chrono::milliseconds deadline) {
  if (exit_code_) return exit_code_;
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(deadline.count()));
    close(pidfd);
    if (ready <= 0) return std::nullopt;
  }
  int status = 0;
  waitpid(pid_, &status, 0);
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return exit_code_;
}

void ChildProcess::Signal(int sig) { kill(pid_, sig); }

std::string ChildProcess::Stdout() {
  char buf[4096];
  int flags = fcntl(out_fd_, F_GETFL);
  fcntl(out_fd_, F_SETFL, flags | O_NONBLOCK);
  ssize_t n;
  while ((n = read(out_fd_, buf, sizeof buf)) > 0) buffered_.append(buf, static_cast<std::size_t>(n));
  fcntl(out_fd_, F_SETFL, flags);
  return buffered_;
}

std::string ChildProcess::Stderr() const { return ReadFile(err_path_); }

}  // namespace psforge::testing
