// ps-train as a user runs it: the real binary on the real data set.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include <csignal>
#include <regex>

#include "tests/support/child_process.h"
#include "tests/support/subprocess.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;
using testing::BinPath;
using testing::ChildProcess;
using testing::RunProcess;
using testing::TempDir;

const std::string kMlpConfig = PSFORGE_SOURCE_DIR "/configs/fashion_mnist_mlp.yaml";

TEST(PsTrain, FashionMnistMlpLearnsInTwoEpochs) {
  TempDir dir;
  auto r = RunProcess({BinPath("ps-train"), "--config", kMlpConfig, "--epochs", "2", "--summary",
                       dir.File("summary.json")},
                      300s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("epoch 1/2"), std::string::npos) << "no progress shown:\n" << r.err;
  EXPECT_NE(r.out.find("final test_accuracy"), std::string::npos) << r.out;
  auto summary = nlohmann::json::parse(testing::ReadFile(dir.File("summary.json")));
  EXPECT_GE(summary["test_accuracy"].get<double>(), 0.85) << summary.dump(2);
  EXPECT_EQ(summary["epochs"], 2);
  EXPECT_EQ(summary["steps"], 2 * 469);
  EXPECT_GT(summary["samples_per_s"].get<double>(), 0);
  EXPECT_GT(summary["wall_s"].get<double>(), 0);
  // Where a step's time went: the forward and backward pass, and the optimizer's update.
  const double compute = summary["step_compute_ms"].get<double>(), exchange = summary["step_exchange_ms"].get<double>();
  EXPECT_GT(compute, 0);
  EXPECT_GT(exchange, 0);
  EXPECT_LE((compute + exchange) * 2 * 469 / 1e3, summary["wall_s"].get<double>()) << summary.dump(2);
  EXPECT_EQ(summary["config"]["model"]["hidden"], nlohmann::json::array({500}));
  EXPECT_EQ(summary["history"].size(), 2u);
}

