// The ctr model (model.kind ctr) on a synthetic click log with a planted
// model (tools/ctr_data.h), as users run it: ps-train alone, and a cluster
// of ps-coordinator, ps-server and ps-worker processes on loopback whose
// sparse tables are served by row.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <omp.h>

#include <nlohmann/json.hpp>

#include "common/dataset.h"
#include "common/shard_plan.h"
#include "tests/fault/fault_job.h"
#include "tests/integration/cluster_fixture.h"
#include "tools/ctr_data.h"
#include "worker/batch_source.h"
#include "worker/parameter_client.h"
#include "worker/trainer.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;

// One click log for every test: 100 values per field, so that 300k
// impressions see every frequent value often and a learner can come near
// the planted model.
class Ctr : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    CtrDataOptions o;
    o.train_rows = 300000;
    o.test_rows = 20000;
    o.ids_per_field = 100;
    auto planted = WriteCtrData(o, dir_->File("log"));
    ASSERT_TRUE(planted.ok()) << planted.status().ToString();
    planted_ = *planted;
    std::ofstream(dir_->File("ctr.yaml")) << R"(model:
  kind: ctr
  hidden: [64]
  tables:
    - {name: features, rows: 16777216, dim: 8, optimizer: adagrad, learning_rate: 0.05}
data:
  format: criteo
  train_tsv: log/train.tsv
  test_tsv: log/test.tsv
  shard_size: 128
optimizer: {kind: adam, learning_rate: 0.001}
training: {epochs: 2, batch_size: 256, threads: 1}
)";
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string Config() { return dir_->File("ctr.yaml"); }

  static testing::TempDir* dir_;
  static PlantedResult planted_;
};
testing::TempDir* Ctr::dir_ = nullptr;
PlantedResult Ctr::planted_;

TEST_F(Ctr, PsTrainComesWithinAHundredthOfThePlantedModelsAuc) {
  const std::string summary_path = dir_->File("ps-train.json");
  auto r = testing::RunProcess({testing::BinPath("ps-train"), "--config", Config(), "--no-run-dir", "--summary",
                                summary_path},
                               300s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("test_logloss"), std::string::npos) << "progress shows the log loss:\n" << r.err;
  auto summary = nlohmann::json::parse(testing::ReadFile(summary_path));
  EXPECT_EQ(summary["metric"], "test_auc");
  ASSERT_TRUE(summary.contains("planted_auc")) << summary.dump(2);
  EXPECT_DOUBLE_EQ(summary["planted_auc"].get<double>(), planted_.planted_auc);
  const double auc = summary["test_auc"].get<double>(), logloss = summary["test_logloss"].get<double>();
  EXPECT_GE(auc, planted_.planted_auc - 0.01) << summary.dump(2);
  EXPECT_LE(auc, planted_.planted_auc + 0.005) << "no learner beats the planted model by much";
  EXPECT_LE(logloss, planted_.planted_logloss + 0.02) << summary.dump(2);
  EXPECT_EQ(summary["history"].size(), 2u);
  EXPECT_TRUE(summary["history"][0].contains("test_logloss"));
}

// One process on the whole batch, its rows and dense weights in-process:
// the final dense weights and the summary.
struct OneProcess {
  std::vector<float> weights;
  TrainResult result;
};
OneProcess TrainOneProcess(const JobConfig& config, const TrainTestData& data) {
  OneProcess out;
  auto spec = ModelSpec::FromConfig(config.model, data.train.features, 0, data.train.categorical);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  auto model = Model::Create(*spec, config.training.batch_size);
  auto client = std::move(LocalParameterClient::Create(*spec, config.optimizer, (*model)->weights())).value();
  std::FILE* quiet = std::fopen("/dev/null", "w");
  ProgressPrinter progress(quiet, 1e9);
  Trainer trainer(config, model->get(), client.get(), &progress);
  const ShardPlan plan = ShardPlan::ForJob(config, data.train.rows);
  LocalShardSource source(&plan, config.training.epochs, config.training.max_steps);
  auto result = trainer.Run(data.train, data.test, &source);
  std::fclose(quiet);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  if (result.ok()) out.result = *result;
  auto w = (*model)->weights();
  out.weights.assign(w.begin(), w.end());
  return out;
}

