// The dashboard in a real browser: Debian's Chromium, headless, loads the
// page from a running ps-launch job (its script polls the coordinator's
// JSON API and draws), and the test reads the DOM the script built: every
// member listed with its state, a loss curve that grows as the job trains,
// a killed and restarted worker shown as events, no script errors; then the
// static copy the job leaves in its run directory, and a screenshot of it.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "tests/integration/cluster_fixture.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;

const char* kChromium = "/usr/bin/chromium";

struct Page {
  std::string dom, log;
};

// The DOM of `url` after its script has run for a few seconds of page time.
Page Load(const std::string& url, const testing::TempDir& dir, const std::string& screenshot = "") {
  std::vector<std::string> argv{kChromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--user-data-dir=" + dir.File("chromium-profile"), "--window-size=1400,1800",
                                "--virtual-time-budget=4000", "--enable-logging=stderr", "--v=0"};
  argv.push_back(screenshot.empty() ? "--dump-dom" : "--screenshot=" + screenshot);
  argv.push_back(url);
  auto r = testing::RunProcess(argv, 120s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return {r.out, r.err};
}

std::map<std::string, std::string> MemberStates(const std::string& dom, int* rows) {
  std::map<std::string, std::string> states;
  static const std::regex row("<tr data-role=\"(server|worker)\" data-id=\"(\\d+)\" data-state=\"(\\w+)\">");
  *rows = 0;
  for (auto it = std::sregex_iterator(dom.begin(), dom.end(), row); it != std::sregex_iterator(); ++it, ++*rows)
    states[(*it)[1].str() + " " + (*it)[2].str()] = (*it)[3].str();
  return states;
}

int64_t LossPoints(const std::string& dom) {
  std::smatch m;
  static const std::regex chart("id=\"chart-loss\"[^>]*data-points=\"(\\d+)\"");
  return std::regex_search(dom, m, chart) ? std::stoll(m[1].str()) : -1;
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// No script error: the page's own error box stayed empty, and the browser's
// console reported no uncaught exception.
void ExpectNoScriptErrors(const Page& page) {
  EXPECT_NE(page.dom.find("<div id=\"errors\"></div>"), std::string::npos)
      << "the page reported errors:\n" << page.dom.substr(page.dom.find("id=\"errors\""), 400);
  for (const char* bad : {"Uncaught", "SyntaxError", "TypeError", "ReferenceError"})
    EXPECT_EQ(page.log.find(bad), std::string::npos) << bad << " in the browser's log:\n" << page.log;
}

TEST(Dashboard, ARealBrowserFollowsARunningJobItsMembersCurveAndARestartedWorker) {
  if (!std::filesystem::exists(kChromium)) GTEST_SKIP() << "chromium is not installed (scripts/setup.sh installs it)";
  testing::TempDir dir;
  const std::string run = dir.File("run");
  testing::ChildProcess launch({testing::BinPath("ps-launch"), "--config", testing::kMlpConfig, "--epochs", "14",
                                "--run-dir", run, "--set", "cluster.peer_timeout_s=3", "--set",
                                "cluster.heartbeat_interval_s=0.3", "--set", "cluster.http_linger_s=0"});
  auto address = launch.WaitForLine(std::regex("dashboard: (http://[0-9.]+:[0-9]+/)"), 120s);
  ASSERT_TRUE(address.has_value()) << launch.Stderr();
  const std::string url = *address;
  std::string endpoint;
  ASSERT_TRUE(launch.WaitForLine(std::regex("(after epoch 1/14)"), 120s).has_value()) << launch.Stderr();

  // Training: every member listed and active, a loss curve with points.
  Page first = Load(url, dir);
  int rows = 0;
  auto states = MemberStates(first.dom, &rows);
  EXPECT_EQ(rows, 4) << first.dom;
  for (const char* m : {"server 0", "server 1", "worker 0", "worker 1"}) EXPECT_EQ(states[m], "active") << m;
  const int64_t points_first = LossPoints(first.dom);
  EXPECT_GT(points_first, 0) << first.dom;
  EXPECT_NE(first.dom.find("data-state=\"training\""), std::string::npos);
  EXPECT_NE(first.dom.find("fashion_mnist_mlp.yaml"), std::string::npos);
  EXPECT_NE(first.dom.find("keys"), std::string::npos);
  ExpectNoScriptErrors(first);

  // A worker SIGKILLed: ps-launch restarts it, the coordinator declares the
  // old one dead and the new one takes its place.
  {
    std::ifstream(run + "/coordinator.endpoint") >> endpoint;
    auto workers = testing::PidsMentioning("ps-worker --coordinator " + endpoint);
    ASSERT_EQ(workers.size(), 2u) << endpoint;
    ASSERT_EQ(::kill(workers[0], SIGKILL), 0);
  }
  // Or, when the kill fell between the worker's pushes to the two servers,
  // the job rolls back to a checkpoint (or the initial weights) and the
  // restarted worker joins the new generation.
  ASSERT_TRUE(launch
                  .WaitForLine(std::regex("(worker \\d+ joined again|every server has loaded (the checkpoint at step "
                                          "\\d+|the initial weights))"),
                               120s)
                  .has_value())
      << launch.Stderr();
  Page second = Load(url, dir);
  EXPECT_GT(LossPoints(second.dom), points_first) << "the loss curve did not grow";
  EXPECT_GE(Count(second.dom, "data-kind=\"death\""), 1) << second.dom;
  EXPECT_GE(Count(second.dom, "data-kind=\"restart\""), 1) << second.dom;
  EXPECT_GE(Count(second.dom, "marker marker-death"), 1) << "no death marked on the loss curve";
  states = MemberStates(second.dom, &rows);
  EXPECT_EQ(rows, 4);
  EXPECT_EQ(states["worker 0"], "active");
  EXPECT_EQ(states["worker 1"], "active");
  ExpectNoScriptErrors(second);

  ASSERT_TRUE(launch.WaitForLine(std::regex("final test_accuracy: ([0-9.]+)"), 300s).has_value()) << launch.Stderr();
  EXPECT_EQ(launch.Wait(120s), std::optional<int>(0)) << launch.Stderr();

  // The finished run's copy, opened from the run directory: no coordinator needed.
  ASSERT_TRUE(std::filesystem::exists(run + "/dashboard.html"));
  Page done = Load("file://" + run + "/dashboard.html", dir);
  EXPECT_NE(done.dom.find("data-static=\"1\""), std::string::npos);
  EXPECT_NE(done.dom.find("data-state=\"done\""), std::string::npos);
  EXPECT_NE(done.dom.find("exactly once"), std::string::npos) << "no audit line";
  EXPECT_GE(Count(done.dom, "data-kind=\"death\""), 1);
  EXPECT_GE(Count(done.dom, "data-kind=\"checkpoint\""), 1);
  EXPECT_GT(LossPoints(done.dom), LossPoints(second.dom));
  MemberStates(done.dom, &rows);
  EXPECT_EQ(rows, 4);
  ExpectNoScriptErrors(done);
  Load("file://" + run + "/dashboard.html", dir, dir.File("dashboard.png"));
  const std::string png = testing::ReadFile(dir.File("dashboard.png"));
  ASSERT_GT(png.size(), 10000u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
}

}  // namespace
}  // namespace psforge
