#include "launch/supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "common/clock.h"

extern char** environ;

namespace psforge {
namespace {


}  // namespace

std::string DescribeExit(int status) {
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + strsignal(WTERMSIG(status));
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

Supervisor::~Supervisor() { StopAll(std::chrono::milliseconds(0)); }

Status Supervisor::Spawn(Child& c) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!c.spec.log_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, 1, c.spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  }
  std::vector<char*> argv;
  for (auto& a : c.spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  int err = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return Unavailable("cannot start " + c.spec.name + " (" + c.spec.argv[0] + "): " + strerror(err));
  c.pid = pid;
  c.restart_at.reset();
  return Status::Ok();
}

Result<int> Supervisor::Start(const ChildSpec& spec) {
  Child c;
  c.spec = spec;
  children_.push_back(std::move(c));
  PSF_RETURN_IF_ERROR(Spawn(children_.back()));
  return static_cast<int>(children_.size()) - 1;
}

std::optional<int> Supervisor::Poll(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (std::size_t i = 0; i < children_.size(); ++i) {
        Child& c = children_[i];
        if (c.pid != pid) continue;
        c.pid = -1;
        // Named with its pid, as the coordinator names members.
        const std::string who = c.spec.name + " (pid " + std::to_string(pid) + ")";
        c.exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
        const bool abnormal = WIFSIGNALED(status) || WEXITSTATUS(status) != 0;
        const bool restartable = abnormal && (WIFSIGNALED(status) || !c.spec.restart_after_signal_only);
        if (restartable && c.restarts < c.spec.max_restarts) {
          const auto pause = std::chrono::milliseconds(500) * (1 << std::min(c.restarts, 5));
          ++c.restarts;
          std::fprintf(log_, "%s %s; restarting it in %.1f s (restart %d of %d)\n", who.c_str(),
                       DescribeExit(status).c_str(), std::chrono::duration<double>(pause).count(),
                       c.restarts, c.spec.max_restarts);
          std::fflush(log_);
          c.restart_at = Clock::now() + pause;
          break;
        }
        if (abnormal) {
          std::fprintf(log_, "%s %s%s\n", who.c_str(), DescribeExit(status).c_str(),
                       c.spec.log_path.empty() ? "" : ("; its log: " + c.spec.log_path).c_str());
          std::fflush(log_);
        }
        return static_cast<int>(i);
      }
      continue;
    }
    for (std::size_t i = 0; i < children_.size(); ++i) {
      Child& c = children_[i];
      if (c.restart_at && Clock::now() >= *c.restart_at) {
        Status s = Spawn(c);
        if (!s.ok()) {
          std::fprintf(log_, "%s\n", s.message().c_str());
          c.restart_at.reset();
          c.exit_code = 127;
          return static_cast<int>(i);
        }
      }
    }
    if (Clock::now() >= deadline) return std::nullopt;
    // Child exits are polled: a short, bounded pause between looks.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

bool Supervisor::AllEnded() const {
  for (std::size_t i = 0; i < children_.size(); ++i)
    if (running(static_cast<int>(i))) return false;
  return true;
}

void Supervisor::Signal(int i, int sig) {
  if (children_[i].pid > 0) kill(children_[i].pid, sig);
}

void Supervisor::DisableRestarts() {
  for (auto& c : children_) {
    c.spec.max_restarts = 0;
    if (c.restart_at) {  // pending: it ends here
      c.restart_at.reset();
      c.exit_code = c.exit_code == 0 ? 1 : c.exit_code;
    }
  }
}

void Supervisor::SignalAll(int sig) {
  for (std::size_t i = 0; i < children_.size(); ++i) {
    children_[i].restart_at.reset();
    Signal(static_cast<int>(i), sig);
  }
}

void Supervisor::StopAll(std::chrono::milliseconds grace) {
  SignalAll(SIGTERM);
  const auto deadline = Clock::now() + grace;
  while (!AllEnded() && Clock::now() < deadline) Poll(std::chrono::milliseconds(50));
  for (auto& c : children_) {
    if (c.pid <= 0) continue;
    kill(c.pid, SIGKILL);
    waitpid(c.pid, nullptr, 0);
    c.pid = -1;
  }
}

}  // namespace psforge