double RelativeError(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff / norm);
}

// BSP equivalence for a sparse model: 2 workers on batches of 128 against
// 2 servers (each holding the rows ServerOfRow gives it) train what one
// process trains on batches of 256. With shards of one worker batch,
// worker i trains shard 2t+i at step t: the one process's records of step
// t. The servers combine the two workers' row gradients as the dense ones
// (weighted by records), so the row-wise AdaGrad sees the whole batch's
// mean gradient of each row, up to rounding; the dense part (Adam) agrees
// to the rounding of the two batch sizes' sums, as for the MLP. Measured
// after 150 steps: 1.7e-7 of the dense weights' norm (AVX-512; 1.5e-7 with
// DNNL_MAX_CPU_ISA=AVX2), the test log loss equal to 6 digits; bound 2e-3
// (the MLP's Adam bound). Half of each batch lost moves the weights by 0.35.
TEST_F(Ctr, BspTwoWorkersTwoServersMatchOneProcessOnTheWholeBatch) {
  const std::vector<std::string> sets{"training.max_steps=150", "cluster.workers=2", "training.epochs=1"};
  auto cluster = testing::StartCluster(Config(), 2, sets, {"--summary", dir_->File("job.json")});
  std::vector<std::unique_ptr<testing::ChildProcess>> workers;
  for (const char* name : {"w0", "w1"})
    workers.push_back(testing::StartWorker(cluster, "", {"--save-weights", dir_->File(name)}));
  for (auto& w : workers) ASSERT_EQ(w->Wait(180s), std::optional<int>(0)) << w->Stderr();
  testing::ExpectClusterExits(cluster);
  const std::string saved = std::filesystem::exists(dir_->File("w0")) ? dir_->File("w0") : dir_->File("w1");
  ASSERT_TRUE(std::filesystem::exists(saved)) << "no worker saved the final weights";
  std::ifstream in(saved, std::ios::binary);
  std::vector<float> cluster_weights(std::filesystem::file_size(saved) / sizeof(float));
  in.read(reinterpret_cast<char*>(cluster_weights.data()),
          static_cast<std::streamsize>(cluster_weights.size() * sizeof(float)));
  auto job = nlohmann::json::parse(testing::ReadFile(dir_->File("job.json")));

  auto load = [&](std::vector<std::string> more) {
    std::vector<ConfigOverride> overrides;
    for (const auto& s : {"training.max_steps=150", "training.epochs=1"}) overrides.push_back(*ParseOverride(s));
    for (const auto& s : more) overrides.push_back(*ParseOverride(s));
    auto config = LoadJobConfig(Config(), overrides);
    EXPECT_TRUE(config.ok()) << config.status().ToString();
    return *config;
  };
  const JobConfig whole = load({});
  auto data = LoadTrainTest(whole);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  omp_set_num_threads(1);
  const OneProcess one = TrainOneProcess(whole, *data);
  ASSERT_EQ(cluster_weights.size(), one.weights.size());
  const double error = RelativeError(cluster_weights, one.weights);
  // What the bound must tell apart: each step trained on half its records.
  const OneProcess half = TrainOneProcess(load({"training.batch_size=128"}), *data);
  const double half_lost = RelativeError(half.weights, one.weights);
  std::printf("dense weights, two workers vs one process: relative error %.3g; half of each batch: %.3g\n"
              "test log loss %.6f (cluster) %.6f (one process) %.6f (half)\n",
              error, half_lost, job["test_logloss"].get<double>(), one.result.test_logloss, half.result.test_logloss);
  EXPECT_LE(error, 2e-3);
  EXPECT_GT(half_lost, 2e-2);
  EXPECT_NEAR(job["test_auc"].get<double>(), one.result.test_metric, 1e-4) << job.dump(2);
  EXPECT_NEAR(job["test_logloss"].get<double>(), one.result.test_logloss, 1e-4) << job.dump(2);
  EXPECT_GT(std::abs(half.result.test_logloss - one.result.test_logloss), 1e-3);
}

