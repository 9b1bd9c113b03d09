#include "common/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace psforge {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("psforge_config_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    for (const char* f : {"train.csv", "test.csv"}) std::ofstream(dir_ / f) << "a,b\n1,2\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Result<JobConfig> Parse(const std::string& body, const std::vector<ConfigOverride>& o = {}) {
    return ParseJobConfig(kBase + body, "job.yaml", dir_.string(), o);
  }

  // Expects an InvalidArgument that names `field` and contains `hint`.
  void ExpectError(const std::string& body, const std::string& field, const std::string& hint,
                   const std::vector<ConfigOverride>& o = {}) {
    auto r = Parse(body, o);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("'" + field + "'"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(hint), std::string::npos) << r.status().message();
    EXPECT_EQ(r.status().message().rfind("job.yaml", 0), 0u) << r.status().message();
  }

  const std::string kBase =
      "data:\n  format: csv\n  train_csv: train.csv\n  test_csv: test.csv\n";
  std::filesystem::path dir_;
};

TEST_F(ConfigTest, DefaultsAndRelativePaths) {
  auto r = Parse("");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->model.kind, ModelKind::kMlp);
  EXPECT_EQ(r->optimizer.kind, OptimizerKind::kAdam);
  EXPECT_EQ(r->training.batch_size, 128);
  EXPECT_EQ(r->data.train_csv, (dir_ / "train.csv").string());
}

TEST_F(ConfigTest, ReadsEveryKindOfField) {
  auto r = Parse(
      "model: {kind: mlp, hidden: [256, 128], activation: tanh, classes: 3, init_seed: 7}\n"
      "optimizer: {kind: momentum, learning_rate: 0.05, momentum: 0.5, nesterov: true}\n"
      "training: {epochs: 3, batch_size: 64, threads: 2, seed: 9, shuffle: false}\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->model.hidden, (std::vector<int64_t>{256, 128}));
  EXPECT_EQ(r->model.activation, Activation::kTanh);
  EXPECT_EQ(r->optimizer.kind, OptimizerKind::kMomentum);
  EXPECT_DOUBLE_EQ(r->optimizer.momentum, 0.5);
  EXPECT_TRUE(r->optimizer.nesterov);
  EXPECT_EQ(r->training.threads, 2);
  EXPECT_FALSE(r->training.shuffle);
}

TEST_F(ConfigTest, UnknownFieldIsNamedWithTheAllowedOnes) {
  ExpectError("training:\n  epoch: 3\n", "training.epoch", "allowed fields are");
}

TEST_F(ConfigTest, UnknownSectionIsNamed) {
  ExpectError("trainer:\n  epochs: 3\n", "trainer", "allowed sections are");
}

TEST_F(ConfigTest, WrongTypeIsNamed) {
  ExpectError("training:\n  epochs: many\n", "training.epochs", "whole number");
  ExpectError("optimizer:\n  learning_rate: fast\n", "optimizer.learning_rate", "expected a number");
  ExpectError("training:\n  shuffle: maybe\n", "training.shuffle", "true or false");
  ExpectError("model:\n  hidden: 500\n", "model.hidden", "list");
}

TEST_F(ConfigTest, OutOfRangeIsNamedWithTheRange) {
  ExpectError("training:\n  batch_size: 0\n", "training.batch_size", "[1, ");
  ExpectError("optimizer:\n  learning_rate: -1\n", "optimizer.learning_rate", "(0, ");
  ExpectError("optimizer:\n  beta1: 1.0\n", "optimizer.beta1", "[0, 1)");
  ExpectError("model:\n  hidden: [10, 0]\n", "model.hidden[1]", "[1, ");
}

TEST_F(ConfigTest, CheckpointsBySteps_OrBySeconds_NeedAFolder) {
  ExpectError("checkpoint:\n  interval_steps: 100\n  interval_s: 30\n  dir: ck\n", "checkpoint.interval_s",
              "not both");
  ExpectError("checkpoint:\n  interval_s: 30\n", "checkpoint.interval_s", "needs checkpoint.dir");
  ExpectError("checkpoint:\n  interval_s: -1\n  dir: ck\n", "checkpoint.interval_s", "[0, ");
}

TEST_F(ConfigTest, WrongEnumListsTheChoices) {
  ExpectError("optimizer:\n  kind: rmsprop\n", "optimizer.kind", "sgd, momentum, adam, adagrad");
}

TEST_F(ConfigTest, MissingDataFileIsNamed) {
  auto r = ParseJobConfig("data:\n  format: csv\n  train_csv: nope.csv\n  test_csv: test.csv\n",
                          "job.yaml", dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'data.train_csv'"), std::string::npos);
  EXPECT_NE(r.status().message().find("nope.csv"), std::string::npos);
}

TEST_F(ConfigTest, MissingRequiredFileFieldIsNamed) {
  auto r = ParseJobConfig("data:\n  format: csv\n  train_csv: train.csv\n", "job.yaml", dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("'data.test_csv'"), std::string::npos);
}

TEST_F(ConfigTest, RegressionModelRejectsMlpFields) {
  ExpectError("model:\n  kind: linear_regression\n  hidden: [3]\n", "model.hidden", "only allowed");
}

TEST_F(ConfigTest, InvalidYamlSaysWhere) {
  auto r = Parse("training: {epochs: [\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not valid YAML at line"), std::string::npos);
}

TEST_F(ConfigTest, OverridesApplyAndAreValidated) {
  auto r = Parse("training:\n  epochs: 3\n",
                 {{"training.epochs", "5"}, {"optimizer.learning_rate", "0.5"},
                  {"model.hidden", "[8, 4]"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->training.epochs, 5);
  EXPECT_DOUBLE_EQ(r->optimizer.learning_rate, 0.5);
  EXPECT_EQ(r->model.hidden, (std::vector<int64_t>{8, 4}));
  ExpectError("", "training.epochz", "unknown field", {{"training.epochz", "5"}});
  ExpectError("", "training.epochs", "[1, ", {{"training.epochs", "0"}});
  // A port too long for a number was converted before it was refused.
  ExpectError("", "cluster.http", "host:port", {{"cluster.http", "127.0.0.1:99999999999999999999"}});
  ExpectError("", "cluster.max_requests_per_s", "", {{"cluster.max_requests_per_s", "0"}});
}

TEST(ParseOverride, SplitsAtTheFirstEquals) {
  auto o = ParseOverride("data.train_csv=a=b.csv");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->first, "data.train_csv");
  EXPECT_EQ(o->second, "a=b.csv");
  EXPECT_FALSE(ParseOverride("novalue").ok());
  EXPECT_FALSE(ParseOverride("a..b=1").ok());
  EXPECT_FALSE(ParseOverride("=1").ok());
}

TEST(LoadJobConfig, MissingFileIsNotFound) {
  auto r = LoadJobConfig("/nonexistent/job.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/job.yaml"), std::string::npos);
}

TEST(LoadJobConfig, EveryShippedConfigIsValid) {
  for (const auto& e : std::filesystem::directory_iterator(PSFORGE_SOURCE_DIR "/configs")) {
    if (e.path().extension() != ".yaml") continue;
    auto r = LoadJobConfig(e.path().string());
    EXPECT_TRUE(r.ok()) << e.path() << ": " << r.status().ToString();
  }
}

}  // namespace
}  // namespace psforge
