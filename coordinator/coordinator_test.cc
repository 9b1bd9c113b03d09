// The coordinator in-process, its members simulated by channels of this
// test speaking the real protocol over tcp on loopback.
#include "coordinator/coordinator.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <thread>

namespace psforge {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

JobConfig Config(const std::vector<std::string>& sets) {
  std::vector<ConfigOverride> overrides;
  for (const auto& s : sets) {
    auto o = ParseOverride(s);
    EXPECT_TRUE(o.ok()) << s << ": " << o.status().ToString();
    if (o.ok()) overrides.push_back(*o);
  }
  auto config = LoadJobConfig(PSFORGE_SOURCE_DIR "/configs/logistic_regression.yaml", overrides);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return *config;
}

// More workers die than one answer can list (kMaxListEntries): a server
// still learns of every one of them, a page per heartbeat, so no BSP step
// waits forever for a worker nobody told it was gone.
TEST(Coordinator, EveryRemovedWorkerReachesTheServersPageByPage) {
  constexpr int kWorkers = 300;
  JobConfig config = Config({"cluster.servers=1", "cluster.workers=" + std::to_string(kWorkers),
                             "training.batch_size=" + std::to_string(kWorkers),
                             "cluster.heartbeat_interval_s=0.05", "cluster.peer_timeout_s=1", "cluster.http=\"\""});
  auto transport = Transport::CreateZmq();
  CoordinatorOptions options;
  // tcp, not inproc: over inproc the receiver reads the very buffer the
  // sender's thread filled, a hand-over inside libzmq that TSan cannot see.
  options.bind = "tcp://127.0.0.1:0";
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> quiet(std::fopen("/dev/null", "w"), &std::fclose);
  options.progress_out = quiet.get();
  auto coordinator = Coordinator::Create(config, transport.get(), options);
  ASSERT_TRUE(coordinator.ok()) << coordinator.status().ToString();
  std::atomic<bool> stop{false};
  std::thread loop([&] { (void)(*coordinator)->Run(stop); });
  struct Joiner {  // stops the coordinator however the test ends
    std::atomic<bool>& stop;
    std::thread& loop;
    ~Joiner() {
      stop = true;
      loop.join();
    }
  } joiner{stop, loop};

  auto open = [&] {
    auto c = CoordinatorChannel::Open(transport.get(), (*coordinator)->endpoint());
    EXPECT_TRUE(c.ok());
    return std::move(*c);
  };
  auto server = open();
  auto server_job = server->Join(PeerRole::kServer, "tcp://10.0.0.1:7000", 10s);
  ASSERT_TRUE(server_job.ok());
  server->set_generation(server_job->generation);  // a server that has loaded its weights
  std::vector<std::unique_ptr<CoordinatorChannel>> workers;
  for (int i = 0; i < kWorkers; ++i) {
    // The server (and worker 0, once there) stay alive however long this takes.
    ASSERT_TRUE(server->Heartbeat(MemberProgress{}, 20ms, 30s).ok());
    if (i > 0) {
      ASSERT_TRUE(workers[0]->Heartbeat(MemberProgress{}, 20ms, 30s).ok());
    }
    workers.push_back(open());
    auto joined = workers.back()->Join(PeerRole::kWorker, "", 30s);
    ASSERT_TRUE(joined.ok()) << "worker " << i << ": " << joined.status().ToString();
  }
  // Worker 0 and the server keep beating; the others fall silent.
  const auto deadline = Clock::now() + 60s;
  while (server->removed().size() < kWorkers - 1 && Clock::now() < deadline) {
    ASSERT_TRUE(server->Heartbeat(MemberProgress{}, 20ms, 30s).ok());
    ASSERT_TRUE(workers[0]->Heartbeat(MemberProgress{}, 20ms, 30s).ok());
    std::this_thread::sleep_for(5ms);
  }
  std::set<uint32_t> removed(server->removed().begin(), server->removed().end());
  EXPECT_EQ(server->removed().size(), kWorkers - 1u) << "each removal once";
  EXPECT_EQ(removed.size(), kWorkers - 1u);
  EXPECT_EQ(removed.count(0), 0u);
}

}  // namespace
}  // namespace psforge
