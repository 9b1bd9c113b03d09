// The cluster as users run it: ps-coordinator, ps-server and ps-worker
// processes on loopback.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <omp.h>

#include <nlohmann/json.hpp>

#include "common/dataset.h"
#include "common/shard_plan.h"
#include "paramserver/optimizer.h"
#include "paramserver/param_store.h"
#include "tests/integration/cluster_fixture.h"
#include "worker/batch_source.h"
#include "worker/job_setup.h"
#include "worker/ps_client.h"
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

// Two workers' pushes of one BSP step combined as a server combines them
// (paramserver/param_shard.cc): the record-weighted sum of the two means,
// then the optimizer over sum / records. Fed by a one-process trainer on
// half batches, its steps 2t and 2t+1 are the two workers' halves of step t
// (both computed on the same weights, as the workers' are).
//
// A `wire` type other than f32 (cluster.wire_dtype) is emulated as the
// cluster does it: the half of step 2t + i is worker i's, rounded with its
// own error feedback (common/dtype.h); the servers sum the rounded values
// and update float32 master weights; the model computes with them rounded.
class PairedStepClient final : public ParameterClient {
 public:
  PairedStepClient(std::span<float> weights, std::unique_ptr<Optimizer> optimizer, DType wire = DType::kF32)
      : weights_(weights), optimizer_(std::move(optimizer)), sum_(weights.size()), wire_(wire) {
    if (wire_ == DType::kF32) return;
    master_.assign(weights.begin(), weights.end());
    for (auto& r : residual_) r.assign(weights.size(), 0.0f);
    rounded_.resize(weights.size());
    bytes_.resize(weights.size() * DTypeBytes(wire_));
    Round();
  }
  Status Pull(int64_t step, std::span<float>) override {
    return step == version_ ? Status::Ok() : FailedPrecondition("pull of another version");
  }
  using ParameterClient::Push;
  Status Push(int64_t step, std::span<const float> gradient, int64_t samples, const DataMark&,
              std::span<const SparseRows> rows) override {
    if (step != version_) return FailedPrecondition("push of another version");
    if (!rows.empty()) return FailedPrecondition("this test client has no sparse tables");
    const float weight = static_cast<float>(samples);
    if (wire_ != DType::kF32) {
      const auto n = static_cast<int64_t>(gradient.size());
      EncodeWithFeedback(wire_, gradient.data(), residual_[version_ % 2].data(), n, bytes_.data());
      DecodeValues(wire_, bytes_.data(), n, rounded_.data());
      gradient = rounded_;
    }
    if (version_ % 2 == 0) {
      for (std::size_t i = 0; i < sum_.size(); ++i) sum_[i] = weight * gradient[i];
      first_samples_ = samples;
    } else {
      for (std::size_t i = 0; i < sum_.size(); ++i) sum_[i] += weight * gradient[i];
      const float scale = 1.0f / static_cast<float>(first_samples_ + samples);
      if (wire_ == DType::kF32) {
        optimizer_->Apply(weights_, sum_, scale);
      } else {
        optimizer_->Apply(master_, sum_, scale);
        Round();
      }
    }
    ++version_;
    return Status::Ok();
  }
  Status PullRows(int64_t, std::span<const SparseRows>) override { return FailedPrecondition("this test client has no sparse tables"); }
  int64_t applied_steps() const override { return version_; }
  // The parts of the cluster emulated (the model cuts its first layer there, as the workers' does).
  std::vector<int64_t> part_starts() const override { return part_starts_; }
  void set_part_starts(std::vector<int64_t> starts) { part_starts_ = std::move(starts); }

 private:
  // The model's weights: the master weights as they come over the wire.
  void Round() {
    EncodeValues(wire_, master_.data(), static_cast<int64_t>(master_.size()), bytes_.data());
    DecodeValues(wire_, bytes_.data(), static_cast<int64_t>(master_.size()), weights_.data());
  }

