// SSP and ASP with a stalled worker: a real ps-worker process frozen with
// SIGSTOP while the other keeps training.
#include <gtest/gtest.h>

#include <csignal>
#include <thread>
#include <tuple>

#include "tests/integration/cluster_fixture.h"
#include "tests/integration/raw_client.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::vector<int64_t> WorkerSteps(testing::RawClient& c) {
  return testing::ServerStatsOf(c)["worker_steps"].get<std::vector<int64_t>>();
}

// Polls the server until `done(steps)` holds or the deadline passes.
template <typename Pred>
std::vector<int64_t> PollUntil(testing::RawClient& c, Pred done, std::chrono::seconds deadline) {
  const auto end = Clock::now() + deadline;
  std::vector<int64_t> steps = WorkerSteps(c);
  while (!done(steps) && Clock::now() < end) {
    std::this_thread::sleep_for(20ms);  // polling interval of a condition wait with a deadline
    steps = WorkerSteps(c);
  }
  return steps;
}

// Worker ids follow the order of joining: the second starts once the first is worker 0.
std::pair<std::unique_ptr<testing::ChildProcess>, std::unique_ptr<testing::ChildProcess>> StartTwoWorkers(
    testing::TestCluster& cluster) {
  auto w0 = testing::StartWorker(cluster);
  EXPECT_TRUE(cluster.coordinator->WaitForLine(std::regex("(worker 0 joined)"), 60s).has_value());
  auto w1 = testing::StartWorker(cluster);
  return {std::move(w0), std::move(w1)};
}

TEST(Consistency, SspHoldsTheFastWorkerWithinTheBoundOfAStalledOne) {
  const int64_t staleness = 2;
  const std::vector<std::string> sets{"cluster.workers=2", "cluster.consistency=ssp",
                                      "cluster.staleness=" + std::to_string(staleness),
                                      "training.max_steps=300"};
  auto cluster = testing::StartCluster(testing::kMlpConfig, 1, sets);
  auto transport = Transport::CreateZmq();
  testing::RawClient stats(transport.get(), cluster.servers[0].endpoint);
  auto [w0, w1] = StartTwoWorkers(cluster);

  auto steps = PollUntil(stats, [](const auto& s) { return s[0] >= 10 && s[1] >= 10; }, 60s);
  ASSERT_GE(steps[1], 10) << "workers did not start training: " << w1->Stderr();
  w1->Signal(SIGSTOP);
  // The fast worker runs ahead exactly as far as the bound lets it, then waits.
  steps = PollUntil(stats, [&](const auto& s) { return s[0] >= s[1] + staleness + 1; }, 30s);
  EXPECT_EQ(steps[0], steps[1] + staleness + 1);
  for (int i = 0; i < 10; ++i) {
    auto later = WorkerSteps(stats);
    // Pushes the stalled worker sent just before SIGSTOP may still arrive
    // (a loaded server reads them late): its step moves by those, no more.
    EXPECT_LE(later[1], steps[1] + 2) << "the stalled worker was not stalled";
    EXPECT_LE(later[0], later[1] + staleness + 1) << "worker 0 passed the staleness bound";
  }
  w1->Signal(SIGCONT);
  // Each worker also refuses any reply older than the bound (PsClient), so a
  // clean exit means no pull was answered too stale.
  EXPECT_EQ(w0->Wait(120s), std::optional<int>(0)) << w0->Stderr();
  EXPECT_EQ(w1->Wait(120s), std::optional<int>(0)) << w1->Stderr();
  testing::ExpectClusterExits(cluster);
}

// An ASP job of two workers on one server, run until worker 1 has pushed 5
// steps and is then frozen (SIGSTOP), and worker 0 has pushed all of its
// training.max_steps while worker 1 stands still.
struct StalledAspJob {
  std::unique_ptr<Transport> transport = Transport::CreateZmq();
  testing::TestCluster cluster;
  std::unique_ptr<testing::RawClient> stats;
  std::unique_ptr<testing::ChildProcess> w0, w1;
  std::vector<int64_t> steps;  // per worker, once worker 0 is done
};

void RunWithAStalledWorker(StalledAspJob* job, int64_t max_steps, std::vector<std::string> sets) {
  sets.insert(sets.end(), {"cluster.workers=2", "cluster.consistency=asp",
                           "training.max_steps=" + std::to_string(max_steps)});
  job->cluster = testing::StartCluster(testing::kMlpConfig, 1, sets);
  job->stats = std::make_unique<testing::RawClient>(job->transport.get(), job->cluster.servers[0].endpoint);
  std::tie(job->w0, job->w1) = StartTwoWorkers(job->cluster);
  auto steps = PollUntil(*job->stats, [](const auto& s) { return s[1] >= 5; }, 60s);
  ASSERT_GE(steps[1], 5) << job->w1->Stderr();
  job->w1->Signal(SIGSTOP);
  job->steps = PollUntil(*job->stats, [&](const auto& s) { return s[0] >= max_steps; }, 120s);
  ASSERT_EQ(job->steps[0], max_steps);
  EXPECT_LT(job->steps[1], max_steps) << "the stalled worker was not stalled";
}

TEST(Consistency, AspFinishesWithoutWaitingForAStalledWorker) {
  StalledAspJob job;
  // The stalled worker must not be declared dead meanwhile (sanitizer builds are slow).
  RunWithAStalledWorker(&job, 150, {"cluster.peer_timeout_s=120"});
  if (HasFatalFailure()) return;
  // Worker 0 has trained all its steps; it now waits to learn whether it
  // runs the final evaluation: worker 1 will, once it continues.
  job.w1->Signal(SIGCONT);
  EXPECT_EQ(job.w0->Wait(120s), std::optional<int>(0)) << job.w0->Stderr();
  EXPECT_EQ(job.w1->Wait(120s), std::optional<int>(0)) << job.w1->Stderr();
  testing::ExpectClusterExits(job.cluster);
}

// The last worker still training dies after the other finished: the one
// that finished runs the final evaluation, and the job completes.
TEST(Consistency, AFinishedWorkerEvaluatesWhenTheLastOneDies) {
  StalledAspJob job;
  RunWithAStalledWorker(&job, 100, {"cluster.heartbeat_interval_s=0.1", "cluster.peer_timeout_s=1.5"});
  if (HasFatalFailure()) return;
  job.w1->Signal(SIGKILL);
  EXPECT_EQ(job.w0->Wait(120s), std::optional<int>(0)) << job.w0->Stderr();
  EXPECT_NE(job.w0->Stdout().find("final test_accuracy"), std::string::npos) << "worker 0 did not evaluate";
  testing::ExpectClusterExits(job.cluster);
}

}  // namespace
}  // namespace psforge