// A click log small enough (data.preload_mb, default 1 GiB) is parsed once
// into memory; a larger one is streamed from disk a block at a time. The
// same records either way: the same job ends with the same weights, bit
// for bit, and the same test AUC.
TEST_F(Ctr, APreloadedClickLogTrainsAsTheStreamedOne) {
  auto load = [&](const char* preload) {
    std::vector<ConfigOverride> overrides;
    for (const auto& s : {"training.max_steps=150", "training.epochs=1", preload}) overrides.push_back(*ParseOverride(s));
    auto config = LoadJobConfig(Config(), overrides);
    EXPECT_TRUE(config.ok()) << config.status().ToString();
    return *config;
  };
  const JobConfig preloaded = load("data.preload_mb=1024"), streamed = load("data.preload_mb=0");
  auto in_memory = LoadTrainTest(preloaded);
  auto from_disk = LoadTrainTest(streamed);
  ASSERT_TRUE(in_memory.ok() && from_disk.ok());
  EXPECT_EQ(in_memory->train.stream, nullptr) << "the log fits: parsed into memory";
  EXPECT_EQ(in_memory->train.keys.size(), static_cast<std::size_t>(in_memory->train.rows * in_memory->train.categorical));
  EXPECT_NE(from_disk->train.stream, nullptr);
  EXPECT_TRUE(from_disk->train.keys.empty()) << "streamed: only the index is held";
  EXPECT_EQ(in_memory->train.rows, from_disk->train.rows);
  omp_set_num_threads(1);
  const OneProcess a = TrainOneProcess(preloaded, *in_memory), b = TrainOneProcess(streamed, *from_disk);
  EXPECT_EQ(a.weights, b.weights);
  EXPECT_EQ(a.result.test_metric, b.result.test_metric);
  EXPECT_EQ(a.result.test_logloss, b.result.test_logloss);
}

// Leases of several batches: one worker on the whole batch, each shard's
// records over four steps, against one server, trains what one process
// trains on the same shards, to the last bit of the dense weights, with the
// same test AUC and log loss. Under SSP (staleness 1) the same job uses
// weights and rows one step old: other weights (0.18 of their norm after
// 150 steps), a model as good (test AUC 0.86062 against 0.86067).
TEST_F(Ctr, OneWorkerOnLeasesOfSeveralBatchesTrainsWhatOneProcessTrains) {
  auto run = [&](const std::string& name, const std::vector<std::string>& more) {
    std::vector<std::string> sets{"training.max_steps=150", "training.epochs=1", "data.shard_size=1024",
                                  "cluster.workers=1"};
    sets.insert(sets.end(), more.begin(), more.end());
    auto cluster = testing::StartCluster(Config(), 1, sets, {"--summary", dir_->File(name + "-job.json")});
    auto worker = testing::StartWorker(cluster, "", {"--save-weights", dir_->File(name + "-weights")});
    EXPECT_EQ(worker->Wait(180s), std::optional<int>(0)) << worker->Stderr();
    testing::ExpectClusterExits(cluster);
    std::ifstream in(dir_->File(name + "-weights"), std::ios::binary);
    std::vector<float> weights(std::filesystem::file_size(dir_->File(name + "-weights")) / sizeof(float));
    in.read(reinterpret_cast<char*>(weights.data()), static_cast<std::streamsize>(weights.size() * sizeof(float)));
    return std::make_pair(weights, nlohmann::json::parse(testing::ReadFile(dir_->File(name + "-job.json"))));
  };
  const auto [bsp_weights, bsp] = run("leases-bsp", {});
  const auto [ssp_weights, ssp] = run("leases-ssp", {"cluster.consistency=ssp", "cluster.staleness=1"});

  std::vector<ConfigOverride> overrides;
  for (const auto& s : {"training.max_steps=150", "training.epochs=1", "data.shard_size=1024"})
    overrides.push_back(*ParseOverride(s));
  auto config = LoadJobConfig(Config(), overrides);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto data = LoadTrainTest(*config);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  omp_set_num_threads(1);
  const OneProcess one = TrainOneProcess(*config, *data);
  ASSERT_EQ(bsp_weights.size(), one.weights.size());
  const double ssp_error = RelativeError(ssp_weights, one.weights);
  std::printf("one worker vs one process: BSP relative error %.3g, SSP(1) %.3g; test AUC %.6f (BSP) %.6f (SSP) "
              "%.6f (one process)\n", RelativeError(bsp_weights, one.weights), ssp_error,
              bsp["test_auc"].get<double>(), ssp["test_auc"].get<double>(), one.result.test_metric);
  EXPECT_EQ(bsp_weights, one.weights);
  EXPECT_EQ(bsp["test_auc"].get<double>(), one.result.test_metric);
  EXPECT_EQ(bsp["test_logloss"].get<double>(), one.result.test_logloss);
  EXPECT_GT(ssp_error, 0) << "SSP's stale weights and rows change the weights";
  EXPECT_NEAR(ssp["test_auc"].get<double>(), one.result.test_metric, 0.01);
}