  std::span<float> weights_;
  std::unique_ptr<Optimizer> optimizer_;
  std::vector<float> sum_;
  int64_t version_ = 0, first_samples_ = 0;
  const DType wire_;
  std::vector<float> master_, rounded_;
  std::vector<float> residual_[2];  // per worker
  std::vector<std::byte> bytes_;
  std::vector<int64_t> part_starts_;
};

// One process trains `config` (max_steps, batch_size as set) from the
// initial weights; returns the final weights. `paired`: through
// PairedStepClient, two half-batch steps per update.
std::vector<float> TrainOneProcess(const JobConfig& config, const TrainTestData& data, const ModelSpec& spec,
                                   bool paired, DType wire = DType::kF32, std::vector<int64_t> part_starts = {}) {
  auto model = Model::Create(spec, config.training.batch_size, DropoutSeed(config));
  EXPECT_TRUE(model.ok());
  std::unique_ptr<ParameterClient> client;
  if (paired) {
    spec.Initialize({0, spec.num_params()}, (*model)->weights());
    auto paired_client = std::make_unique<PairedStepClient>(
        (*model)->weights(), std::move(Optimizer::Create(config.optimizer, spec.num_params())).value(), wire);
    paired_client->set_part_starts(std::move(part_starts));
    client = std::move(paired_client);
  } else {
    client = std::move(LocalParameterClient::Create(spec, config.optimizer, (*model)->weights())).value();
  }
  std::FILE* quiet = std::fopen("/dev/null", "w");
  ProgressPrinter progress(quiet, 1e9);
  Trainer trainer(config, model->get(), client.get(), &progress);
  ShardPlan plan(data.train.rows, config.data.shard_size, config.training.seed, config.training.shuffle);
  LocalShardSource source(&plan, config.training.epochs, config.training.max_steps);
  auto result = trainer.Run(data.train, data.test, &source);
  std::fclose(quiet);
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  if (result.ok()) {
    EXPECT_EQ(result->steps, config.training.max_steps);
  }
  auto w = (*model)->weights();
  return std::vector<float>(w.begin(), w.end());
}

double RelativeError(const std::vector<float>& a, const std::vector<float>& b, double* worst) {
  double diff = 0, norm = 0;
  *worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    double d = static_cast<double>(a[i]) - b[i];
    diff += d * d;
    norm += static_cast<double>(b[i]) * b[i];
    *worst = std::max(*worst, std::abs(d));
  }
  return std::sqrt(diff / norm);
}

// The cluster's weights are the one-process reference's, bit for bit.
void ExpectSameBits(const std::vector<float>& cluster, const std::vector<float>& reference) {
  ASSERT_EQ(cluster.size(), reference.size());
  std::size_t differing = 0;
  for (std::size_t i = 0; i < reference.size(); ++i) differing += reference[i] != cluster[i];
  double worst = 0;
  EXPECT_EQ(differing, 0u) << "of " << reference.size() << " weights differ from the one process's; relative error "
                           << RelativeError(cluster, reference, &worst) << ", largest " << worst;
}

// Workers w0 and w1 (summaries w0.json, w1.json in `dir`) of a 50-step job:
// 50 pushes of the whole gradient, `value_bytes` a value, and as many pulls
// of the whole model and more.
void ExpectWholeModelPayloads(const testing::TempDir& dir, int64_t params, int64_t value_bytes) {
  for (const char* name : {"w0", "w1"}) {
    auto summary = nlohmann::json::parse(testing::ReadFile(dir.File(std::string(name) + ".json")));
    EXPECT_EQ(summary["bytes_pushed"].get<int64_t>(), 50 * params * value_bytes) << summary.dump(2);
    EXPECT_GT(summary["step_exchange_ms"].get<double>(), 0) << summary.dump(2);
    EXPECT_GE(summary["bytes_pulled"].get<int64_t>(), 50 * params * value_bytes) << summary.dump(2);
    EXPECT_EQ(summary["bytes_pulled"].get<int64_t>() % (params * value_bytes), 0) << summary.dump(2);
  }
}

