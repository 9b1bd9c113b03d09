// What the README's command does with no extra flags: checkpoints into the
// run directory (every 10 s and at the end), a killed run continued with
// `ps-launch --resume` and no paths, a killed server rolled back to the last
// checkpoint rather than the start, the final weights exported with
// --export (with what a user needs to feed them), and outputs that cannot
// be written refused before anything trains.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "tests/integration/cluster_fixture.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;
using testing::BinPath;
using testing::ChildProcess;
using testing::RunProcess;
using testing::TempDir;

const std::string kChecker = PSFORGE_SOURCE_DIR "/tests/integration/npz_check.py";
const std::string kData = "/usr/share/datasets/fashion-mnist/";

// ps-launch started in `cwd` (its runs/ folder is there), the shipped MLP config.
std::vector<std::string> LaunchIn(const std::string& cwd, std::vector<std::string> extra) {
  std::vector<std::string> argv{"/usr/bin/env", "-C", cwd, BinPath("ps-launch"), "--config", testing::kMlpConfig};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

std::vector<int> ServerPids(const std::string& endpoint) {
  return testing::PidsMentioning("ps-server --coordinator " + endpoint);
}

// The whole cluster SIGKILLed after its first checkpoint, then `--resume`
// with the same command line otherwise: it continues that run (its run
// directory, from the checkpoint) and ends with every record trained once an
// epoch; --export then holds the end-of-job checkpoint, which NumPy runs to
// psforge's final accuracy using only what psforge.json says about inputs.
TEST(Defaults, AKilledRunResumesWithoutPathsAndExportsItsFinalWeights) {
  TempDir dir;
  std::string run, committed;
  {
    // Checkpoints every 2 s: the default 10 s is about the whole job on a
    // fast machine, and a kill after the end-of-job checkpoint leaves the
    // resumed run nothing to train (no mid-run resume to check).
    ChildProcess first(LaunchIn(dir.path(), {"--set", "checkpoint.interval_s=2"}));
    auto line = first.WaitForLine(std::regex("run directory: (\\S+)"), 120s);
    ASSERT_TRUE(line.has_value()) << first.Stderr();
    run = dir.path() + "/" + *line;
    auto step = first.WaitForLine(std::regex("checkpoint at step (\\d+) committed"), 120s);
    ASSERT_TRUE(step.has_value()) << first.Stdout() << first.Stderr();
    committed = *step;
    ASSERT_LT(std::stol(committed), 4690) << "the first checkpoint was the end-of-job one";
    ::kill(-first.pid(), SIGKILL);  // the launcher and everything it started (one process group)
    first.Wait(30s);
  }
  EXPECT_FALSE(std::filesystem::exists(run + "/summary.json"));
  ChildProcess resumed(
      LaunchIn(dir.path(), {"--resume", "--set", "checkpoint.interval_s=2", "--export", dir.File("final.npz")}));
  EXPECT_TRUE(resumed.WaitForLine(std::regex("(run directory: " + std::filesystem::path(run).lexically_relative(dir.path()).string() + ")"), 120s)
                  .has_value())
      << "--resume did not continue the killed run " << run << "\n" << resumed.Stderr();
  auto loaded = resumed.WaitForLine(std::regex("every server has loaded the checkpoint at step (\\d+)"), 120s);
  ASSERT_TRUE(loaded.has_value()) << resumed.Stdout() << resumed.Stderr();
  EXPECT_GE(std::stol(*loaded), std::stol(committed));
  auto final_line = resumed.WaitForLine(std::regex("final test_accuracy: ([0-9.]+)"), 300s);
  ASSERT_TRUE(final_line.has_value()) << resumed.Stdout() << resumed.Stderr();
  EXPECT_EQ(resumed.Wait(120s), std::optional<int>(0)) << resumed.Stderr();
  const std::string out = resumed.Stdout();
  EXPECT_NE(out.find("audit: every server applied each of the 60000 records exactly once in each of the 10 epochs"),
            std::string::npos) << out;
  auto summary = nlohmann::json::parse(testing::ReadFile(run + "/summary.json"));
  EXPECT_EQ(summary["checkpoint_committed_step"], summary["steps"]) << "no end-of-job checkpoint: " << summary.dump(1);
  EXPECT_EQ(summary["resumed_from_step"].get<int64_t>(), std::stol(*loaded));
  // Each epoch's entry names its train loss (as ps-train's summary does), also those from before the kill.
  ASSERT_EQ(summary["history"].size(), 10u) << summary.dump(1);
  for (const auto& e : summary["history"]) EXPECT_GT(e["train_loss"].get<double>(), 0.0) << e.dump();

  // psforge.json: the step, how inputs were prepared, the classes' names.
  auto r = RunProcess({"/usr/bin/python3", kChecker, "mlp", dir.File("final.npz"), kData + "t10k-images-idx3-ubyte.gz",
                       kData + "t10k-labels-idx1-ubyte.gz"}, 300s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto numpy = nlohmann::json::parse(r.out);
  EXPECT_EQ(numpy["step"], summary["steps"]);
  EXPECT_EQ(numpy["labels"][9], "Ankle boot");
  EXPECT_NEAR(numpy["accuracy"].get<double>(), std::stod(*final_line), 0.002);

  // Nothing is left to resume now: the command says so, and what to type.
  auto again = RunProcess(LaunchIn(dir.path(), {"--resume"}), 60s);
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.err.find("no unfinished run of"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("leave out --resume"), std::string::npos) << again.err;
  auto finished = RunProcess(LaunchIn(dir.path(), {"--resume", run}), 60s);
  EXPECT_EQ(finished.exit_code, 2);
  EXPECT_NE(finished.err.find("that run finished"), std::string::npos) << finished.err;
}

// A server SIGKILLed mid-run on the default config: ps-launch restarts it
// and every server goes back to the last committed checkpoint, not to the
// initial weights.
TEST(Defaults, AKilledServerCostsAtMostOneCheckpointInterval) {
  TempDir dir;
  // Checkpoints every 2 s: the default 10 s is about the whole job on a fast
  // machine. The first by time, not the end-of-job one.
  ChildProcess launch(LaunchIn(dir.path(), {"--run-dir", dir.File("run"), "--set", "checkpoint.interval_s=2"}));
  auto step = launch.WaitForLine(std::regex("checkpoint at step (\\d+) committed: every server"), 120s);
  ASSERT_TRUE(step.has_value()) << launch.Stdout() << launch.Stderr();
  std::string endpoint;
  std::ifstream(dir.File("run/coordinator.endpoint")) >> endpoint;
  auto servers = ServerPids(endpoint);
  ASSERT_EQ(servers.size(), 2u) << endpoint;
  ASSERT_EQ(::kill(servers[0], SIGKILL), 0);
  auto from = launch.WaitForLine(std::regex("starts from (the checkpoint at step \\d+|the initial weights)"), 120s);
  ASSERT_TRUE(from.has_value()) << launch.Stdout() << launch.Stderr();
  EXPECT_NE(from->find("checkpoint at step"), std::string::npos) << *from;
  EXPECT_GE(std::stol(from->substr(from->rfind(' ') + 1)), std::stol(*step));
  ASSERT_TRUE(launch.WaitForLine(std::regex("(final test_accuracy)"), 300s).has_value()) << launch.Stderr();
  EXPECT_EQ(launch.Wait(120s), std::optional<int>(0)) << launch.Stderr();
  EXPECT_NE(launch.Stdout().find("exactly once in each of the 10 epochs"), std::string::npos) << launch.Stdout();
}

// Same seed, same result: the README's command run twice (2 epochs) ends
// with the same weights bit for bit, after the same number of steps.
TEST(Defaults, TheSameCommandTwiceGivesTheSameWeights) {
  TempDir dir;
  std::vector<std::string> exported;
  std::vector<std::string> steps;
  for (const char* name : {"a", "b"}) {
    auto r = RunProcess(LaunchIn(dir.path(), {"--epochs", "2", "--export", dir.File(std::string(name) + ".npz")}),
                        300s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.out, m, std::regex("final test_accuracy: [0-9.]+ \\(2 epochs, (\\d+) steps")))
        << r.out;
    steps.push_back(m[1]);
    exported.push_back(testing::ReadFile(dir.File(std::string(name) + ".npz")));
  }
  EXPECT_EQ(steps[0], steps[1]);
  ASSERT_FALSE(exported[0].empty());
  EXPECT_TRUE(exported[0] == exported[1]) << "two runs of the same command exported different models";
}

// More workers than the job can use, or than this machine can hold, are
// refused with the reason before any starts.
TEST(Defaults, TooManyWorkersAreRefusedWithTheReason) {
  TempDir dir;
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases{
      {{"--workers", "1000"}, "at most 128"},
      {{"--workers", "0"}, "'cluster.workers'"},
      {{"--workers", "500", "--set", "cluster.consistency=asp"}, "need 64000 records an epoch"},
      // 2000 workers of about 0.3 GB each: more than any machine this runs on.
      {{"--workers", "2000", "--set", "cluster.consistency=asp", "--set", "training.batch_size=8"}, "GB is available"},
  };
  for (const Case& c : cases) {
    auto r = RunProcess(LaunchIn(dir.path(), c.args), 120s);
    EXPECT_NE(r.exit_code, 0) << c.args[1];
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("joined"), std::string::npos) << "a cluster started: " << r.out;
  }
}

