// The cluster as users run it: ps-coordinator, ps-server and ps-worker
// processes on loopback.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/dataset.h"
#include "common/shard_plan.h"
#include "paramserver/param_store.h"
#include "tests/integration/cluster_fixture.h"
#include "worker/batch_source.h"
#include "worker/train_job.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;
using testing::kMlpConfig;

std::vector<float> ReadWeights(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> w(std::filesystem::file_size(path) / sizeof(float));
  in.read(reinterpret_cast<char*>(w.data()), static_cast<std::streamsize>(w.size() * sizeof(float)));
  return w;
}

// The correctness anchor: W workers on b/W each, averaged by the servers,
// give the weights one process gets on batch b with the same data order.
// With shards of one worker batch, worker i trains shard 2t+i of the epoch's
// order at step t: together, the records ps-train takes at step t.
TEST(Cluster, BspTwoWorkersTwoServersMatchOneProcessOnTheWholeBatch) {
  testing::TempDir dir;
  const std::vector<std::string> sets{"training.max_steps=50", "training.batch_size=128",
                                      "cluster.workers=2", "data.shard_size=64"};
  std::vector<std::string> cluster_sets = sets;
  cluster_sets.push_back("checkpoint.interval_steps=25");
  cluster_sets.push_back("checkpoint.dir=" + dir.File("checkpoints"));
  auto cluster = testing::StartCluster(kMlpConfig, 2, cluster_sets, {"--summary", dir.File("job.json")});
  std::vector<std::unique_ptr<testing::ChildProcess>> workers;
  for (const char* name : {"w0", "w1"})
    workers.push_back(testing::StartWorker(cluster, "", {"--save-weights", dir.File(name)}));
  for (auto& w : workers) {
    ASSERT_EQ(w->Wait(120s), std::optional<int>(0)) << w->Stderr();
    EXPECT_EQ(w->Stderr().find("ZeroMQ frames"), std::string::npos)
        << "a worker on the servers' host passes its payloads through shared memory:\n" << w->Stderr();
  }
  testing::ExpectClusterExits(cluster);
  const std::string saved = std::filesystem::exists(dir.File("w0")) ? dir.File("w0") : dir.File("w1");
  ASSERT_TRUE(std::filesystem::exists(saved)) << "no worker saved the final weights";
  std::vector<float> cluster_weights = ReadWeights(saved);

  std::vector<ConfigOverride> overrides;
  for (const auto& s : sets) overrides.push_back(*ParseOverride(s));
  auto config = LoadJobConfig(kMlpConfig, overrides);
  ASSERT_TRUE(config.ok());
  auto data = LoadTrainTest(*config);
  ASSERT_TRUE(data.ok());
  auto spec = ModelSpec::FromConfig(config->model, data->train.features);
  ASSERT_EQ(cluster_weights.size(), static_cast<std::size_t>(spec->num_params()));

  // One process, batch 128, the same 50 steps.
  auto model = Model::Create(*spec, 128);
  auto local = LocalParameterClient::Create(*spec, config->optimizer, (*model)->weights());
  std::FILE* quiet = std::fopen("/dev/null", "w");
  ProgressPrinter progress(quiet, 1e9);
  Trainer trainer(*config, model->get(), local->get(), &progress);
  ShardPlan plan(data->train.rows, config->data.shard_size, config->training.seed, config->training.shuffle);
  LocalShardSource source(&plan, config->training.epochs, config->training.max_steps);
  auto result = trainer.Run(data->train, data->test, &source);
  std::fclose(quiet);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->steps, 50);

  double diff = 0, norm = 0, worst = 0;
  auto w = (*model)->weights();
  for (std::size_t i = 0; i < w.size(); ++i) {
    double d = static_cast<double>(cluster_weights[i]) - w[i];
    diff += d * d;
    norm += static_cast<double>(w[i]) * w[i];
    worst = std::max(worst, std::abs(d));
  }
  double rel = std::sqrt(diff / norm);
  EXPECT_LE(rel, 1e-5) << "largest elementwise difference " << worst;

  // The servers' checkpoints at steps 25 and 50, committed; the one at 50
  // holds exactly the weights the job ended with, and both workers' data
  // positions.
  auto job = nlohmann::json::parse(testing::ReadFile(dir.File("job.json")));
  EXPECT_EQ(job["checkpoint_committed_step"], 50) << job.dump(2);
  std::vector<float> checkpointed;
  for (int s = 0; s < 2; ++s) {
    auto store = ParamStore::OpenRocksDb(dir.File("checkpoints/server-" + std::to_string(s)));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_EQ(*(*store)->List(), (std::vector<int64_t>{25, 50}));
    auto c = (*store)->Read(50);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(c->version, 50);
    EXPECT_EQ(c->range.begin, static_cast<int64_t>(checkpointed.size()));
    checkpointed.insert(checkpointed.end(), c->weights.begin(), c->weights.end());
    ASSERT_EQ(c->positions.size(), 2u);
    for (const auto& p : c->positions) EXPECT_NE(p.lease, 0u) << "worker " << p.worker;
  }
  EXPECT_EQ(checkpointed, cluster_weights);
}

