#include "coordinator/dashboard.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace psforge {
namespace {

TEST(Timeline, KeepsTheWholeRunInBoundedMemory) {
  Timeline t(/*max_points=*/100, /*max_events=*/10);
  for (int64_t step = 1; step <= 10000; ++step) t.AddPoint({step * 0.01, step, 1.0 / step, 1000, 0.001});
  const auto j = t.Json();
  const auto& points = j["points"];
  ASSERT_LE(points.size(), 100u);
  EXPECT_GE(points.size(), 50u);
  EXPECT_EQ(points[0][1], 1);  // the start is kept
  EXPECT_GE(points.back()[1].get<int64_t>(), 10000 - 2 * 10000 / 100);  // and the end
  for (std::size_t i = 1; i < points.size(); ++i) EXPECT_LT(points[i - 1][1], points[i][1]);
}

TEST(Timeline, TheSameStepTwiceIsOnePointWithTheNewerNumbers) {
  Timeline t;
  t.AddPoint({1.0, 5, 0.9, 10, 0.1});
  t.AddPoint({1.5, 5, 0.8, 12, 0.1});
  const auto j = t.Json();
  ASSERT_EQ(j["points"].size(), 1u);
  EXPECT_DOUBLE_EQ(j["points"][0][2].get<double>(), 0.8);
}

TEST(Timeline, EventsAreBoundedAndCounted) {
  Timeline t(10, 3);
  for (int i = 0; i < 5; ++i) t.AddEvent(i, i, "event " + std::to_string(i));
  const auto j = t.Json();
  ASSERT_EQ(j["events"].size(), 3u);
  EXPECT_EQ(j["events"][0]["text"], "event 2");
  EXPECT_EQ(j["events_dropped"], 2);
}

TEST(Timeline, KindsOfTheCoordinatorsLines) {
  EXPECT_EQ(Timeline::KindOf("worker 1 declared dead: no heartbeat for 3.0 s"), "death");
  EXPECT_EQ(Timeline::KindOf("server 0 at tcp://127.0.0.1:4000 sent no heartbeat for 3.0 s; waiting for it"), "death");
  EXPECT_EQ(Timeline::KindOf("worker 1 joined again (it takes the place of the one declared dead; pid 7)"), "restart");
  EXPECT_EQ(Timeline::KindOf("server 0 joined again at tcp://127.0.0.1:4001 (pid 9)"), "restart");
  EXPECT_EQ(Timeline::KindOf("server 0 died: generation 2 starts from the checkpoint at step 300"), "death");
  EXPECT_EQ(Timeline::KindOf("generation 2: every server has loaded the checkpoint at step 300"), "restart");
  EXPECT_EQ(Timeline::KindOf("checkpoint at step 300 committed: every server has written it"), "checkpoint");
  EXPECT_EQ(Timeline::KindOf("worker 0 joined (1 of 2; pid 5)"), "join");
  EXPECT_EQ(Timeline::KindOf("audit: every server applied each of the 60000 records exactly once"), "audit");
  EXPECT_EQ(Timeline::KindOf("epoch 1/10 complete at step 469"), "info");
  EXPECT_EQ(Timeline::KindOf("anything"), "info");
}

TEST(Dashboard, TheStaticCopyCarriesItsDataAndCannotBeBrokenOutOf) {
  nlohmann::json status = {{"state", "done"}, {"job", {{"config", "</script><script>alert(1)</script>"}}}};
  nlohmann::json timeline = {{"points", nlohmann::json::array()}, {"events", nlohmann::json::array()}};
  const std::string page = StaticDashboardPage(status, timeline);
  EXPECT_NE(page.find("window.PSFORGE_STATIC = "), std::string::npos);
  EXPECT_EQ(page.find("</script><script>alert(1)"), std::string::npos) << "the data closed its script element";
  EXPECT_NE(page.find("<\\/script><script>alert(1)<\\/script>"), std::string::npos);
  // The live page polls and has no data inlined; neither loads anything from elsewhere.
  const std::string live = DashboardPage();
  EXPECT_EQ(live.find("window.PSFORGE_STATIC = "), std::string::npos);
  EXPECT_NE(live.find("fetch(\"/api/status\""), std::string::npos);
  for (const std::string& p : {page, live}) {
    EXPECT_EQ(p.find("http://"), p.find("http://www.w3.org/2000/svg")) << "a network address in the page";
    EXPECT_EQ(p.find("https://"), std::string::npos);
    EXPECT_EQ(p.find("<script src"), std::string::npos);
  }
  const auto dir = std::filesystem::temp_directory_path() / ("dashboard_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(WriteStaticDashboard((dir / "dashboard.html").string(), status, timeline).ok());
  std::ifstream in(dir / "dashboard.html");
  std::stringstream read;
  read << in.rdbuf();
  EXPECT_EQ(read.str(), page);
  EXPECT_FALSE(WriteStaticDashboard((dir / "missing" / "dashboard.html").string(), status, timeline).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace psforge
