#include "common/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

namespace psforge {
extern const char kConfigDoc[];
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

TEST_F(ConfigTest, CheckpointsBySteps_OrBySeconds) {
  ExpectError("checkpoint:\n  interval_steps: 100\n  interval_s: 30\n  dir: ck\n", "checkpoint.interval_s",
              "not both");
  ExpectError("checkpoint:\n  interval_s: -1\n  dir: ck\n", "checkpoint.interval_s", "[0, ");
}

// On by default, by time; interval_steps alone switches to steps; both 0: off.
// cluster.faults is checked when the config is read, not when a server or
// worker first needs it; checkpoint.write_timeout_s bounds every wait for a write.
TEST_F(ConfigTest, FaultsAndTheWriteTimeoutAreChecked) {
  auto ok = Parse("cluster:\n  faults: drop=0.1,write_stall_ms=20\ncheckpoint:\n  write_timeout_s: 5\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->cluster.faults, "drop=0.1,write_stall_ms=20");
  EXPECT_EQ(ok->checkpoint.write_timeout_s, 5);
  EXPECT_EQ(Parse("")->cluster.faults, "");
  EXPECT_EQ(Parse("")->checkpoint.write_timeout_s, 30);
  EXPECT_EQ(Parse("")->cluster.connect_timeout_s, kDefaultConnectTimeoutS);
  ExpectError("cluster:\n  faults: drop=2\n", "cluster.faults", "drop");
  ExpectError("cluster:\n  faults: lose=0.1\n", "cluster.faults", "lose");
  ExpectError("checkpoint:\n  write_timeout_s: 0\n", "checkpoint.write_timeout_s", "(0, ");
  auto set = Parse("", {{"cluster.faults", "die_mid_push=250"}});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->cluster.faults, "die_mid_push=250");
}

// Every field a config has is in the reference (configs/README.md, which
// --config-template prints): a field nobody can look up is a field nobody sets.
TEST(ConfigReference, DocumentsEveryField) {
  const nlohmann::json fields = ConfigToJson(JobConfig{});
  const std::string doc = kConfigDoc;
  for (const auto& [section, values] : fields.items()) {
    if (!values.is_object() || section == "model") continue;  // model: its own tables, per kind
    const auto at = doc.find("\n## " + section + "\n");
    ASSERT_NE(at, std::string::npos) << "no section " << section;
    std::istringstream part(doc.substr(at, doc.find("\n## ", at + 1) - at));
    std::set<std::string> documented;  // a row's first cell: "name" or "name, name"
    for (std::string line; std::getline(part, line);) {
      if (line.rfind("| ", 0) != 0) continue;
      std::istringstream names(line.substr(2, line.find(" |", 2) - 2));
      for (std::string name; std::getline(names, name, ',');)
        documented.insert(name.substr(name.find_first_not_of(' ')));
    }
    for (const auto& [name, value] : values.items())
      EXPECT_TRUE(documented.count(name)) << section << "." << name << " is not documented";
  }
}

TEST_F(ConfigTest, CheckpointsAreOnByDefaultAndOffOnlyWhenSaidSo) {
  auto d = Parse("");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->checkpoint.enabled());
  EXPECT_EQ(d->checkpoint.interval_s, kDefaultCheckpointIntervalS);
  EXPECT_EQ(d->checkpoint.dir, "");
  auto steps = Parse("checkpoint:\n  interval_steps: 200\n");
  ASSERT_TRUE(steps.ok()) << steps.status().ToString();
  EXPECT_EQ(steps->checkpoint.interval_steps, 200);
  EXPECT_EQ(steps->checkpoint.interval_s, 0);
  auto off = Parse("", {{"checkpoint.interval_s", "0"}});
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(off->checkpoint.enabled());
  // What members receive round-trips.
  nlohmann::json sent = ConfigToJson(*steps);
  sent.erase("path");
  auto again = ParseJobConfig(sent.dump(), "job", "");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->checkpoint.interval_steps, 200);
  EXPECT_EQ(again->checkpoint.interval_s, 0);
}

TEST_F(ConfigTest, LearningRateSchedules) {
  auto d = Parse("optimizer:\n  lr_decay_steps: 100\n  lr_decay_rate: 0.5\n");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->optimizer.lr_schedule, LrSchedule::kExponential);
  auto c = Parse("optimizer:\n  lr_schedule: cosine\ntraining:\n  epochs: 3\n  batch_size: 100\n");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->optimizer.lr_schedule_steps, 0);
  ResolveJobLength(&*c, 1001);
  EXPECT_EQ(c->optimizer.lr_schedule_steps, 33);  // 3 epochs of ceil(1001 / 100) steps
  c->training.max_steps = 20;
  EXPECT_EQ(JobUpdates(*c, 1001), 20);
  ExpectError("optimizer:\n  lr_schedule: exponential\n", "optimizer.lr_decay_steps", "needs");
  ExpectError("optimizer:\n  lr_schedule: cosine\n  lr_min: 0.5\n", "optimizer.lr_min", "must not exceed");
  ExpectError("optimizer:\n  lr_schedule: linear\n", "optimizer.lr_schedule", "cosine");
}

