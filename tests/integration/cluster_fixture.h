// Starting real ps-server and ps-worker processes on loopback for tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/subprocess.h"

namespace psforge::testing {

inline const std::string kMlpConfig = PSFORGE_SOURCE_DIR "/configs/fashion_mnist_mlp.yaml";

struct RunningServer {
  std::unique_ptr<ChildProcess> process;
  std::string endpoint;
};

// Starts servers 0..n-1 of `config` with `sets` overrides; each binds a port
// the OS picks and reports it on its first line.
inline std::vector<RunningServer> StartServers(const std::string& config, int n,
                                               const std::vector<std::string>& sets) {
  std::vector<RunningServer> servers;
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> argv{BinPath("ps-server"), "--config", config, "--index", std::to_string(i)};
    for (const auto& s : sets) argv.insert(argv.end(), {"--set", s});
    auto p = std::make_unique<ChildProcess>(argv);
    auto endpoint = p->WaitForLine(std::regex("listening on (\\S+)"), std::chrono::seconds(30));
    EXPECT_TRUE(endpoint.has_value()) << "server " << i << " did not start: " << p->Stderr();
    servers.push_back({std::move(p), endpoint.value_or("")});
  }
  return servers;
}

inline std::string Endpoints(const std::vector<RunningServer>& servers) {
  std::string s;
  for (const auto& r : servers) s += (s.empty() ? "" : ",") + r.endpoint;
  return s;
}

inline std::unique_ptr<ChildProcess> StartWorker(const std::string& config, int index,
                                                 const std::vector<RunningServer>& servers,
                                                 const std::vector<std::string>& sets,
                                                 const std::string& summary = "") {
  std::vector<std::string> argv{BinPath("ps-worker"), "--config", config, "--index",
                                std::to_string(index), "--servers", Endpoints(servers)};
  for (const auto& s : sets) argv.insert(argv.end(), {"--set", s});
  if (!summary.empty()) argv.insert(argv.end(), {"--summary", summary});
  return std::make_unique<ChildProcess>(argv);
}

// SIGTERM, then expects a clean exit 0 within the deadline.
inline void StopServers(std::vector<RunningServer>& servers) {
  for (auto& s : servers) s.process->Signal(SIGTERM);
  for (auto& s : servers) {
    auto code = s.process->Wait(std::chrono::seconds(10));
    EXPECT_EQ(code, std::optional<int>(0)) << s.process->Stderr();
  }
}

}  // namespace psforge::testing