// Every output is checked before the cluster starts: the message names the
// path and the reason, and no run directory or cluster is left behind.
TEST(Defaults, OutputsThatCannotBeWrittenAreRefusedBeforeTraining) {
  TempDir dir;
  std::ofstream(dir.File("a-file")) << "x";
  std::filesystem::create_directories(dir.File("a-dir"));
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases{
      {{"--summary", dir.File("no/such/folder/summary.json")}, "does not exist"},
      {{"--summary", dir.File("a-file/summary.json")}, "is not a directory"},
      {{"--export", dir.File("a-dir")}, "is a directory"},
      {{"--run-dir", dir.File("a-file/run")}, dir.File("a-file/run")},
      {{"--export", "/proc/psforge-test.npz"}, "/proc/psforge-test.npz"},
      {{"--set", "checkpoint.interval_s=0", "--export", dir.File("m.npz")}, "writes none"},
  };
  for (const Case& c : cases) {
    auto r = RunProcess(LaunchIn(dir.path(), c.args), 60s);
    EXPECT_EQ(r.exit_code, 2) << c.args.back() << ": " << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("joined"), std::string::npos) << "a cluster started: " << r.out;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.File("runs"))) << "a refused command left a run directory";
  EXPECT_FALSE(std::filesystem::exists(dir.File("a-dir.tmp")));
  // A directory where a file belongs is named as one.
  auto config_dir = RunProcess({BinPath("ps-launch"), "--config", dir.File("a-dir")}, 60s);
  EXPECT_EQ(config_dir.exit_code, 2);
  EXPECT_NE(config_dir.err.find("is a directory"), std::string::npos) << config_dir.err;
  auto data_dir = RunProcess(LaunchIn(dir.path(), {"--set", "data.test_images=" + dir.File("a-dir")}), 60s);
  EXPECT_EQ(data_dir.exit_code, 2);
  EXPECT_NE(data_dir.err.find("data.test_images"), std::string::npos) << data_dir.err;
  EXPECT_NE(data_dir.err.find("is a directory"), std::string::npos) << data_dir.err;
}

}  // namespace
}  // namespace psforge
