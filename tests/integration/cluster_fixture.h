// Starting a real cluster on loopback for tests: a ps-coordinator, its
// ps-server processes and ps-worker processes, each on a port the OS picks.
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

struct TestCluster {
  std::unique_ptr<ChildProcess> coordinator;
  std::string coordinator_endpoint;
  std::vector<RunningServer> servers;
};

// Starts a coordinator for `config` with `sets` overrides (and `coordinator_args`),
// then `servers` servers; returns once every server is serving.
inline TestCluster StartCluster(const std::string& config, int servers,
                                std::vector<std::string> sets,
                                const std::vector<std::string>& coordinator_args = {},
                                const std::vector<std::string>& server_args = {}) {
  TestCluster c;
  sets.push_back("cluster.servers=" + std::to_string(servers));
  std::vector<std::string> argv{BinPath("ps-coordinator"), "--config", config, "--no-run-dir"};
  for (const auto& s : sets) argv.insert(argv.end(), {"--set", s});
  argv.insert(argv.end(), coordinator_args.begin(), coordinator_args.end());
  c.coordinator = std::make_unique<ChildProcess>(argv);
  auto endpoint = c.coordinator->WaitForLine(std::regex("listening on (\\S+)"), std::chrono::seconds(60));
  EXPECT_TRUE(endpoint.has_value()) << "the coordinator did not start: " << c.coordinator->Stderr();
  c.coordinator_endpoint = endpoint.value_or("tcp://127.0.0.1:1");
  for (int i = 0; i < servers; ++i) {
    std::vector<std::string> server{BinPath("ps-server"), "--coordinator", c.coordinator_endpoint};
    server.insert(server.end(), server_args.begin(), server_args.end());
    c.servers.push_back({std::make_unique<ChildProcess>(server), ""});
  }
  for (auto& s : c.servers) {
    auto line = s.process->WaitForLine(std::regex("listening on (\\S+)"), std::chrono::seconds(60));
    EXPECT_TRUE(line.has_value()) << "a server did not start: " << s.process->Stderr();
    s.endpoint = line.value_or("");
  }
  return c;
}

inline std::unique_ptr<ChildProcess> StartWorker(const TestCluster& c, const std::string& summary = "",
                                                 const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv{BinPath("ps-worker"), "--coordinator", c.coordinator_endpoint};
  if (!summary.empty()) argv.insert(argv.end(), {"--summary", summary});
  argv.insert(argv.end(), extra.begin(), extra.end());
  return std::make_unique<ChildProcess>(argv);
}

// After a job that completes: the coordinator and every server exit on their own, 0.
inline void ExpectClusterExits(TestCluster& c, std::chrono::seconds deadline = std::chrono::seconds(60)) {
  EXPECT_EQ(c.coordinator->Wait(deadline), std::optional<int>(0)) << c.coordinator->Stderr();
  for (auto& s : c.servers) EXPECT_EQ(s.process->Wait(deadline), std::optional<int>(0)) << s.process->Stderr();
}

// Ends a job early: SIGTERM to the coordinator, which tells the servers to
// stop; they exit 0, the coordinator 1 (the job did not finish).
inline void StopCluster(TestCluster& c) {
  c.coordinator->Signal(SIGTERM);
  EXPECT_EQ(c.coordinator->Wait(std::chrono::seconds(30)), std::optional<int>(1)) << c.coordinator->Stderr();
  for (auto& s : c.servers)
    EXPECT_EQ(s.process->Wait(std::chrono::seconds(30)), std::optional<int>(0)) << s.process->Stderr();
}

}  // namespace psforge::testing
