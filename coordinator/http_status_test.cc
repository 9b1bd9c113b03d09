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

}  // namespace
}  // namespace psforge