// model.init_from: a job starts from another's exported model (ps-export's
// .npz): one step at a negligible rate scores what the exported model
// scored, where the same step from the initialisers is far below; a file
// that does not fit the model stops the job naming each tensor.
TEST(PsTrain, AJobStartsFromAnExportedModel) {
  TempDir dir;
  auto first = RunProcess({BinPath("ps-train"), "--config", kMlpConfig, "--epochs", "1", "--export",
                           dir.File("mlp.npz"), "--summary", dir.File("first.json")},
                          300s);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const double trained = nlohmann::json::parse(testing::ReadFile(dir.File("first.json")))["test_accuracy"];
  auto one_step = [&](const std::vector<std::string>& extra, const std::string& summary) {
    std::vector<std::string> argv{BinPath("ps-train"), "--config", kMlpConfig, "--set", "training.max_steps=1",
                                  "--set", "optimizer.learning_rate=1e-12", "--summary", dir.File(summary)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunProcess(argv, 120s);
  };
  auto started = one_step({"--set", "model.init_from=" + dir.File("mlp.npz")}, "started.json");
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const double resumed = nlohmann::json::parse(testing::ReadFile(dir.File("started.json")))["test_accuracy"];
  EXPECT_NEAR(resumed, trained, 0.002);
  auto scratch = one_step({}, "scratch.json");
  ASSERT_EQ(scratch.exit_code, 0) << scratch.err;
  EXPECT_LT(nlohmann::json::parse(testing::ReadFile(dir.File("scratch.json")))["test_accuracy"].get<double>(),
            trained - 0.2);
  auto other = one_step({"--set", "model.init_from=" + dir.File("mlp.npz"), "--set", "model.hidden=[100]"}, "x.json");
  EXPECT_NE(other.exit_code, 0);
  EXPECT_EQ(other.signal, 0);
  EXPECT_NE(other.err.find("fc0.weight ([100, 784] in the model, [500, 784] in the file)"), std::string::npos)
      << other.err;
  EXPECT_NE(other.err.find("fc1.weight ([10, 100] in the model, [10, 500] in the file)"), std::string::npos)
      << other.err;
  // A new head: init_fresh keeps it from the file.
  auto head = one_step({"--set", "model.init_from=" + dir.File("mlp.npz"), "--set", "model.init_fresh=[fc1]"},
                       "head.json");
  ASSERT_EQ(head.exit_code, 0) << head.err;
}

// A wrong config fails fast, exits non-zero, and names what is wrong.
void ExpectConfigError(const std::vector<std::string>& extra, const std::string& expected) {
  std::vector<std::string> argv{BinPath("ps-train"), "--config", kMlpConfig};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = RunProcess(argv, 60s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.signal, 0) << "crashed";
  EXPECT_NE(r.err.find(expected), std::string::npos) << "stderr:\n" << r.err;
}

TEST(PsTrain, WrongConfigFieldsAreNamed) {
  ExpectConfigError({"--set", "training.epoch=3"}, "'training.epoch': unknown field");
  ExpectConfigError({"--set", "optimizer.kind=lion"}, "'optimizer.kind': must be one of");
  ExpectConfigError({"--set", "training.batch_size=-5"}, "'training.batch_size'");
  ExpectConfigError({"--set", "data.train_images=/nonexistent.gz"},
                    "'data.train_images': no such file: /nonexistent.gz");
  ExpectConfigError({"--set", "bad"}, "expected section.field=value");
  // A flag's error reads like the field's, and names the flag.
  ExpectConfigError({"--epochs", "0"}, "'training.epochs': must be in [1, 1000000], got 0 (given as --epochs 0)");
  ExpectConfigError({"--bogus"}, "(see ps-train --help)");
}

TEST(PsTrain, AMissingInitFromFileIsNamed) {
  ExpectConfigError({"--set", "model.init_from=/nonexistent/model.npz"}, "model.init_from");
}

TEST(PsTrain, MissingConfigFileIsNamed) {
  auto r = RunProcess({BinPath("ps-train"), "--config", "/nonexistent/job.yaml"}, 60s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent/job.yaml"), std::string::npos) << r.err;
}

TEST(PsTrain, CorruptDataFileIsAClearError) {
  TempDir dir;
  // A gzip file cut in the middle of the pixels.
  std::string src = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
  std::string bytes = testing::ReadFile(src);
  ASSERT_GT(bytes.size(), 1000u);
  std::ofstream(dir.File("cut.gz"), std::ios::binary).write(bytes.data(), bytes.size() / 2);
  auto r = RunProcess({BinPath("ps-train"), "--config", kMlpConfig, "--set",
                       "data.test_images=" + dir.File("cut.gz")},
                      120s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.signal, 0);
  EXPECT_NE(r.err.find(dir.File("cut.gz")), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("DataLoss"), std::string::npos) << r.err;
}

TEST(PsTrain, RegressionConfigsRun) {
  for (const char* name : {"linear_regression", "logistic_regression"}) {
    TempDir dir;
    auto r = RunProcess({BinPath("ps-train"), "--config",
                         std::string(PSFORGE_SOURCE_DIR "/configs/") + name + ".yaml", "--summary",
                         dir.File("s.json")},
                        120s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto s = nlohmann::json::parse(testing::ReadFile(dir.File("s.json")));
    if (std::string(name) == "linear_regression") {
      EXPECT_LT(s["test_mse"].get<double>(), 0.0125);  // noise variance is 0.01
    } else {
      EXPECT_GT(s["test_accuracy"].get<double>(), 0.8);
    }
  }
}

// --config-template prints every field, documented, as a config that
// trains once its data files are filled in; --version and --help answer.
TEST(PsTrain, TheConfigTemplateIsAWorkingDocumentedConfig) {
  TempDir dir;
  auto t = RunProcess({BinPath("ps-train"), "--config-template"}, 60s);
  ASSERT_EQ(t.exit_code, 0) << t.err;
  for (const char* field : {"\noptimizer:\n", "  lr_schedule: \"constant\"\n", "  interval_s: 10.0\n",
                            "  # the network (", "  peer_timeout_s: 10.0\n"})
    EXPECT_NE(t.out.find(field), std::string::npos) << field << " not in:\n" << t.out;
  std::ofstream(dir.File("job.yaml")) << t.out;
  const std::string data = "/usr/share/datasets/fashion-mnist/";
  auto r = RunProcess({BinPath("ps-train"), "--config", dir.File("job.yaml"), "--set",
                       "data.train_images=" + data + "train-images-idx3-ubyte.gz", "--set",
                       "data.train_labels=" + data + "train-labels-idx1-ubyte.gz", "--set",
                       "data.test_images=" + data + "t10k-images-idx3-ubyte.gz", "--set",
                       "data.test_labels=" + data + "t10k-labels-idx1-ubyte.gz", "--set", "training.max_steps=20"},
                      120s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("final test_accuracy"), std::string::npos) << r.out << r.err;
  auto v = RunProcess({BinPath("ps-train"), "--version"}, 60s);
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_EQ(v.out.rfind("psforge ", 0), 0u) << v.out;
  auto none = RunProcess({BinPath("ps-train")}, 60s);
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("--config is required"), std::string::npos) << none.err;
}

// ps-train in `cwd` (its runs/ folder is there), stderr merged into stdout.
std::vector<std::string> TrainIn(const std::string& cwd, const std::string& args) {
  return {"/bin/sh", "-c", "cd '" + cwd + "' && exec '" + BinPath("ps-train") + "' --config '" + kMlpConfig +
                               "' --epochs 2 --set checkpoint.interval_steps=300 " + args + " 2>&1"};
}

// A ps-train run SIGKILLed after its first checkpoint, then `--resume` with
// no path: it continues that run from the checkpoint (the batches replayed
// to the step) and ends with exactly the weights of an undisturbed run;
// ps-export reads the run's end-of-job checkpoint as it reads a cluster's.
TEST(PsTrain, AKilledRunResumesFromItsCheckpointAndEndsAsUndisturbed) {
  TempDir dir;
  std::string run;
  {
    ChildProcess first(TrainIn(dir.path(), ""));
    ASSERT_TRUE(first.WaitForLine(std::regex("(after epoch 1/2)"), 300s).has_value()) << first.Stdout();
    first.Signal(SIGKILL);  // step 469: the checkpoint at step 300 is committed
    first.Wait(30s);
    for (const auto& e : std::filesystem::directory_iterator(dir.File("runs"))) run = e.path().string();
  }
  ASSERT_FALSE(run.empty());
  EXPECT_TRUE(std::filesystem::exists(run + "/checkpoints/server-0")) << run;
  EXPECT_FALSE(std::filesystem::exists(run + "/summary.json"));

  ChildProcess resumed(TrainIn(dir.path(), "--resume --export " + dir.File("resumed.npz")));
  auto from = resumed.WaitForLine(std::regex("resuming from the checkpoint at step (\\d+)"), 120s);
  ASSERT_TRUE(from.has_value()) << resumed.Stdout();
  EXPECT_EQ(*from, "300");
  auto final_line = resumed.WaitForLine(std::regex("final test_accuracy: ([0-9.]+)"), 300s);
  ASSERT_TRUE(final_line.has_value()) << resumed.Stdout();
  ASSERT_EQ(resumed.Wait(60s), std::optional<int>(0)) << resumed.Stdout();
  EXPECT_NE(resumed.Stdout().find("run: runs/"), std::string::npos) << resumed.Stdout();
  auto summary = nlohmann::json::parse(testing::ReadFile(run + "/summary.json"));
  EXPECT_EQ(summary["steps"], 2 * 469);
  ASSERT_EQ(summary["history"].size(), 2u) << "the epoch before the kill is missing: " << summary.dump(1);
  EXPECT_EQ(summary["history"][0]["epoch"], 1);
  EXPECT_GT(summary["history"][0]["train_loss"].get<double>(), 0.0);

  // The same command undisturbed, in its own run directory.
  auto whole = RunProcess(TrainIn(dir.path(), "--export " + dir.File("whole.npz")), 300s);
  ASSERT_EQ(whole.exit_code, 0) << whole.out;
  EXPECT_NE(whole.out.find("final test_accuracy: " + *final_line), std::string::npos) << whole.out;
  EXPECT_EQ(testing::ReadFile(dir.File("resumed.npz")), testing::ReadFile(dir.File("whole.npz")))
      << "the resumed run's weights differ from the undisturbed run's";

  // ps-export finds the run's end-of-job checkpoint.
  auto exported = RunProcess({BinPath("ps-export"), "--config", kMlpConfig, "--run-dir", run, "--out",
                              dir.File("exported.npz")}, 120s);
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  EXPECT_EQ(testing::ReadFile(dir.File("exported.npz")), testing::ReadFile(dir.File("resumed.npz")));

  // Finished: nothing to resume, and the command says what to type.
  auto again = RunProcess(TrainIn(dir.path(), "--resume"), 60s);
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.out.find("no unfinished run of"), std::string::npos) << again.out;
  auto other = RunProcess(TrainIn(dir.path(), "--set training.seed=9 --resume " + run), 60s);
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.out.find("that run finished"), std::string::npos) << other.out;
}

}  // namespace
}  // namespace psforge