// A server killed mid-run: every server goes back to the last committed
// checkpoint, the tables' rows from its incremental checkpoints, and the job
// ends as the undisturbed one: the same dense weights bit for bit, the same
// test AUC and log loss (which read every row the test set uses), every
// record trained once.
TEST_F(Ctr, AServerKilledMidRunLosesNoCommittedStepAndEndsAsUndisturbed) {
  auto start = [&](const std::string& name) {
    // Leases of four worker batches: a server dies with leases half trained.
    // The click log streamed from disk (as one too large for memory is).
    std::vector<std::string> sets{"training.max_steps=450", "training.epochs=1", "cluster.workers=2",
                                  "data.shard_size=512", "data.preload_mb=0", "checkpoint.interval_steps=100", "checkpoint.dir=" + dir_->File(name + "-ck"),
                                  "cluster.peer_timeout_s=2", "cluster.heartbeat_interval_s=0.2"};
    fault::Job job{testing::StartCluster(Config(), 2, sets, {"--summary", dir_->File(name + ".json")}), {}, sets, name};
    for (int w = 0; w < 2; ++w) job.workers.push_back(fault::StartJobWorker(job, *dir_, w));
    return job;
  };
  fault::Job undisturbed = start("undisturbed");
  const std::vector<float> expected = fault::Finish(undisturbed, *dir_);
  const auto reference = fault::Summary(*dir_, "undisturbed");

  fault::Job job = start("killed");
  const int64_t committed = fault::WaitForCommit(job, "[23]00");
  fault::KillAndRestartServer(job, 1);
  const int64_t resumed = fault::WaitForResume(job);
  EXPECT_GE(resumed, committed) << "a committed step was lost";
  const std::vector<float> weights = fault::Finish(job, *dir_);
  EXPECT_EQ(fault::Differing(weights, expected), 0u) << "relative difference " << fault::RelativeDifference(weights, expected);
  auto summary = fault::Summary(*dir_, "killed");
  EXPECT_EQ(summary["restarts"], 1);
  EXPECT_EQ(summary["steps"], 450);
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2);
  EXPECT_EQ(summary["test_auc"].get<double>(), reference["test_auc"].get<double>());
  EXPECT_EQ(summary["test_logloss"].get<double>(), reference["test_logloss"].get<double>());
}