// Workers w0 and w1 (summaries w0.json, w1.json in `dir`) through `cluster`
// to the end of its job; the final weights one of them saved (empty: none).
std::vector<float> RunTwoWorkers(const testing::TempDir& dir, testing::TestCluster& cluster) {
  std::vector<std::unique_ptr<testing::ChildProcess>> workers;
  for (const char* name : {"w0", "w1"})
    workers.push_back(testing::StartWorker(cluster, dir.File(std::string(name) + ".json"),
                                           {"--save-weights", dir.File(name)}));
  for (auto& w : workers) EXPECT_EQ(w->Wait(120s), std::optional<int>(0)) << w->Stderr();
  testing::ExpectClusterExits(cluster);
  const std::string saved = std::filesystem::exists(dir.File("w0")) ? dir.File("w0") : dir.File("w1");
  return std::filesystem::exists(saved) ? ReadWeights(saved) : std::vector<float>{};
}

// The config at `path` with `sets` and then `more` as --set overrides.
JobConfig LoadConfig(const std::string& path, const std::vector<std::string>& sets,
                     const std::vector<std::string>& more) {
  std::vector<ConfigOverride> overrides;
  for (const auto& s : sets) overrides.push_back(*ParseOverride(s));
  for (const auto& s : more) overrides.push_back(*ParseOverride(s));
  auto config = LoadJobConfig(path, overrides);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? *config : JobConfig{};
}

JobConfig LoadMlp(const std::vector<std::string>& sets, const std::vector<std::string>& more) {
  return LoadConfig(kMlpConfig, sets, more);
}

// The job of `sets` through 2 servers and workers w0 and w1 (RunTwoWorkers)
// with payloads in ZeroMQ frames in parts of `chunk_kb`.
std::vector<float> RunTwoWorkersThroughFrames(const testing::TempDir& dir, const std::vector<std::string>& sets,
                                              int64_t chunk_kb) {
  std::vector<std::string> cluster_sets = sets;
  cluster_sets.push_back("cluster.shared_memory=false");
  cluster_sets.push_back("cluster.chunk_kb=" + std::to_string(chunk_kb));
  auto cluster = testing::StartCluster(kMlpConfig, 2, cluster_sets, {"--summary", dir.File("job.json")});
  return RunTwoWorkers(dir, cluster);
}

// `weights` are, bit for bit, those of one process that trains `steps`
// half batches of 60 of the job `sets` and combines each pair as a server
// does, its first layer cut where the cluster's parts of `chunk_kb` begin
// (cluster.priority_pulls: the workers' first layer computes block by block).
void ExpectPairedHalves(const std::vector<std::string>& sets, int64_t steps, const std::vector<float>& weights,
                        int64_t chunk_kb) {
  JobConfig halves = LoadMlp(sets, {"training.batch_size=60", "training.max_steps=" + std::to_string(steps)});
  auto data = LoadTrainTest(halves);
  ASSERT_TRUE(data.ok());
  auto spec = ModelSpec::FromConfig(halves.model, data->train.features);
  ASSERT_EQ(weights.size(), static_cast<std::size_t>(spec->num_params()));
  omp_set_num_threads(1);  // as the workers (training.threads: 1)
  ClusterOptions cluster = halves.cluster;
  cluster.servers = 2;
  cluster.chunk_kb = chunk_kb;
  const std::vector<int64_t> starts = PsClient::PartStarts(spec->num_params(), cluster);
  ExpectSameBits(weights, TrainOneProcess(halves, *data, *spec, true, DType::kF32, starts));
}

