#include "tests/support/subprocess.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <utility>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace psforge::testing {

std::vector<int> PidsMentioning(const std::string& text) {
  std::vector<int> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos || std::stoi(name) == getpid()) continue;
    std::string cmd = ReadFile((entry.path() / "cmdline").string());
    for (char& c : cmd)
      if (c == '\0') c = ' ';
    if (cmd.find(text) != std::string::npos) pids.push_back(std::stoi(name));
  }
  return pids;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

namespace {

// The kernel's range of ephemeral ports (the source ports of outgoing
// connections and of binds to port 0), 32768-60999 where it cannot be read.
std::pair<int, int> EphemeralPorts() {
  std::istringstream in(ReadFile("/proc/sys/net/ipv4/ip_local_port_range"));
  int low = 0, high = 0;
  if (in >> low >> high && low > 0 && high >= low) return {low, high};
  return {32768, 60999};
}

// Whether a loopback TCP listener could bind `port` now.
bool CanBind(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace

int FreeLoopbackPort() {
  // Outside the ephemeral range: a port the OS hands out for port 0 can be
  // taken, between this probe and the program's bind, as the source port of
  // any process's outgoing connection (a parallel test's, say), and the
  // program then fails with "Address already in use". Below the range only
  // an explicit bind can take it.
  const auto [low, high] = EphemeralPorts();
  const int first = low > 11024 ? 10000 : high + 1;
  const int last = low > 11024 ? low - 1 : 65535;
  if (last - first < 1000) throw std::runtime_error("no port range outside the ephemeral ports");
  std::mt19937 random(std::random_device{}() ^ static_cast<unsigned>(getpid()));
  std::uniform_int_distribution<int> pick(first, last);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = pick(random);
    if (CanBind(port)) return port;
  }
  throw std::runtime_error("no free loopback port outside the ephemeral range after 200 tries");
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "psforge_test_XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string BinPath(const std::string& name) { return std::string(PSFORGE_BIN_DIR) + "/" + name; }

int SpawnInOwnGroup(const std::vector<std::string>& argv, int out_fd, int err_fd) {
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    setpgid(0, 0);  // its own group, so a kill reaches everything it started
    int in = open("/dev/null", O_RDONLY);
    dup2(in, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

ProcessResult RunProcess(const std::vector<std::string>& argv, std::chrono::milliseconds deadline) {
  TempDir dir;
  const std::string out_path = dir.File("out"), err_path = dir.File("err");
  int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  pid_t pid = SpawnInOwnGroup(argv, out, err);
  close(out);
  close(err);
  ProcessResult r;
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(deadline.count()));
    close(pidfd);
    if (ready == 0) {
      r.timed_out = true;
      kill(-pid, SIGKILL);
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.out = ReadFile(out_path);
  r.err = ReadFile(err_path);
  return r;
}

}  // namespace psforge::testing