// The same job with a memory budget that holds about half of each
// server's rows (a click log of 5,000 values per field: ~65k rows a
// server, a 4 MiB budget holds ~38k): rows are evicted to RocksDB and read
// back all along, a server is killed and restored from the incremental
// checkpoints into its budget, and the job ends with the weights, AUC and
// log loss of the same job with every row in memory.
TEST_F(Ctr, AMemoryBudgetEvictsRowsAndEndsAsTheJobWithEveryRowInMemory) {
  CtrDataOptions o;
  o.train_rows = 120000;
  o.test_rows = 5000;
  o.ids_per_field = 5000;
  ASSERT_TRUE(WriteCtrData(o, dir_->File("wide")).ok());
  std::string yaml = testing::ReadFile(Config());
  yaml.replace(yaml.find("log/train.tsv"), 13, "wide/train.tsv");
  yaml.replace(yaml.find("log/test.tsv"), 12, "wide/test.tsv");
  std::ofstream(dir_->File("wide.yaml")) << yaml;
  auto start = [&](const std::string& name, std::vector<std::string> more) {
    std::vector<std::string> sets{"training.max_steps=300", "training.epochs=1", "cluster.workers=2",
                                  "data.shard_size=512", "checkpoint.interval_steps=100", "checkpoint.dir=" + dir_->File(name + "-ck"),
                                  "cluster.peer_timeout_s=2", "cluster.heartbeat_interval_s=0.2"};
    sets.insert(sets.end(), more.begin(), more.end());
    fault::Job job{testing::StartCluster(dir_->File("wide.yaml"), 2, sets, {"--summary", dir_->File(name + ".json")}),
                   {}, sets, name};
    for (int w = 0; w < 2; ++w) job.workers.push_back(fault::StartJobWorker(job, *dir_, w));
    return job;
  };
  fault::Job in_memory = start("in-memory", {});
  const std::vector<float> expected = fault::Finish(in_memory, *dir_);
  const auto reference = fault::Summary(*dir_, "in-memory");

  const std::string spill = dir_->File("spill");
  fault::Job job = start("budget", {"cluster.memory_budget_mb=4", "cluster.spill_dir=" + spill});
  const int64_t committed = fault::WaitForCommit(job, "[12]00");
  fault::KillAndRestartServer(job, 0);
  EXPECT_GE(fault::WaitForResume(job), committed) << "a committed step was lost";
  const std::vector<float> weights = fault::Finish(job, *dir_);
  EXPECT_EQ(fault::Differing(weights, expected), 0u) << "relative difference " << fault::RelativeDifference(weights, expected);
  auto summary = fault::Summary(*dir_, "budget");
  EXPECT_EQ(summary["restarts"], 1);
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2);
  EXPECT_EQ(summary["test_auc"].get<double>(), reference["test_auc"].get<double>());
  EXPECT_EQ(summary["test_logloss"].get<double>(), reference["test_logloss"].get<double>());
  // The servers did evict and read back (their stats at exit), and left
  // no store behind (the killed one's is removed by its successor).
  for (auto& s : job.cluster.servers) {
    const std::string err = s.process->Stderr();
    const auto at = err.find("stats {");
    ASSERT_NE(at, std::string::npos) << err;
    auto stats = nlohmann::json::parse(err.substr(at + 6, err.find('\n', at) - at - 6));
    std::printf("server stats: %s\n", stats.dump().c_str());
    EXPECT_GT(stats["table_rows_evicted"].get<int64_t>(), 10000) << stats.dump();
    EXPECT_GT(stats["table_rows_read_back"].get<int64_t>(), 1000) << stats.dump();
    EXPECT_LE(stats["table_rows_resident"].get<int64_t>(), 45000) << stats.dump();
  }
  for (const auto& server : std::filesystem::directory_iterator(spill))
    EXPECT_TRUE(std::filesystem::is_empty(server.path())) << server.path() << " still holds a store";
}

}  // namespace
}  // namespace psforge