// The correctness anchor, on every ISA (CTest runs it again with
// DNNL_MAX_CPU_ISA=AVX2): 2 workers on batches of 60 against 2 servers give,
// bit for bit, the weights of one process that computes the same two
// half-batch gradients and combines them as a server does. With shards of
// one worker batch that divide the training set (60000 = 1000 x 60), worker
// i trains shard 2t+i of the epoch's order at step t: the records of the one
// process's steps 2t and 2t+1 (which worker has which does not matter: a
// sum of two floats is commutative).
//
// Against one process on the whole batch of 120 the weights agree only to
// rounding: the batch's gradient sums run over 120 rows instead of 2 x 60,
// in whatever blocking the CPU's kernels use (~1e-7 of a gradient). With
// SGD that adds up about linearly, plus the ReLU gates of pre-activations
// within rounding of zero flipping: measured after 50 steps, 9e-8 of the
// weights' norm with AVX-512 and 9.8e-5 with AVX2 kernels (batches of 120
// and 60 do not fill AVX2's blocks alike; 5.9e-6 with batches of 128 and
// 64); bound 5e-4. Adam divides each coordinate's step by its own RMS, so
// where a coordinate's gradient is at the rounding's scale the sign of its
// step is noise, up to lr (1e-3) a step: measured 3e-7 (AVX-512) and 4.5e-4
// (AVX2); bound 2e-3. A real fault (each step training on half its records:
// measured 0.17) moves the weights by over 1e-2.
TEST(Cluster, BspTwoWorkersTwoServersMatchOneProcessOnTheWholeBatch) {
  testing::TempDir dir;
  // A constant rate: the one-process references count updates differently
  // (two half-batch updates a step), and this is about the gradients' sums.
  const std::vector<std::string> sets{"training.max_steps=50", "training.batch_size=120",
                                      "cluster.workers=2", "data.shard_size=60", "optimizer.lr_schedule=constant"};
  std::vector<std::string> cluster_sets = sets;
  cluster_sets.push_back("checkpoint.interval_steps=25");
  cluster_sets.push_back("checkpoint.dir=" + dir.File("checkpoints"));
  auto cluster = testing::StartCluster(kMlpConfig, 2, cluster_sets, {"--summary", dir.File("job.json")});
  std::vector<std::unique_ptr<testing::ChildProcess>> workers;
  for (const char* name : {"w0", "w1"})
    workers.push_back(testing::StartWorker(cluster, dir.File(std::string(name) + ".json"),
                                           {"--save-weights", dir.File(name)}));
  for (auto& w : workers) {
    ASSERT_EQ(w->Wait(120s), std::optional<int>(0)) << w->Stderr();
    EXPECT_EQ(w->Stderr().find("ZeroMQ frames"), std::string::npos)
        << "a worker on the servers' host passes its payloads through shared memory:\n" << w->Stderr();
  }
  testing::ExpectClusterExits(cluster);
  const std::string saved = std::filesystem::exists(dir.File("w0")) ? dir.File("w0") : dir.File("w1");
  ASSERT_TRUE(std::filesystem::exists(saved)) << "no worker saved the final weights";
  std::vector<float> cluster_weights = ReadWeights(saved);

  auto load = [&](const std::vector<std::string>& more) { return LoadMlp(sets, more); };
  const JobConfig whole = load({}), halves = load({"training.batch_size=60", "training.max_steps=100"});
  const JobConfig whole_sgd = load({"optimizer.kind=sgd", "optimizer.learning_rate=0.1"});
  const JobConfig halves_sgd = load({"training.batch_size=60", "training.max_steps=100", "optimizer.kind=sgd",
                                     "optimizer.learning_rate=0.1"});
  auto data = LoadTrainTest(whole);
  ASSERT_TRUE(data.ok());
  auto spec = ModelSpec::FromConfig(whole.model, data->train.features);
  ASSERT_EQ(cluster_weights.size(), static_cast<std::size_t>(spec->num_params()));
  const int64_t params = spec->num_params();
  ExpectWholeModelPayloads(dir, params, 4);  // float32 (2 bytes a value on the bf16 wire: the next test)
  omp_set_num_threads(1);  // as the workers (training.threads: 1)

  const std::vector<float> paired = TrainOneProcess(halves, *data, *spec, true);
  ExpectSameBits(cluster_weights, paired);
  double worst = 0;

  const double adam = RelativeError(paired, TrainOneProcess(whole, *data, *spec, false), &worst);
  EXPECT_LE(adam, 2e-3) << "Adam, whole batch vs two halves; largest elementwise difference " << worst;
  const double sgd = RelativeError(TrainOneProcess(halves_sgd, *data, *spec, true),
                                   TrainOneProcess(whole_sgd, *data, *spec, false), &worst);
  EXPECT_LE(sgd, 5e-4) << "SGD, whole batch vs two halves; largest elementwise difference " << worst;
  // What the bounds must tell apart: each step trained on 64 of its 128 records.
  const double half_lost = RelativeError(paired, TrainOneProcess(load({"training.batch_size=60"}), *data, *spec, false),
                                         &worst);
  EXPECT_GT(half_lost, 1e-2);
  std::printf("whole batch vs two halves after 50 steps: relative error %.3g (Adam), %.3g (SGD); "
              "half of each batch: %.3g\n", adam, sgd, half_lost);

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

// The anchor again with payloads in ZeroMQ frames (as between hosts) cut
// into parts of 64 KiB (cluster.chunk_kb): each server's 198,755 keys travel
// as 13 pushes a step, each summed, applied and answered on its own. The
// parts must end bit for bit where whole pushes do (the optimizer's rules
// are elementwise and its step count moves once a step).

// The same anchor for the Transformers: a causal GPT (a loss at every
// position) and a masked encoder (a loss at the masked positions, divided
// by a fixed count; masks chosen by record, not by worker), small. 2
// workers on batches of 8 give one process on the whole batch of 16 to
// rounding: measured below (printed), bound as the MLP's. Without dropout
// they also give the bits of one process pairing half-batch gradients as a
// server does (that process counts two steps where the cluster counts one,
// so its dropout masks would be another step's). With dropout (0.1 in
// attention and both residual branches) the masks follow the record
// (nn::PassSamples), so the cluster still computes the whole batch's step.
TEST(Cluster, BspTransformersMatchOneProcessOnTheWholeBatch) {
  const std::string model =
      "model.layers=[{type: embedding, dim: 16, std: 0.02}, position, "
      "{type: transformer, heads: 2, mlp: 32, dropout: DROPOUT, causal: CAUSAL}, layernorm, {type: linear}]";
  const std::vector<std::pair<std::string, std::string>> cases{{"next", "0"}, {"masked", "0"}, {"next", "0.1"}};
  for (const auto& [task_name, dropout] : cases) {
    const char* task = task_name.c_str();
    SCOPED_TRACE(task_name + ", dropout " + dropout);
    const bool masked = task_name == "masked";
    const std::string config = std::string(PSFORGE_SOURCE_DIR) + (masked ? "/configs/fortunes_bert.yaml"
                                                                          : "/configs/fortunes_gpt.yaml");
    std::string layers = model;
    layers.replace(layers.find("CAUSAL"), 6, masked ? "false" : "true");
    layers.replace(layers.find("DROPOUT"), 7, dropout);
    std::vector<std::string> sets{layers, "training.max_steps=20", "training.batch_size=16", "cluster.workers=2",
                                  "data.shard_size=8", "optimizer.lr_schedule=constant",
                                  "optimizer.lr_warmup_steps=0", "optimizer.learning_rate=0.003",
                                  // each server clips its own range: not what one process does
                                  "optimizer.clip_norm=0"};
    // A window whose training set is an even number of worker batches:
    // the shards are then exactly a worker's batch each (the plan rounds
    // their number up to a multiple of the workers).
    TrainTestData data;
    for (int window = 16; window <= 48; ++window) {
      auto d = LoadTrainTest(LoadConfig(config, sets, {"data.window=" + std::to_string(window)}));
      ASSERT_TRUE(d.ok()) << d.status().ToString();
      if (d->train.rows % 16 != 0) continue;
      sets.push_back("data.window=" + std::to_string(window));
      data = std::move(*d);
      break;
    }
    ASSERT_GT(data.train.rows, 0) << "no window in [16, 48] makes an even number of batches";
    testing::TempDir dir;
    auto cluster = testing::StartCluster(config, 2, sets, {"--summary", dir.File("job.json")});
    const std::vector<float> cluster_weights = RunTwoWorkers(dir, cluster);
    ASSERT_FALSE(cluster_weights.empty()) << "no worker saved the final weights";

    const JobConfig whole = LoadConfig(config, sets, {});
    const JobConfig halves = LoadConfig(config, sets, {"training.batch_size=8", "training.max_steps=40"});
    auto spec = ModelSpec::FromConfig(whole.model, ShapeOf(whole, data.train));
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    ASSERT_EQ(cluster_weights.size(), static_cast<std::size_t>(spec->num_params()));
    omp_set_num_threads(1);
    if (dropout == "0") ExpectSameBits(cluster_weights, TrainOneProcess(halves, data, *spec, true));
    double worst = 0;
    const double adam = RelativeError(cluster_weights, TrainOneProcess(whole, data, *spec, false), &worst);
    EXPECT_LE(adam, 2e-3) << "Adam, whole batch vs two halves; largest elementwise difference " << worst;
    const double half_lost = RelativeError(
        cluster_weights, TrainOneProcess(LoadConfig(config, sets, {"training.batch_size=8"}), data, *spec, false),
        &worst);
    EXPECT_GT(half_lost, 10 * adam);
    std::printf("%s, dropout %s: whole batch vs two halves after 20 steps: relative error %.3g (Adam); half of each "
                "batch: %.3g\n",
                task, dropout.c_str(), adam, half_lost);
  }
}

TEST(Cluster, BspInPartsThroughFramesMatchesTheOneProcessBitForBit) {
  testing::TempDir dir;
  const std::vector<std::string> sets{"training.max_steps=50", "training.batch_size=120",
                                      "cluster.workers=2", "data.shard_size=60", "optimizer.lr_schedule=constant"};
  const std::vector<float> cluster_weights = RunTwoWorkersThroughFrames(dir, sets, 64);
  ASSERT_FALSE(cluster_weights.empty()) << "no worker saved the final weights";
  ExpectWholeModelPayloads(dir, static_cast<int64_t>(cluster_weights.size()), 4);
  ExpectPairedHalves(sets, 100, cluster_weights, 64);
}

// The same with two hidden layers (784-300-300-10) in 16 KiB parts: the
// parts of the last two layers' keys go out while the first layer's
// backward runs (cluster.push_during_backward), and the first layer's
// weight gradient is computed in blocks of rows cut at the parts, each
// part pushed once its block is done; the servers apply each part once
// both workers have pushed it. On the way back the next forward pass
// starts once each server's first part is in and takes the others as it
// reaches their keys (cluster.priority_pulls). Bit for bit the one
// process's weights still (that process cuts its first layer alike).
TEST(Cluster, BspPushingDuringBackwardMatchesTheOneProcessBitForBit) {
  testing::TempDir dir;
  const std::vector<std::string> sets{"training.max_steps=30", "training.batch_size=120", "cluster.workers=2",
                                      "data.shard_size=60", "optimizer.lr_schedule=constant", "model.hidden=[300, 300]"};
  const std::vector<float> cluster_weights = RunTwoWorkersThroughFrames(dir, sets, 16);
  ASSERT_FALSE(cluster_weights.empty()) << "no worker saved the final weights";
  for (const char* name : {"w0", "w1"}) {
    auto summary = nlohmann::json::parse(testing::ReadFile(dir.File(std::string(name) + ".json")));
    // 328,810 keys: each server holds 40 parts of 4,110 or 4,111 keys.
    // Every part goes out during backward: the last layers' as their
    // backward ends, the first layer's block by block, the last one with
    // its last block. All but each server's first come in during the
    // next step's forward pass (30 steps; the first pull is whole).
    EXPECT_EQ(summary.value("parts_pushed_during_backward", 0), 30 * 80) << summary.dump(2);
    EXPECT_EQ(summary.value("parts_pulled_during_forward", 0), 30 * 78) << summary.dump(2);
  }
  ExpectPairedHalves(sets, 60, cluster_weights, 16);
}

// SSP (bound 1: each push asks for the weights two steps ahead, with every
// part) and ASP through frames in parts of 64 KiB: the jobs train and end.
TEST(Cluster, SspAndAspInPartsThroughFramesTrain) {
  for (const char* consistency : {"ssp", "asp"}) {
    SCOPED_TRACE(consistency);
    testing::TempDir dir;
    const std::vector<std::string> sets{"training.max_steps=200", "cluster.workers=2",
                                        std::string("cluster.consistency=") + consistency, "cluster.staleness=1",
                                        "cluster.shared_memory=false", "cluster.chunk_kb=64"};
    auto cluster = testing::StartCluster(kMlpConfig, 2, sets, {"--summary", dir.File("job.json")});
    const std::vector<float> weights = RunTwoWorkers(dir, cluster);
    EXPECT_FALSE(weights.empty());
    auto job = nlohmann::json::parse(testing::ReadFile(dir.File("job.json")));
    EXPECT_EQ(job["steps"], 200) << job.dump(2);
    EXPECT_GE(job["test_accuracy"].get<double>(), 0.75) << job.dump(2);
  }
}

// The anchor's counterpart on the bf16 wire (cluster.wire_dtype: bf16, f32
// master weights on the servers, error feedback on the workers), the same
// job: bit for bit the weights of one process that emulates the wire as
// PairedStepClient does (so every rounding, residual and sum is where this
// test says), and half the bytes each way. Against the float32 wire the
// weights differ by what the rounding does to training: the workers compute
// at weights 2^-9 (relative) away from the master's and each gradient's
// rounding reaches the servers a step late, which moves a coordinate's Adam
// step by ~2^-9 of lr; but where a coordinate's gradient is at the
// rounding's scale the sign of its step is noise, up to lr (1e-3) a step,
// as in the anchor. That term dominates and is not small in the worst case
// (50 steps of lr against weights of RMS ~0.04), so the bound is measured,
// not derived: 2.8e-2 of the weights' norm after 50 steps, with AVX-512 and
// with AVX2 kernels; bound 6e-2, under half of what training on half of
// each batch does (0.17, the anchor).
TEST(Cluster, Bf16WireTrainsWhatItsOneProcessEmulationTrainsWithHalfTheBytes) {
  testing::TempDir dir;
  const std::vector<std::string> sets{"training.max_steps=50", "training.batch_size=120", "cluster.workers=2",
                                      "data.shard_size=60", "optimizer.lr_schedule=constant",
                                      "cluster.wire_dtype=bf16"};
  auto cluster = testing::StartCluster(kMlpConfig, 2, sets, {"--summary", dir.File("job.json")});
  const std::vector<float> cluster_weights = RunTwoWorkers(dir, cluster);
  ASSERT_FALSE(cluster_weights.empty()) << "no worker saved the final weights";

  auto load = [&](const std::vector<std::string>& more) { return LoadMlp(sets, more); };
  const JobConfig halves = load({"training.batch_size=60", "training.max_steps=100"});
  auto data = LoadTrainTest(halves);
  ASSERT_TRUE(data.ok());
  auto spec = ModelSpec::FromConfig(halves.model, data->train.features);
  const int64_t params = spec->num_params();
  ASSERT_EQ(cluster_weights.size(), static_cast<std::size_t>(params));
  ExpectWholeModelPayloads(dir, params, 2);
  auto job = nlohmann::json::parse(testing::ReadFile(dir.File("job.json")));
  EXPECT_EQ(job["wire_dtype"], "bf16");
  omp_set_num_threads(1);

  const std::vector<float> emulated = TrainOneProcess(halves, *data, *spec, true, DType::kBf16);
  ExpectSameBits(cluster_weights, emulated);
  double worst = 0;
  const double from_f32 = RelativeError(cluster_weights, TrainOneProcess(halves, *data, *spec, true), &worst);
  std::printf("bf16 wire vs float32 wire after 50 steps: relative error %.3g\n", from_f32);
  EXPECT_GT(from_f32, 0) << "the bf16 wire rounds";
  EXPECT_LE(from_f32, 6e-2);
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
  ASSERT_TRUE(cluster.coordinator->WaitForLine(std::regex("worker \\d (\\(pid \\d+\\) )?declared dead"), 60s))
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
