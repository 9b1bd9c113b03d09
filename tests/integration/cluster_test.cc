// The cluster as users run it: ps-server and ps-worker processes on loopback.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "common/dataset.h"
#include "tests/integration/cluster_fixture.h"
#include "worker/ps_client.h"
#include "worker/train_job.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;
using testing::kMlpConfig;

// The correctness anchor: W workers on b/W each, averaged by the servers,
// give the weights one process gets on batch b with the same data order.
TEST(Cluster, BspTwoWorkersTwoServersMatchOneProcessOnTheWholeBatch) {
  const std::vector<std::string> sets{"training.max_steps=50", "training.batch_size=128",
                                      "cluster.servers=2", "cluster.workers=2"};
  auto servers = testing::StartServers(kMlpConfig, 2, sets);
  std::vector<std::unique_ptr<testing::ChildProcess>> workers;
  for (int w = 0; w < 2; ++w) workers.push_back(testing::StartWorker(kMlpConfig, w, servers, sets));
  for (auto& w : workers) ASSERT_EQ(w->Wait(120s), std::optional<int>(0)) << w->Stderr();

  std::vector<ConfigOverride> overrides;
  for (const auto& s : sets) overrides.push_back(*ParseOverride(s));
  auto config = LoadJobConfig(kMlpConfig, overrides);
  ASSERT_TRUE(config.ok());
  auto data = LoadTrainTest(*config);
  ASSERT_TRUE(data.ok());
  auto spec = ModelSpec::FromConfig(config->model, data->train.features);

  // The servers' weights after 50 steps.
  auto transport = Transport::CreateZmq();
  std::vector<std::string> endpoints{servers[0].endpoint, servers[1].endpoint};
  auto client = PsClient::Connect(transport.get(), *spec, config->cluster, 0, endpoints);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  std::vector<float> cluster_weights(spec->num_params());
  ASSERT_TRUE((*client)->Pull(50, cluster_weights).ok());

  // One process, batch 128, the same 50 steps.
  auto model = Model::Create(*spec, 128);
  auto local = LocalParameterClient::Create(*spec, config->optimizer, (*model)->weights());
  std::FILE* quiet = std::fopen("/dev/null", "w");
  ProgressPrinter progress(quiet, 1e9);
  Trainer trainer(*config, model->get(), local->get(), &progress);
  auto result = trainer.Run(data->train, data->test);
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
  testing::StopServers(servers);
}

TEST(Cluster, MlpOnTwoServersAndTwoWorkersReachesTheTarget) {
#if defined(PSFORGE_TSAN)
  GTEST_SKIP() << "10 epochs take about 30 minutes under ThreadSanitizer; the other cluster "
                  "tests run the same server and client paths";
#endif
  testing::TempDir dir;
  const std::vector<std::string> sets{"cluster.servers=2", "cluster.workers=2"};
  auto servers = testing::StartServers(kMlpConfig, 2, sets);
  auto w0 = testing::StartWorker(kMlpConfig, 0, servers, sets, dir.File("w0.json"));
  auto w1 = testing::StartWorker(kMlpConfig, 1, servers, sets);
  ASSERT_EQ(w0->Wait(400s), std::optional<int>(0)) << w0->Stderr();
  ASSERT_EQ(w1->Wait(60s), std::optional<int>(0)) << w1->Stderr();
  auto summary = nlohmann::json::parse(testing::ReadFile(dir.File("w0.json")));
  EXPECT_GE(summary["test_accuracy"].get<double>(), 0.88) << summary.dump(2);
  EXPECT_EQ(summary["epochs"], 10);
  testing::StopServers(servers);
}

TEST(Cluster, WorkerNamesAServerThatDoesNotAnswer) {
  // A bound socket nobody serves: the worker must give up, naming it.
  auto transport = Transport::CreateZmq();
  auto silent = transport->Bind("tcp://127.0.0.1:0");
  ASSERT_TRUE(silent.ok());
  std::vector<testing::RunningServer> fake(1);
  fake[0].endpoint = (*silent)->endpoint();
  auto w = testing::StartWorker(kMlpConfig, 0, fake,
                                {"cluster.servers=1", "cluster.workers=1", "cluster.request_timeout_s=1"});
  auto code = w->Wait(60s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1);
  EXPECT_NE(w->Stderr().find("DeadlineExceeded"), std::string::npos) << w->Stderr();
  EXPECT_NE(w->Stderr().find(fake[0].endpoint), std::string::npos) << w->Stderr();
}

}  // namespace
}  // namespace psforge
