// Seeded kills: a server, the coordinator and a worker, each SIGKILLed at
// two steps drawn from a seed (PSFORGE_TEST_SEED, default fixed; printed),
// and started again as a supervisor would. Each job completes with no
// committed step lost, every record trained once an epoch and nothing left
// running; BSP runs that roll back end with the undisturbed run's weights,
// and the run that loses workers with at least its accuracy (less 0.5
// points, under the spread of data orders: AccuracyFloor). The time from each kill to training resuming is printed.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <utility>

#include "tests/fault/fault_job.h"

namespace psforge {
namespace {

using namespace fault;

uint64_t Seed() {
  const char* s = std::getenv("PSFORGE_TEST_SEED");
  return s && *s ? std::strtoull(s, nullptr, 10) : 20261123;
}

// Two kill steps in [lo, hi), the second at least `gap` after the first.
std::pair<int64_t, int64_t> KillSteps(uint64_t salt, int64_t lo, int64_t hi, int64_t gap) {
  std::mt19937_64 rng(Seed() * 31 + salt);
  const int64_t first = std::uniform_int_distribution<int64_t>(lo, hi - gap - 1)(rng);
  const int64_t second = std::uniform_int_distribution<int64_t>(first + gap, hi - 1)(rng);
  std::printf("seed %llu: kills at steps %lld and %lld\n", static_cast<unsigned long long>(Seed()),
              static_cast<long long>(first), static_cast<long long>(second));
  return {first, second};
}

// Waits until the coordinator's progress (a line every 50 ms) shows a step
// of at least `step` in its output from offset `from` on.
void WaitForStep(testing::ChildProcess& coordinator, int64_t step, std::size_t from) {
  const std::regex progress(" step (\\d+) loss ");
  auto accept = [&](const std::string& line) {
    std::smatch m;
    return std::regex_search(line, m, progress) && std::stoll(m[1].str()) >= step;
  };
  ASSERT_TRUE(coordinator.WaitForLine(accept, 120s, from).has_value())
      << "step " << step << " not reached: " << coordinator.Stdout();
}

// The last step committed in the coordinator's output up to offset `upto`.
int64_t LastCommitted(testing::ChildProcess& coordinator, std::size_t upto) {
  const std::string out = coordinator.Stdout().substr(0, upto);
  const std::regex commit("checkpoint at step (\\d+) committed");
  int64_t last = 0;
  for (std::sregex_iterator m(out.begin(), out.end(), commit), end; m != end; ++m)
    last = std::max<int64_t>(last, std::stoll((*m)[1].str()));
  return last;
}

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

const std::vector<std::string> kProgress{"training.progress_interval_s=0.05"};

TEST(KillMatrix, AServerKilledAtTwoSeededSteps) {
  testing::TempDir reference, dir;
  // Two epochs (938 steps) with the kills in the first: at ~500 steps/s a
  // kill late in a one-epoch job can land after its last step.
  const std::vector<float> expected = Undisturbed(reference, true);
  const auto [first, second] = KillSteps(1, 30, 420, 60);
  Job job = StartJob(dir, "killed", false, true, kProgress);
  std::size_t from = 0;
  int server = 1;
  for (int64_t step : {first, second}) {
    WaitForStep(*job.cluster.coordinator, step, from);
    if (::testing::Test::HasFatalFailure()) return;
    const std::size_t mark = job.cluster.coordinator->lines_read();
    const int64_t committed = LastCommitted(*job.cluster.coordinator, mark);
    const auto killed_at = std::chrono::steady_clock::now();
    KillAndRestartServer(job, server);
    const int64_t resumed = WaitForResume(job, mark);
    std::printf("server killed at step %lld: training resumed from step %lld after %.2f s\n",
                static_cast<long long>(step), static_cast<long long>(resumed), Since(killed_at));
    EXPECT_GE(resumed, committed) << "a committed step was lost";
    from = job.cluster.coordinator->lines_read();
    server = 1 - server;
  }
  auto summary = ExpectUndisturbedEnd(job, dir, expected, 2 * 469);
  EXPECT_EQ(summary["restarts"], 2);
}

// What the members said, for a failure's message.
std::string MemberLogs(Job& job) {
  std::string out;
  for (std::size_t i = 0; i < job.workers.size(); ++i) {
    const std::string err = job.workers[i]->Stderr();
    out += "--- worker " + std::to_string(i) + ":\n" + err.substr(err.size() > 3000 ? err.size() - 3000 : 0);
  }
  for (std::size_t i = 0; i < job.cluster.servers.size(); ++i) {
    const std::string err = job.cluster.servers[i].process->Stderr();
    out += "--- server " + std::to_string(i) + ":\n" + err.substr(err.size() > 1500 ? err.size() - 1500 : 0);
  }
  return out;
}

TEST(KillMatrix, TheCoordinatorKilledAtTwoSeededSteps) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = Undisturbed(reference, true);  // two epochs: as above
  const auto [first, second] = KillSteps(2, 30, 420, 60);
  Job job = StartJob(dir, "killed", false, true, kProgress);
  for (int64_t step : {first, second}) {
    WaitForStep(*job.cluster.coordinator, step, 0);  // each coordinator's output starts afresh
    if (::testing::Test::HasFatalFailure()) {
      ADD_FAILURE() << MemberLogs(job);
      return;
    }
    const int64_t committed = LastCommitted(*job.cluster.coordinator, job.cluster.coordinator->lines_read());
    const auto killed_at = std::chrono::steady_clock::now();
    KillAndRestartCoordinator(job, dir);
    const int64_t resumed = WaitForResume(job);
    std::printf("coordinator killed at step %lld: training resumed from step %lld after %.2f s\n",
                static_cast<long long>(step), static_cast<long long>(resumed), Since(killed_at));
    EXPECT_GE(resumed, committed) << "a committed step was lost";
  }
  ExpectUndisturbedEnd(job, dir, expected, 2 * 469);
}

// Two epochs (the audit then covers whole epochs); each worker is killed
// once, the second while the first's replacement trains. A worker killed
// between its pushes to the two servers (one has its last batch, the other
// not) makes the job go back to the last committed checkpoint; either way
// every record is applied once an epoch on every server (recovery_test
// forces that case with --faults die_mid_push). While a worker is
// missing the other takes its share, so the run has the undisturbed one's
// steps of the job's batch size.
TEST(KillMatrix, WorkersKilledAtTwoSeededSteps) {
  testing::TempDir reference, dir;
  Job undisturbed = StartJob(reference, "undisturbed", false, /*two_epochs=*/true);
  Finish(undisturbed, reference);
  const double expected = Summary(reference, "undisturbed")["test_accuracy"].get<double>();
  const int64_t expected_steps = Summary(reference, "undisturbed")["steps"].get<int64_t>();
  const auto [first, second] = KillSteps(3, 30, 800, 150);
  Job job = StartJob(dir, "killed", false, /*two_epochs=*/true, kProgress);
  std::size_t from = 0;
  int worker = 1;
  for (int64_t step : {first, second}) {
    WaitForStep(*job.cluster.coordinator, step, from);
    if (::testing::Test::HasFatalFailure()) return;
    const std::size_t mark = job.cluster.coordinator->lines_read();
    const auto killed_at = std::chrono::steady_clock::now();
    job.workers[worker]->Signal(SIGKILL);
    EXPECT_TRUE(job.workers[worker]->Wait(30s).has_value());
    job.workers[worker] = StartJobWorker(job, dir, worker);
    // "joined again" in its predecessor's place; or, when the servers
    // disagreed on where the dead worker's data stopped, the job went back
    // to the last committed checkpoint and every worker joined afresh.
    const std::regex joined("worker \\d+ joined");
    ASSERT_TRUE(job.cluster.coordinator->WaitForLine([&](const std::string& l) { return std::regex_search(l, joined); },
                                                     60s, mark))
        << job.cluster.coordinator->Stdout() << job.workers[worker]->Stderr();
    std::printf("worker %d killed at step %lld: its replacement joined after %.2f s\n", worker,
                static_cast<long long>(step), Since(killed_at));
    from = job.cluster.coordinator->lines_read();
    worker = 1 - worker;
  }
  Finish(job, dir);
  auto summary = Summary(dir, "killed");
  std::printf("test accuracy %.4f, undisturbed %.4f; rolled back %d times\n",
              summary["test_accuracy"].get<double>(), expected, summary["restarts"].get<int>());
  EXPECT_EQ(summary["epochs"], 2);
  // The survivor took each missing worker's share: every step kept the job's batch.
  EXPECT_LE(summary["steps"].get<int64_t>(), expected_steps + 3) << job.cluster.coordinator->Stdout();
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>())
      << summary["audit"].dump(2) << job.cluster.coordinator->Stdout() << job.cluster.servers[0].process->Stderr()
      << job.cluster.servers[1].process->Stderr();
  EXPECT_GE(summary["test_accuracy"].get<double>(), AccuracyFloor(reference, expected))
      << job.cluster.coordinator->Stdout();
}

}  // namespace
}  // namespace psforge