TEST_F(ConfigTest, LabelNamesMatchTheClasses) {
  const std::string data = "data:\n  format: csv\n  train_csv: train.csv\n  test_csv: test.csv\n";
  auto ok = ParseJobConfig(data + "  label_names: [cat, dog]\nmodel:\n  classes: 2\n", "job.yaml", dir_.string());
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->data.label_names, (std::vector<std::string>{"cat", "dog"}));
  auto bad = ParseJobConfig(data + "  label_names: [cat, dog]\nmodel:\n  classes: 3\n", "job.yaml", dir_.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'data.label_names'"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("model.classes=3"), std::string::npos) << bad.status().message();
}

// adamw and rmsprop take torch.optim's defaults where they differ from the
// other kinds' (weight_decay 0.01; momentum 0), unless the config sets them.
TEST_F(ConfigTest, AdamWRmsPropL1AndWarmUp) {
  auto d = Parse("");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->optimizer.weight_decay, 0);
  EXPECT_EQ(d->optimizer.momentum, 0.9);
  EXPECT_EQ(d->optimizer.alpha, 0.99);
  EXPECT_FALSE(d->optimizer.centered);
  EXPECT_EQ(d->optimizer.l1, 0);
  EXPECT_EQ(d->optimizer.lr_warmup_steps, 0);
  auto w = Parse("optimizer:\n  kind: adamw\n");
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->optimizer.kind, OptimizerKind::kAdamW);
  EXPECT_EQ(w->optimizer.weight_decay, 0.01);
  EXPECT_EQ(Parse("optimizer: {kind: adamw, weight_decay: 0}\n")->optimizer.weight_decay, 0);
  EXPECT_EQ(Parse("", {{"optimizer.kind", "adamw"}})->optimizer.weight_decay, 0.01);
  auto r = Parse("optimizer: {kind: rmsprop, alpha: 0.9, centered: true, l1: 0.001, lr_warmup_steps: 100}\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->optimizer.kind, OptimizerKind::kRmsProp);
  EXPECT_EQ(r->optimizer.momentum, 0);
  EXPECT_EQ(r->optimizer.alpha, 0.9);
  EXPECT_TRUE(r->optimizer.centered);
  EXPECT_EQ(r->optimizer.l1, 0.001);
  EXPECT_EQ(r->optimizer.lr_warmup_steps, 100);
  EXPECT_EQ(r->optimizer.epsilon, 1e-8);
  EXPECT_EQ(Parse("optimizer: {kind: rmsprop, momentum: 0.5}\n")->optimizer.momentum, 0.5);
  // What members receive round-trips.
  for (const auto& config : {*w, *r}) {
    nlohmann::json sent = ConfigToJson(config);
    sent.erase("path");
    auto again = ParseJobConfig(sent.dump(), "job", "");
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(ConfigToJson(*again)["optimizer"], sent["optimizer"]);
  }
  ExpectError("optimizer:\n  kind: rmsprop\n  alpha: 1\n", "optimizer.alpha", "[0, 1), got 1");
  ExpectError("optimizer:\n  alpha: -0.5\n", "optimizer.alpha", "[0, 1)");
  ExpectError("optimizer:\n  centered: sometimes\n", "optimizer.centered", "true or false");
  ExpectError("optimizer:\n  kind: rmsprop\n  momentum: 1\n", "optimizer.momentum", "[0, 1)");
  ExpectError("optimizer:\n  l1: -0.1\n", "optimizer.l1", "[0, ");
  ExpectError("optimizer:\n  lr_warmup_steps: -1\n", "optimizer.lr_warmup_steps", "[0, ");
  ExpectError("optimizer:\n  lr_warmup_steps: 2.5\n", "optimizer.lr_warmup_steps", "whole number");
  // The cosine falls over the updates after the warm-up: there must be none
  // or more of them. A cosine over the job's length is not known yet.
  ExpectError("optimizer: {lr_schedule: cosine, lr_schedule_steps: 10, lr_warmup_steps: 11}\n",
              "optimizer.lr_warmup_steps", "must not exceed optimizer.lr_schedule_steps (10)");
  EXPECT_TRUE(Parse("optimizer: {lr_schedule: cosine, lr_schedule_steps: 10, lr_warmup_steps: 10}\n").ok());
  EXPECT_TRUE(Parse("optimizer: {lr_schedule: cosine, lr_warmup_steps: 1000}\n").ok());
  EXPECT_TRUE(Parse("optimizer: {lr_schedule: exponential, lr_decay_steps: 5, lr_warmup_steps: 1000}\n").ok());
  // A field of another kind is accepted and unused, as momentum is with adam
  // (every kind's fields are in the config members receive).
  EXPECT_TRUE(Parse("optimizer: {kind: adam, alpha: 0.5, centered: true, momentum: 0.5}\n").ok());
}

