// Where a server keeps its evicted rows (cluster.spill_dir), and the
// stores that killed servers left behind there.
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

#include "paramserver/server.h"

namespace psforge {

std::string ParamServer::SpillDir(const JobConfig& config, int64_t index) {
  // Without a folder of its own (and a run directory, which the
  // coordinator turns into one): a folder of this process's own.
  if (config.cluster.spill_dir.empty())
    return (std::filesystem::temp_directory_path() / ("psforge-spill-" + std::to_string(::getpid())) /
            ("server-" + std::to_string(index))).string();
  return config.cluster.spill_dir + "/server-" + std::to_string(index);
}

void ParamServer::RemoveDeadSpills(const std::string& dir) {
  // rows-<pid>-<n>: the stores of servers that were killed before they
  // could remove them (a store is its process's alone).
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("rows-", 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + 5, nullptr, 10);
    if (pid > 0 && pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
      std::filesystem::remove_all(entry.path(), ec);
  }
}

}  // namespace psforge