// The servers' accounting in the coordinator's summary, checked here from
// the raw numbers: on every server, every completed epoch applied each of the
// N records exactly once (count, and the sums of ids and squared ids).
void ExpectEveryRecordOnceAnEpoch(const nlohmann::json& job, int64_t epochs, uint64_t n) {
  const auto& audit = job["audit"];
  EXPECT_TRUE(audit["exactly_once"].get<bool>()) << audit.dump(2);
  EXPECT_EQ(audit["epochs_checked"], epochs);
  uint64_t id_sum = 0, id_square_sum = 0;
  for (uint64_t id = 0; id < n; ++id) id_sum += id, id_square_sum += id * id;
  ASSERT_EQ(audit["servers"].size(), job["servers"].get<std::size_t>());
  for (const auto& server : audit["servers"]) {
    ASSERT_GE(server.size(), static_cast<std::size_t>(epochs)) << server.dump();
    for (const auto& e : server) {
      SCOPED_TRACE("epoch " + e["epoch"].dump());
      EXPECT_EQ(e["records"].get<uint64_t>(), n);
      EXPECT_EQ(e["id_sum"].get<uint64_t>(), id_sum);
      EXPECT_EQ(e["id_square_sum"].get<uint64_t>(), id_square_sum);
    }
  }
}

// Issue 4's acceptance run: 1 coordinator, 2 servers, 3 workers; every
// record trained exactly once an epoch (counted by the servers), the target
// accuracy reached, every process gone with exit 0.
TEST(Cluster, ThreeWorkersTwoServersTrainEveryRecordOnceAnEpochAndReachTheTarget) {
#if defined(PSFORGE_TSAN)
  GTEST_SKIP() << "10 epochs take about 30 minutes under ThreadSanitizer; the other cluster "
                  "tests run the same server, coordinator and client paths";
#endif
  testing::TempDir dir;
  auto cluster = testing::StartCluster(kMlpConfig, 2, {"cluster.workers=3", "data.shard_size=1000"},
                                       {"--summary", dir.File("job.json")});
  std::vector<std::unique_ptr<testing::ChildProcess>> workers;
  for (int w = 0; w < 3; ++w) workers.push_back(testing::StartWorker(cluster));
  for (auto& w : workers) ASSERT_EQ(w->Wait(600s), std::optional<int>(0)) << w->Stderr();
  testing::ExpectClusterExits(cluster);

  auto job = nlohmann::json::parse(testing::ReadFile(dir.File("job.json")));
  EXPECT_GE(job["test_accuracy"].get<double>(), 0.88) << job.dump(2);
  EXPECT_EQ(job["epochs"], 10);
  ExpectEveryRecordOnceAnEpoch(job, 10, 60000);
}