TEST_F(ConfigTest, ADirectoryIsNamedAsOne) {
  auto r = LoadJobConfig(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("is a directory"), std::string::npos) << r.status().message();
  std::filesystem::create_directories(dir_ / "folder");
  auto d = ParseJobConfig("data:\n  format: csv\n  train_csv: folder\n  test_csv: test.csv\n", "job.yaml",
                          dir_.string());
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("'data.train_csv'"), std::string::npos) << d.status().message();
  EXPECT_NE(d.status().message().find("is a directory"), std::string::npos) << d.status().message();
}

TEST_F(ConfigTest, WrongEnumListsTheChoices) {
  ExpectError("optimizer:\n  kind: lion\n", "optimizer.kind", "sgd, momentum, adam, adagrad, adamw, rmsprop");
}

TEST_F(ConfigTest, WireDtypeIsF32UnlessSaidAndRoundTripsThroughJson) {
  auto plain = Parse("");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->cluster.wire_dtype, DType::kF32);
  for (const char* name : {"bf16", "fp16", "f32"}) {
    auto r = Parse(std::string("cluster:\n  wire_dtype: ") + name + "\n");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_STREQ(DTypeName(r->cluster.wire_dtype), name);
    EXPECT_EQ(ConfigToJson(*r)["cluster"]["wire_dtype"], name);
  }
  ExpectError("cluster:\n  wire_dtype: int8\n", "cluster.wire_dtype", "f32, bf16, fp16");
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

TEST(ParseOverride, AnEmptyValueIsTheEmptyString) {
  const std::string dir = testing::TempDir();
  std::ofstream(dir + "/override_rows.csv") << "a,label\n1,0\n";
  const std::string yaml = "model: {kind: mlp, hidden: [4], classes: 3, init_from: nowhere.npz}\n"
                           "data: {format: csv, train_csv: override_rows.csv, test_csv: override_rows.csv}\n";
  auto plain = ParseJobConfig(yaml, "t.yaml", dir, {});
  ASSERT_FALSE(plain.ok());  // the file is not there
  EXPECT_NE(plain.status().message().find("nowhere.npz"), std::string::npos);
  auto cleared = ParseJobConfig(yaml, "t.yaml", dir, {*ParseOverride("model.init_from=")});
  ASSERT_TRUE(cleared.ok()) << cleared.status().message();
  EXPECT_EQ(cleared->model.init_from, "");
}

TEST(LoadJobConfig, MissingFileIsNotFound) {
  auto r = LoadJobConfig("/nonexistent/job.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/job.yaml"), std::string::npos);
}


// A shipped config on click logs names data ps-ctr-data writes
// (data/ctr); these checks give it a two-line log of the same layout.
std::vector<ConfigOverride> ClickLogOverrides(const std::string& config) {
  std::ifstream in(config);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find("format: criteo") == std::string::npos) return {};
  const std::string log = (std::filesystem::temp_directory_path() / ("psforge-clicks-" + std::to_string(::getpid()))).string();
  std::string line(1, '1');
  for (int i = 0; i < 13; ++i) {
    line.push_back('\t');
    line.append(std::to_string(i));
  }
  for (int i = 0; i < 26; ++i) {
    line.append("\tab");
    line.append(std::to_string(i));
  }
  std::ofstream(log) << line << "\n" << line << "\n";
  return {{"data.train_tsv", log}, {"data.test_tsv", log}};
}

TEST(LoadJobConfig, EveryShippedConfigIsValid) {
  for (const auto& e : std::filesystem::directory_iterator(PSFORGE_SOURCE_DIR "/configs")) {
    if (e.path().extension() != ".yaml") continue;
    auto r = LoadJobConfig(e.path().string(), ClickLogOverrides(e.path().string()));
    EXPECT_TRUE(r.ok()) << e.path() << ": " << r.status().ToString();
  }
}

}  // namespace
}  // namespace psforge

