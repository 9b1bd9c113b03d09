#include "coordinator/http_status.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <chrono>
#include <future>
#include <memory>
#include <thread>

namespace psforge {
namespace {

// A coordinator stopped right after it started (a SIGTERM as soon as it
// printed its address) destroys its HttpStatus before the server thread has
// begun to listen. cpp-httplib's stop() does nothing until then, so the
// thread would go on to accept forever and the destructor's join never
// return: the process hung on exit. Both threads share one core here, so
// the server thread rarely runs before the destructor.
TEST(HttpStatus, StoppedAsSoonAsStartedStillStops) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  auto result = std::make_shared<std::promise<bool>>();
  auto done = result->get_future();
  // Detached: a hung destructor must fail the test, not hang the process.
  std::thread([result, one] {
    sched_setaffinity(0, sizeof one, &one);
    bool ok = true;
    for (int i = 0; i < 200 && ok; ++i)
      ok = HttpStatus::Start("127.0.0.1:0", [] { return nlohmann::json::object(); }).ok();
    result->set_value(ok);
  }).detach();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(60)), std::future_status::ready)
      << "an HttpStatus destroyed right after Start never stopped";
  EXPECT_TRUE(done.get());
}

// Before the first step there is no progress to report: no placeholder
// zeros, no ETA; counters are counters; the job's description is an info
// metric.
TEST(PrometheusText, NoPlaceholdersBeforeTheFirstStepAndCountersAreCounters) {
  nlohmann::json waiting = {{"job", {{"config", "configs/x.yaml"}, {"servers", 2}}},
                            {"state", "waiting for members"}, {"step", 0}, {"loss", 0}, {"samples", 0},
                            {"samples_per_s", 0}, {"eta_s", 240000}, {"bad_messages", 3}};
  const std::string text = PrometheusText(waiting);
  for (const char* absent : {"psforge_step ", "psforge_loss ", "psforge_eta_seconds", "psforge_samples_per_second"})
    EXPECT_EQ(text.find(absent), std::string::npos) << absent << " in:\n" << text;
  EXPECT_NE(text.find("# TYPE psforge_bad_messages_total counter\npsforge_bad_messages_total 3"), std::string::npos)
      << text;
  EXPECT_NE(text.find("psforge_job_info{config=\"configs/x.yaml\",servers=\"2\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("psforge_job_state{state=\"waiting for members\"} 1"), std::string::npos) << text;
  nlohmann::json training = waiting;
  training["state"] = "training";
  training["samples"] = 1280;
  training["samples_per_s"] = 640;
  training["eta_s"] = 12.5;
  training["bytes_pushed"] = 4096;
  training["bytes_pulled"] = 8192;
  const std::string during = PrometheusText(training);
  EXPECT_NE(during.find("psforge_pushed_bytes_total 4096"), std::string::npos) << during;
  EXPECT_NE(during.find("psforge_pulled_bytes_total 8192"), std::string::npos) << during;
  EXPECT_NE(during.find("psforge_eta_seconds 12.5"), std::string::npos) << during;
  EXPECT_NE(during.find("psforge_samples_total 1280"), std::string::npos) << during;
}

}  // namespace
}  // namespace psforge
