// The fault scenarios for the Transformers, as for the MLP (recovery_test):
// a small GPT with dropout killed outright and resumed from its checkpoint,
// and a small BERT-style masked encoder losing a server mid-run, each ending
// with the weights of the same job run undisturbed, bit for bit. What they
// add to the MLP's: the state a resumed step must find again besides the
// servers' weights and AdamW moments: the warm-up and cosine learning rate
// at that step, the dropout masks and the BERT masks drawn for its records.
#include <gtest/gtest.h>

#include "tests/fault/fault_job.h"

namespace psforge {
namespace {

using namespace fault;

const std::string kGptConfig = PSFORGE_SOURCE_DIR "/configs/fortunes_gpt.yaml";
const std::string kBertConfig = PSFORGE_SOURCE_DIR "/configs/fortunes_bert.yaml";

// 150 steps of 32 windows of 64 characters: 100 of warm-up, then the
// cosine; a checkpoint every 50.
std::vector<std::string> TransformerSets(const testing::TempDir& dir, const std::string& layers) {
  return {"model.layers=" + layers,
          "data.window=64",
          "training.max_steps=150",
          "training.epochs=1",
          "training.batch_size=32",
          "cluster.workers=2",
          "data.shard_size=64",
          "checkpoint.interval_steps=50",
          "checkpoint.dir=" + dir.File("checkpoints"),
          "cluster.peer_timeout_s=2",
          "cluster.heartbeat_interval_s=0.2"};
}

const std::string kSmallGpt =
    "[{type: embedding, dim: 32}, position, {type: transformer, heads: 2, causal: true, mlp: 64, dropout: 0.1}, "
    "layernorm, {type: linear}]";
const std::string kSmallBert =
    "[{type: embedding, dim: 32, std: 0.02}, position, {type: transformer, heads: 2, mlp: 64, dropout: 0.1}, "
    "layernorm, {type: linear}]";

Job StartTransformerJob(const std::string& config, const std::string& layers, const testing::TempDir& dir,
                        const std::string& name, bool resume) {
  auto sets = TransformerSets(dir, layers);
  Job job{testing::StartCluster(config, 2, sets, CoordinatorArgs(dir, name, resume)), {}, sets, name};
  for (int w = 0; w < 2; ++w) job.workers.push_back(StartJobWorker(job, dir, w));
  return job;
}

std::vector<float> UndisturbedTransformer(const std::string& config, const std::string& layers,
                                          const testing::TempDir& dir) {
  Job job = StartTransformerJob(config, layers, dir, "undisturbed", false);
  return Finish(job, dir);
}

TEST(TransformerRecovery, AGptKilledOutrightResumesFromItsCheckpointWithTheSameWeights) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = UndisturbedTransformer(kGptConfig, kSmallGpt, reference);
  ASSERT_FALSE(expected.empty());

  // Killed after the checkpoint at step 50 (in the warm-up) or 100 (its last step).
  Job first = StartTransformerJob(kGptConfig, kSmallGpt, dir, "first", false);
  const int64_t committed = WaitForCommit(first, "[15]00?");
  KillAll(first);

  Job resumed = StartTransformerJob(kGptConfig, kSmallGpt, dir, "resumed", true);
  auto summary = ExpectUndisturbedEnd(resumed, dir, expected, 150);
  EXPECT_GE(summary["resumed_from_step"].get<int64_t>(), committed) << "a committed step was lost";
  EXPECT_TRUE(summary.contains("validation_bits_per_char")) << summary.dump(1);
}

TEST(TransformerRecovery, AServerOfAMaskedEncoderKilledMidRunRollsBackAndTheJobEndsAsUndisturbed) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = UndisturbedTransformer(kBertConfig, kSmallBert, reference);
  ASSERT_FALSE(expected.empty());

  Job job = StartTransformerJob(kBertConfig, kSmallBert, dir, "killed", false);
  const int64_t committed = WaitForCommit(job, "[15]00?");
  KillAndRestartServer(job, 1);
  EXPECT_GE(WaitForResume(job), committed) << "a committed step was lost";
  auto summary = ExpectUndisturbedEnd(job, dir, expected, 150);
  EXPECT_EQ(summary["restarts"], 1);
  EXPECT_TRUE(summary.contains("masked_bits_per_char")) << summary.dump(1);
}

}  // namespace
}  // namespace psforge