namespace psforge {
namespace {

class SequentialConfigTest : public ConfigTest {};

const char* kCnn =
    "model:\n"
    "  kind: sequential\n"
    "  input_shape: [1, 28, 28]\n"
    "  layers:\n"
    "    - {type: conv, filters: 8, kernel: 5, padding: 2}\n"
    "    - batchnorm\n"
    "    - relu\n"
    "    - {type: maxpool}\n"
    "    - flatten\n"
    "    - {type: dropout, rate: 0.3}\n"
    "    - {type: linear, out: 10}\n";

TEST_F(SequentialConfigTest, LayersParseWithTheirDefaultsAndRoundTripThroughJson) {
  auto r = Parse(kCnn);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& l = r->model.layers;
  ASSERT_EQ(l.size(), 7u);
  EXPECT_EQ(l[0], MakeLayer(ConvLayer(8, 5, 1, 2)));
  EXPECT_STREQ(l[1].type(), "batchnorm");
  EXPECT_EQ(l[3], MakeLayer(MaxPoolLayer(2, 2, 0)));
  ASSERT_NE(l[5].As<DropoutLayer>(), nullptr);
  EXPECT_DOUBLE_EQ(l[5].As<DropoutLayer>()->rate, 0.3);
  EXPECT_EQ(l[6], MakeLayer(LinearLayer(10)));
  EXPECT_NE(l[6], MakeLayer(LinearLayer(11)));
  EXPECT_NE(l[1], l[2]);
  EXPECT_EQ(r->model.input_shape, (std::vector<int64_t>{1, 28, 28}));
  // The job travels to servers and workers as JSON: the same model comes back.
  nlohmann::json j = ConfigToJson(*r);
  j.erase("path");  // as EncodeJob sends it
  auto back = ParseJobConfig(j.dump(), "json", dir_.string());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->model.layers, l);
  EXPECT_EQ(back->model.input_shape, r->model.input_shape);
}

// A residual block holds its own list of layers, which may hold blocks.
TEST_F(SequentialConfigTest, ResidualBlocksNestAndRoundTripThroughJson) {
  auto r = Parse(
      "model:\n"
      "  kind: sequential\n"
      "  layers:\n"
      "    - {type: linear, out: 16}\n"
      "    - type: residual\n"
      "      layers:\n"
      "        - {type: linear, out: 32}\n"
      "        - tanh\n"
      "        - {type: residual, layers: [{type: linear, out: 32}, relu]}\n"
      "        - {type: linear, out: 16}\n"
      "    - linear\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& l = r->model.layers;
  ASSERT_EQ(l.size(), 3u);
  const ResidualLayer* block = l[1].As<ResidualLayer>();
  ASSERT_NE(block, nullptr);
  ASSERT_EQ(block->layers.size(), 4u);
  EXPECT_EQ(block->layers[0], MakeLayer(LinearLayer(32)));
  const ResidualLayer* inner = block->layers[2].As<ResidualLayer>();
  ASSERT_NE(inner, nullptr);
  EXPECT_EQ(inner->layers[1], MakeLayer<ReluLayer>());
  nlohmann::json j = ConfigToJson(*r);
  j.erase("path");
  auto back = ParseJobConfig(j.dump(), "json", dir_.string());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->model.layers, l);
  // The comparison sees inside blocks.
  auto other = Parse(
      "model:\n  kind: sequential\n  layers:\n    - {type: linear, out: 16}\n"
      "    - {type: residual, layers: [{type: linear, out: 16}]}\n    - linear\n");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  EXPECT_NE(other->model.layers, l);
}

TEST_F(SequentialConfigTest, ABadLayerIsNamedWithWhatIsAllowed) {
  std::string base = "model:\n  kind: sequential\n  layers:\n";
  ExpectError(base + "    - {type: conv, kernel: 3}\n", "model.layers[0].filters", "required");
  ExpectError(base + "    - {type: lstm}\n", "model.layers[0].hidden", "required");
  ExpectError(base + "    - {type: embedding, dim: 0}\n", "model.layers[0].dim", "[1, ");
  ExpectError(base + "    - {type: convolution}\n", "model.layers[0].type", "must be one of linear, conv");
  ExpectError(base + "    - {filters: 3}\n", "model.layers[0].type", "required");
  ExpectError(base + "    - {type: dropout, rate: 1.5}\n", "model.layers[0].rate", "[0, 1)");
  ExpectError(base + "    - {type: relu, out: 3}\n", "model.layers[0].out", "unknown field");
  ExpectError(base + "    - {type: maxpool, kernel: 2, padding: 2}\n", "model.layers[0].padding", "smaller");
  ExpectError(base + "    - {type: residual}\n", "model.layers[0].layers", "expected a list of layers");
  ExpectError(base + "    - {type: residual, layers: [{type: linear, outs: 3}]}\n", "model.layers[0].layers[0].outs",
              "unknown field");
  std::string nested = "[linear]";
  for (int i = 0; i < 20; ++i) nested = "[{type: residual, layers: " + nested + "}]";
  std::string deepest = "model.layers[0]";
  for (int i = 0; i < 16; ++i) deepest += ".layers[0]";
  ExpectError("model:\n  kind: sequential\n  layers: " + nested + "\n", deepest + ".layers", "nested more than 16 deep");
  ExpectError("model:\n  kind: sequential\n", "model.layers", "required");
  ExpectError("model:\n  kind: mlp\n  layers: [relu]\n", "model.layers", "only allowed with model.kind sequential");
  ExpectError("model:\n  kind: sequential\n  hidden: [3]\n  layers: [relu]\n", "model.hidden", "only allowed");
}

// model.kind ctr with its tables, on click logs; every mismatch is named.
TEST_F(ConfigTest, CtrModelsReadTheirTablesAndTrainOnClickLogs) {
  for (const char* f : {"train.tsv", "test.tsv"}) std::ofstream(dir_ / f) << "1\n";
  const std::string criteo = "data:\n  format: criteo\n  train_tsv: train.tsv\n  test_tsv: test.tsv\n";
  const std::string ctr =
      "model:\n  kind: ctr\n  tables:\n    - {name: ids, rows: 1099511627776, dim: 32, optimizer: lazy_adam,"
      " learning_rate: 0.01, init: normal, init_scale: 0.1, seed: 7}\n";
  auto parse = [&](const std::string& body) { return ParseJobConfig(body, "job.yaml", dir_.string(), {}); };
  auto c = parse(ctr + criteo);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model.kind, ModelKind::kCtr);
  EXPECT_EQ(c->model.hidden, (std::vector<int64_t>{256, 128}));
  ASSERT_EQ(c->model.tables.size(), 1u);
  const TableOptions& t = c->model.tables[0];
  EXPECT_EQ(t.name, "ids");
  EXPECT_EQ(t.rows, int64_t{1} << 40);
  EXPECT_EQ(t.dim, 32);
  EXPECT_EQ(t.optimizer, RowOptimizerKind::kLazyAdam);
  EXPECT_EQ(t.init, RowInit::kNormal);
  EXPECT_DOUBLE_EQ(t.learning_rate, 0.01);
  EXPECT_EQ(t.seed, 7u);
  EXPECT_EQ(c->data.train_tsv, (dir_ / "train.tsv").string());
  EXPECT_STREQ(MetricName(*c), "test_auc");
  // A job reaches its members as ConfigToJson's JSON: the tables survive it.
  nlohmann::json sent = ConfigToJson(*c);
  sent.erase("path");  // as EncodeJob sends it
  auto again = ParseJobConfig(sent.dump(), "the job", "", {});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  nlohmann::json back = ConfigToJson(*again);
  back.erase("path");
  EXPECT_EQ(back.dump(), sent.dump());