// A worker killed (SIGKILL) in the middle of an epoch: the coordinator
// declares it dead, the servers stop waiting for it and report where its
// data stopped, its leases go to the others from there, and the job
// finishes with every record still applied exactly once an epoch. (Should
// the kill land between its pushes to the two servers, the job rolls back
// to its last checkpoint instead, and its place is declared dead there.)
TEST(Cluster, AWorkerKilledMidEpochLosesNoRecordAndTrainsNoneTwice) {
#if defined(PSFORGE_TSAN)
  GTEST_SKIP() << "two epochs of three workers take over 20 minutes under ThreadSanitizer; the removal, "
                  "position and lease paths are single-threaded, and run under AddressSanitizer";
#endif
  testing::TempDir dir;
  auto cluster = testing::StartCluster(
      kMlpConfig, 2,
      {"cluster.workers=3", "training.epochs=2", "data.shard_size=500", "cluster.heartbeat_interval_s=0.1",
       "cluster.peer_timeout_s=1.5", "training.progress_interval_s=0.2", "checkpoint.interval_steps=100",
       "checkpoint.dir=" + dir.File("checkpoints")},
      {"--summary", dir.File("job.json")});
  std::vector<std::unique_ptr<testing::ChildProcess>> workers;
  for (int w = 0; w < 3; ++w) workers.push_back(testing::StartWorker(cluster));
  // Well inside the first epoch.
  ASSERT_TRUE(cluster.coordinator->WaitForLine(std::regex("epoch 1/2 +([2-7][0-9])%"), 300s))
      << cluster.coordinator->Stderr();
  workers[1]->Signal(SIGKILL);
  ASSERT_TRUE(cluster.coordinator->WaitForLine(std::regex("worker \\d declared dead"), 60s))
      << cluster.coordinator->Stderr();
  auto returned = cluster.coordinator->WaitForLine(std::regex("worker \\d's leases: (.*)"), 60s);
  ASSERT_TRUE(returned) << cluster.coordinator->Stderr();
  for (int w : {0, 2}) EXPECT_EQ(workers[w]->Wait(600s), std::optional<int>(0)) << workers[w]->Stderr();
  EXPECT_EQ(workers[1]->Wait(10s), std::optional<int>(-1));
  testing::ExpectClusterExits(cluster);

  auto job = nlohmann::json::parse(testing::ReadFile(dir.File("job.json")));
  EXPECT_EQ(job["workers_lost"], 1);
  EXPECT_EQ(job["epochs"], 2);
  EXPECT_GE(job["test_accuracy"].get<double>(), 0.80) << job.dump(2);
  ExpectEveryRecordOnceAnEpoch(job, 2, 60000);
}

// Workers may register before the servers do (a launcher starts everyone at
// once): they wait for their welcome, and the job is not given up on. (This
// job passes its payloads in ZeroMQ frames, as between hosts.)
TEST(Cluster, WorkersThatJoinBeforeTheServersWaitForThem) {
  testing::TempDir dir;
  testing::ChildProcess coordinator({testing::BinPath("ps-coordinator"), "--config", kMlpConfig, "--no-run-dir",
                                     "--set", "training.max_steps=20", "--set", "cluster.servers=1",
                                     "--set", "cluster.shared_memory=false",
                                     "--summary", dir.File("job.json")});
  auto endpoint = coordinator.WaitForLine(std::regex("listening on (\\S+)"), 60s);
  ASSERT_TRUE(endpoint) << coordinator.Stderr();
  std::vector<std::unique_ptr<testing::ChildProcess>> workers;
  for (int w = 0; w < 2; ++w)
    workers.push_back(std::make_unique<testing::ChildProcess>(
        std::vector<std::string>{testing::BinPath("ps-worker"), "--coordinator", *endpoint}));
  ASSERT_TRUE(coordinator.WaitForLine(std::regex("worker 1 joined"), 60s)) << coordinator.Stderr();
  // Liveness is checked every 50 ms: give it a few rounds with no server.
  EXPECT_FALSE(coordinator.WaitForLine(std::regex("job failed"), 500ms));
  testing::ChildProcess server({testing::BinPath("ps-server"), "--coordinator", *endpoint});
  for (auto& w : workers) EXPECT_EQ(w->Wait(120s), std::optional<int>(0)) << w->Stderr();
  EXPECT_EQ(server.Wait(60s), std::optional<int>(0)) << server.Stderr();
  EXPECT_EQ(coordinator.Wait(60s), std::optional<int>(0)) << coordinator.Stderr();
}

TEST(Cluster, WorkerNamesACoordinatorThatDoesNotAnswer) {
  // A bound socket nobody serves: the worker must give up, naming it.
  auto transport = Transport::CreateZmq();
  auto silent = transport->Bind("tcp://127.0.0.1:0");
  ASSERT_TRUE(silent.ok());
  testing::ChildProcess w({testing::BinPath("ps-worker"), "--coordinator", (*silent)->endpoint(),
                           "--connect-timeout", "1"});
  auto code = w.Wait(60s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1);
  EXPECT_NE(w.Stderr().find("DeadlineExceeded"), std::string::npos) << w.Stderr();
  EXPECT_NE(w.Stderr().find((*silent)->endpoint()), std::string::npos) << w.Stderr();
}

}  // namespace
}  // namespace psforge
