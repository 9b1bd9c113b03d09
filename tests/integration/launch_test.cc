// ps-launch as users run it: a whole local cluster, its run directory, its
// HTTP status while it trains, Ctrl-C, and no process left behind.
#include <gtest/gtest.h>

#include <dirent.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "tests/integration/cluster_fixture.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;

// Debian's prometheus package: `promtool check metrics` lints an exposition
// (types, names, help, counters' _total suffix) and exits non-zero on errors.
void ExpectPromtoolAccepts(const std::string& body, const std::string& file) {
  std::ofstream(file) << body;
  auto r = testing::RunProcess({"/bin/sh", "-c", "promtool check metrics < '" + file + "'"}, 60s);
  EXPECT_EQ(r.exit_code, 0) << "promtool check metrics:\n" << r.out << r.err << "\non:\n" << body;
}

TEST(Launch, ALocalClusterTrainsWritesItsRunDirectoryAndLeavesNothingBehind) {
  testing::TempDir dir;
  const std::string run = dir.File("run");
  testing::ChildProcess launch({testing::BinPath("ps-launch"), "--config", testing::kMlpConfig, "--epochs", "1",
                                "--run-dir", run});
  // While it trains, the coordinator's HTTP endpoint answers.
  auto url = launch.WaitForLine(std::regex("status: http://([0-9.]+:[0-9]+)/api/status"), 120s);
  ASSERT_TRUE(url.has_value()) << launch.Stderr();
  httplib::Client http("http://" + *url);
  auto status = http.Get("/api/status");
  ASSERT_TRUE(status && status->status == 200);
  auto snapshot = nlohmann::json::parse(status->body);
  EXPECT_EQ(snapshot["job"]["servers"], 2);
  EXPECT_EQ(snapshot["job"]["workers"], 2);
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics && metrics->status == 200);
  EXPECT_NE(metrics->body.find("psforge_members{"), std::string::npos);
  EXPECT_NE(metrics->body.find("psforge_job_info{"), std::string::npos);
  EXPECT_NE(metrics->body.find("# TYPE psforge_bad_messages_total counter"), std::string::npos) << metrics->body;
  ExpectPromtoolAccepts(metrics->body, dir.File("early.prom"));

  auto final_line = launch.WaitForLine(std::regex("final test_accuracy: ([0-9.]+)"), 300s);
  ASSERT_TRUE(final_line.has_value()) << launch.Stderr();
  EXPECT_GE(std::stod(*final_line), 0.80);
  // It was scraped: the endpoint waits for one more scrape, which sees the end.
  ASSERT_TRUE(launch.WaitForLine(std::regex("(serving the final values until the next scrape)"), 60s).has_value())
      << launch.Stderr();
  auto last = http.Get("/metrics");
  ASSERT_TRUE(last && last->status == 200);
  EXPECT_NE(last->body.find("psforge_job_state{state=\"done\"} 1"), std::string::npos) << last->body;
  EXPECT_NE(last->body.find("psforge_test_accuracy " + *final_line), std::string::npos) << last->body;
  EXPECT_EQ(last->body.find("psforge_eta_seconds"), std::string::npos) << "an ETA after the end:\n" << last->body;
  ExpectPromtoolAccepts(last->body, dir.File("final.prom"));
  EXPECT_EQ(launch.Wait(60s), std::optional<int>(0)) << launch.Stderr();
  for (const char* f : {"metrics.jsonl", "curves.png", "summary.json", "logs/server-0.log", "logs/worker-1.log"})
    EXPECT_TRUE(std::filesystem::exists(run + "/" + f)) << f;
  std::string endpoint;
  std::ifstream(run + "/coordinator.endpoint") >> endpoint;
  ASSERT_FALSE(endpoint.empty());
  EXPECT_TRUE(testing::PidsMentioning(endpoint).empty());
  EXPECT_TRUE(testing::PidsMentioning(run).empty());
}

TEST(Launch, CtrlCStopsTheWholeCluster) {
  testing::TempDir dir;
  const std::string run = dir.File("run");
  testing::ChildProcess launch({testing::BinPath("ps-launch"), "--config", testing::kMlpConfig, "--epochs", "50",
                                "--run-dir", run});
  ASSERT_TRUE(launch.WaitForLine(std::regex("(worker 1 joined)"), 120s).has_value()) << launch.Stderr();
  launch.Signal(SIGINT);  // to the whole process group, as a terminal does
  EXPECT_EQ(launch.Wait(60s), std::optional<int>(130)) << launch.Stderr();
  std::string endpoint;
  std::ifstream(run + "/coordinator.endpoint") >> endpoint;
  EXPECT_TRUE(testing::PidsMentioning(endpoint).empty());
  EXPECT_TRUE(testing::PidsMentioning(run).empty());
}

TEST(Launch, AWrongConfigFailsFastNamingIt) {
  testing::TempDir dir;
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv{testing::BinPath("ps-launch"), "--config", testing::kMlpConfig, "--run-dir",
                                  dir.File("run")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::RunProcess(argv, 60s);
  };
  auto unknown = run({"--set", "cluster.bogus=1"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("cluster.bogus"), std::string::npos) << unknown.err;
  auto missing = run({"--set", "data.train_images=/nonexistent/train.gz"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("data.train_images"), std::string::npos) << missing.err;
  // The HTTP port taken by someone else: the coordinator names it, the launch fails.
  httplib::Server other;
  const int port = other.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  auto taken = run({"--set", "cluster.http=127.0.0.1:" + std::to_string(port)});
  EXPECT_EQ(taken.exit_code, 1);
  EXPECT_NE(taken.err.find("cluster.http"), std::string::npos) << taken.err;
}

}  // namespace
}  // namespace psforge