  auto expect_error = [&](const std::string& body, const std::string& field, const std::string& hint) {
    auto r = parse(body);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_NE(r.status().message().find("'" + field + "'"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(hint), std::string::npos) << r.status().message();
  };
  expect_error("model:\n  kind: ctr\n" + criteo, "model.tables", "required with model.kind ctr");
  expect_error("model:\n  kind: mlp\n  tables: [{name: a}]\n" + criteo, "model.tables", "only allowed with");
  expect_error("model:\n  kind: mlp\n" + criteo, "model.kind", "model.kind ctr");
  expect_error(ctr + kBase, "data.format", "must be criteo");
  expect_error("model:\n  kind: ctr\n  tables: [{name: a, rows: 1099511627777}]\n" + criteo, "model.tables[0].rows",
               "[1, ");
  expect_error("model:\n  kind: ctr\n  tables: [{name: a, optimizer: adam}]\n" + criteo,
               "model.tables[0].optimizer", "sgd");
  expect_error("model:\n  kind: ctr\n  tables: [{rows: 10}]\n" + criteo, "model.tables[0].name", "required");
  expect_error("model:\n  kind: ctr\n  classes: 3\n  tables: [{name: a}]\n" + criteo, "model.classes", "only");
  expect_error(ctr + "data:\n  format: criteo\n  train_tsv: train.tsv\n", "data.test_tsv", "required");
}

}  // namespace
}  // namespace psforge
