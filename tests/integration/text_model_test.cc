// The character-level language model as a user runs it: trained through a
// local cluster on Debian's fortunes, then text generated from its newest
// committed checkpoint with ps-generate, and the model exported.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/text_dataset.h"
#include "tests/support/subprocess.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;
using testing::BinPath;
using testing::RunProcess;
using testing::TempDir;

const std::string kConfig = PSFORGE_SOURCE_DIR "/configs/fortunes_char_lstm.yaml";

class TextModel : public ::testing::Test {
 protected:
  // One small model (LSTM 96) trained once for the whole suite: 1 epoch
  // through 2 servers and 2 workers, a checkpoint every 100 steps.
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    sets_ = {"--set", "model.layers=[{type: embedding, dim: 16}, {type: lstm, hidden: 96}, {type: linear}]",
             "--set", "checkpoint.interval_steps=100", "--set", "checkpoint.dir=" + dir_->File("ckpt")};
    std::vector<std::string> argv{BinPath("ps-launch"), "--config", kConfig, "--epochs", "1", "--run-dir",
                                  dir_->File("run"), "--summary", dir_->File("summary.json")};
    argv.insert(argv.end(), sets_.begin(), sets_.end());
    auto r = RunProcess(argv, 900s);
    trained_ = r.exit_code == 0;
    log_ = r.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  testing::ProcessResult Generate(const std::vector<std::string>& extra) {
    std::vector<std::string> argv{BinPath("ps-generate"), "--config", kConfig};
    argv.insert(argv.end(), sets_.begin(), sets_.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunProcess(argv, 120s);
  }

  static TempDir* dir_;
  static std::vector<std::string> sets_;
  static bool trained_;
  static std::string log_;
};

TempDir* TextModel::dir_ = nullptr;
std::vector<std::string> TextModel::sets_;
bool TextModel::trained_ = false;
std::string TextModel::log_;

// A model that ignored its input could do no better than the unigram
// entropy of the corpus; this one, after one epoch, does.
TEST_F(TextModel, ValidationLossFallsBelowTheUnigramEntropy) {
  ASSERT_TRUE(trained_) << log_;
  auto corpus = ReadTextCorpus({"/usr/share/games/fortunes"});
  ASSERT_TRUE(corpus.ok()) << corpus.status().ToString();
  EXPECT_GT(corpus->unigram_bits, 4.0);
  EXPECT_GE(corpus->vocabulary.size(), 90u);
  auto summary = nlohmann::json::parse(testing::ReadFile(dir_->File("summary.json")));
  ASSERT_TRUE(summary.contains("validation_bits_per_char")) << summary.dump(1);
  const double bpc = summary["validation_bits_per_char"];
  EXPECT_TRUE(std::isfinite(bpc));
  EXPECT_LT(bpc, corpus->unigram_bits - 0.5) << "unigram entropy " << corpus->unigram_bits;
  // The reader reported the vocabulary it built.
  EXPECT_NE(testing::ReadFile(dir_->File("run/logs/worker-0.log")).find("vocabulary of " +
                                                                         std::to_string(corpus->vocabulary.size())),
            std::string::npos);
}

TEST_F(TextModel, GenerationIsDeterministicForASeed) {
  ASSERT_TRUE(trained_) << log_;
  const std::vector<std::string> base{"--prompt", "The ", "--length", "120", "--temperature", "0.8"};
  auto seeded = [&](const char* seed) {
    auto argv = base;
    argv.insert(argv.end(), {"--seed", seed});
    auto r = Generate(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  const std::string a = seeded("7"), b = seeded("7"), c = seeded("8");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  ASSERT_EQ(a.size(), 4u + 120u + 1u) << a;  // the prompt, the text, a newline
  EXPECT_EQ(a.rfind("The ", 0), 0u);
  auto corpus = ReadTextCorpus({"/usr/share/games/fortunes"});
  ASSERT_TRUE(corpus.ok());
  EXPECT_TRUE(EncodeText(*corpus, a).ok()) << "a character outside the vocabulary";
  // Greedy decoding needs no seed: any two runs agree.
  auto g1 = Generate({"--prompt", "The ", "--length", "40", "--temperature", "0", "--seed", "1"});
  auto g2 = Generate({"--prompt", "The ", "--length", "40", "--temperature", "0", "--seed", "2"});
  EXPECT_EQ(g1.out, g2.out);
}

TEST_F(TextModel, APromptOutsideTheVocabularyIsNamed) {
  ASSERT_TRUE(trained_) << log_;
  auto r = Generate({"--prompt", "caf\x01", "--length", "5"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("0x01"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not in the model's vocabulary"), std::string::npos) << r.err;
}

TEST_F(TextModel, TheLstmExportsUnderPyTorchNames) {
  ASSERT_TRUE(trained_) << log_;
  std::vector<std::string> argv{BinPath("ps-export"), "--config", kConfig, "--out", dir_->File("lm.npz")};
  argv.insert(argv.end(), sets_.begin(), sets_.end());
  auto e = RunProcess(argv, 120s);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  auto r = RunProcess({"/usr/bin/python3", "-c",
                       "import json, numpy as np; m = np.load('" + dir_->File("lm.npz") +
                           "'); print(json.dumps({k: list(m[k].shape) for k in m.files if k != 'psforge.json'}))"},
                      60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto shapes = nlohmann::json::parse(r.out);
  const int vocabulary = shapes["embedding0.weight"][0];
  EXPECT_EQ(shapes["embedding0.weight"], nlohmann::json::array({vocabulary, 16}));
  EXPECT_EQ(shapes["lstm0.weight_ih"], nlohmann::json::array({4 * 96, 16}));
  EXPECT_EQ(shapes["lstm0.weight_hh"], nlohmann::json::array({4 * 96, 96}));
  EXPECT_EQ(shapes["lstm0.bias"], nlohmann::json::array({4 * 96}));
  EXPECT_EQ(shapes["fc0.weight"], nlohmann::json::array({vocabulary, 96}));
}


// The GPT-style Transformer (configs/fortunes_gpt.yaml, made small: one
// block of 32 features) as a user runs it: through a local cluster for one
// epoch, then text from its newest committed checkpoint, then exported.
class GptModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    sets_ = {"--set",
             "model.layers=[{type: embedding, dim: 32}, position, "
             "{type: transformer, heads: 2, causal: true, mlp: 64, dropout: 0.1}, layernorm, {type: linear}]",
             "--set", "checkpoint.interval_steps=100", "--set", "checkpoint.dir=" + dir_->File("ckpt")};
    std::vector<std::string> argv{BinPath("ps-launch"), "--config", kGptConfig, "--epochs", "1", "--run-dir",
                                  dir_->File("run"), "--summary", dir_->File("summary.json")};
    argv.insert(argv.end(), sets_.begin(), sets_.end());
    auto r = RunProcess(argv, 900s);
    trained_ = r.exit_code == 0;
    log_ = r.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  testing::ProcessResult Generate(const std::vector<std::string>& extra) {
    std::vector<std::string> argv{BinPath("ps-generate"), "--config", kGptConfig};
    argv.insert(argv.end(), sets_.begin(), sets_.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunProcess(argv, 120s);
  }

  static inline const std::string kGptConfig = PSFORGE_SOURCE_DIR "/configs/fortunes_gpt.yaml";
  static inline TempDir* dir_ = nullptr;
  static inline std::vector<std::string> sets_;
  static inline bool trained_ = false;
  static inline std::string log_;
};

TEST_F(GptModel, LearnsTheCorpusAndWritesTheSameTextForASeed) {
  ASSERT_TRUE(trained_) << log_;
  auto corpus = ReadTextCorpus({"/usr/share/games/fortunes"});
  ASSERT_TRUE(corpus.ok()) << corpus.status().ToString();
  auto summary = nlohmann::json::parse(testing::ReadFile(dir_->File("summary.json")));
  ASSERT_TRUE(summary.contains("validation_bits_per_char")) << summary.dump(1);
  const double bpc = summary["validation_bits_per_char"];
  EXPECT_LT(bpc, corpus->unigram_bits - 0.5) << "unigram entropy " << corpus->unigram_bits;
  auto seeded = [&](const char* seed) {
    auto r = Generate({"--prompt", "The ", "--length", "150", "--temperature", "0.8", "--seed", seed});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  const std::string a = seeded("3"), b = seeded("3"), c = seeded("4");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // Longer than the 64-character window the model was trained on.
  ASSERT_EQ(a.size(), 4u + 150u + 1u) << a;
  EXPECT_TRUE(EncodeText(*corpus, a).ok()) << "a character outside the vocabulary";
}

TEST_F(GptModel, ExportsUnderPyTorchNames) {
  ASSERT_TRUE(trained_) << log_;
  std::vector<std::string> argv{BinPath("ps-export"), "--config", kGptConfig, "--out", dir_->File("gpt.npz")};
  argv.insert(argv.end(), sets_.begin(), sets_.end());
  auto e = RunProcess(argv, 120s);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  auto r = RunProcess({"/usr/bin/python3", "-c",
                       "import json, numpy as np; m = np.load('" + dir_->File("gpt.npz") +
                           "'); print(json.dumps({k: list(m[k].shape) for k in m.files if k != 'psforge.json'}))"},
                      60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto shapes = nlohmann::json::parse(r.out);
  EXPECT_EQ(shapes["pos0.weight"], nlohmann::json::array({64, 32}));
  EXPECT_EQ(shapes["block0.res0.attn0.in_proj_weight"], nlohmann::json::array({96, 32}));
  EXPECT_EQ(shapes["block0.res0.attn0.out_proj.weight"], nlohmann::json::array({32, 32}));
  EXPECT_EQ(shapes["block0.res1.fc0.weight"], nlohmann::json::array({64, 32}));
  EXPECT_EQ(shapes["ln0.weight"], nlohmann::json::array({32}));
}

}  // namespace
}  // namespace psforge
