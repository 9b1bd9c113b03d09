// The same job under Open MPI: an MPMD launch on localhost, each rank's role
// under ps-supervise; every rank exits 0 and mpirun with them.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <regex>

#include <nlohmann/json.hpp>

#include "tests/integration/cluster_fixture.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;

// An MPMD job on localhost: one coordinator rank (under ps-supervise with
// `supervise` options, with `coordinator` arguments besides its config,
// endpoint and run directory), two servers, two workers, each under
// ps-supervise; root allowed through the environment.
std::unique_ptr<testing::ChildProcess> StartMpirun(const std::string& endpoint, const testing::TempDir& dir,
                                                   const std::vector<std::string>& supervise,
                                                   const std::vector<std::string>& coordinator) {
  const std::string sup = testing::BinPath("ps-supervise");
  std::vector<std::string> argv{"/usr/bin/env", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
                                "OMPI_MCA_rmaps_base_oversubscribe=1", "mpirun", "--oversubscribe", "-np", "1", sup};
  argv.insert(argv.end(), supervise.begin(), supervise.end());
  argv.insert(argv.end(), {"--", testing::BinPath("ps-coordinator"), "--config", testing::kMlpConfig, "--epochs", "1",
                           "--bind", endpoint, "--run-dir", dir.File("run")});
  argv.insert(argv.end(), coordinator.begin(), coordinator.end());
  argv.insert(argv.end(), {":", "-np", "2", sup, "--", testing::BinPath("ps-server"), "--coordinator", endpoint,
                           ":", "-np", "2", sup, "--", testing::BinPath("ps-worker"), "--coordinator", endpoint});
  return std::make_unique<testing::ChildProcess>(argv);
}

TEST(Mpirun, MpmdLaunchOnLocalhostTrainsAndExitsZero) {
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) GTEST_SKIP() << "mpirun is not installed";
  // A port for the coordinator, free and below the ephemeral range (no
  // other test's connection takes it before the coordinator binds it).
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  testing::TempDir dir;
  auto mpirun_process = StartMpirun(endpoint, dir, {}, {});
  testing::ChildProcess& mpirun = *mpirun_process;
  auto final_line = mpirun.WaitForLine(std::regex("final test_accuracy: ([0-9.]+)"), 300s);
  ASSERT_TRUE(final_line.has_value()) << mpirun.Stdout() << mpirun.Stderr();
  EXPECT_GE(std::stod(*final_line), 0.80);
  EXPECT_EQ(mpirun.Wait(120s), std::optional<int>(0)) << mpirun.Stderr();
}

// The coordinator's rank is killed mid-run: ps-supervise starts it again
// with --resume, the servers and workers join it again, the job completes
// and mpirun exits 0.
TEST(Mpirun, AKilledCoordinatorRankIsRestartedAndTheJobCompletes) {
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) GTEST_SKIP() << "mpirun is not installed";
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  testing::TempDir dir;
  auto mpirun_process = StartMpirun(endpoint, dir, {"--signals-only", "--restart-with=--resume"},
                                    {"--set", "checkpoint.interval_steps=100", "--set",
                                     "checkpoint.dir=" + dir.File("checkpoints")});
  testing::ChildProcess& mpirun = *mpirun_process;
  ASSERT_TRUE(mpirun.WaitForLine(std::regex("(checkpoint at step [23]00 committed)"), 120s).has_value())
      << mpirun.Stdout() << mpirun.Stderr();
  // The coordinator itself, not mpirun or ps-supervise (whose arguments name it too).
  std::vector<int> coordinators;
  for (int pid : testing::PidsMentioning(dir.File("run")))
    if (testing::ReadFile("/proc/" + std::to_string(pid) + "/comm") == "ps-coordinator\n") coordinators.push_back(pid);
  ASSERT_EQ(coordinators.size(), 1u);
  ::kill(coordinators[0], SIGKILL);
  auto final_line = mpirun.WaitForLine(std::regex("final test_accuracy: ([0-9.]+)"), 300s);
  ASSERT_TRUE(final_line.has_value()) << mpirun.Stdout() << mpirun.Stderr();
  EXPECT_GE(std::stod(*final_line), 0.80);
  EXPECT_NE(mpirun.Stdout().find("resuming the job"), std::string::npos) << mpirun.Stdout();
  EXPECT_EQ(mpirun.Wait(120s), std::optional<int>(0)) << mpirun.Stderr();
}

// The README's mpirun command in `cwd` (so its runs/ folder is there): no
// run directory and no checkpoint settings given, `coordinator` arguments
// added to the coordinator's.
std::unique_ptr<testing::ChildProcess> StartReadmeMpirun(const std::string& endpoint, const std::string& cwd,
                                                         const std::vector<std::string>& coordinator,
                                                         const std::string& config = testing::kMlpConfig) {
  const std::string sup = testing::BinPath("ps-supervise");
  std::vector<std::string> argv{"/usr/bin/env", "-C", cwd, "OMPI_ALLOW_RUN_AS_ROOT=1",
                                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "mpirun", "--oversubscribe", "-np", "1", sup,
                                "--signals-only", "--restart-with=--resume", "--",
                                testing::BinPath("ps-coordinator"), "--config", config, "--bind", endpoint};
  argv.insert(argv.end(), coordinator.begin(), coordinator.end());
  argv.insert(argv.end(), {":", "-np", "2", sup, "--", testing::BinPath("ps-server"), "--coordinator", endpoint,
                           ":", "-np", "2", sup, "--", testing::BinPath("ps-worker"), "--coordinator", endpoint});
  return std::make_unique<testing::ChildProcess>(argv);
}

// The whole mpirun job SIGKILLed after its first checkpoint (every rank and
// mpirun itself: a node lost, say); the same command with --resume added to
// the coordinator's arguments continues the newest unfinished run of the
// config from its checkpoint, without being told a path.
TEST(Mpirun, AKilledJobResumesWithoutPaths) {
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) GTEST_SKIP() << "mpirun is not installed";
  testing::TempDir dir;
  std::string committed;
  {
    const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
    // Checkpoints every 3 s (the default 10 s is about the whole job on a
    // fast machine): the first by time, not the end-of-job one.
    auto first = StartReadmeMpirun(endpoint, dir.path(), {"--set", "checkpoint.interval_s=3"});
    auto step = first->WaitForLine(std::regex("checkpoint at step (\\d+) committed: every server"), 180s);
    ASSERT_TRUE(step.has_value()) << first->Stdout() << first->Stderr();
    committed = *step;
    std::vector<int> ranks = testing::PidsMentioning(endpoint);
    ::kill(-first->pid(), SIGKILL);
    for (int pid : ranks) ::kill(pid, SIGKILL);
    first->Wait(30s);
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!testing::PidsMentioning(endpoint).empty() && std::chrono::steady_clock::now() < deadline)
      for (int pid : testing::PidsMentioning(endpoint)) ::kill(pid, SIGKILL);
    ASSERT_TRUE(testing::PidsMentioning(endpoint).empty()) << "ranks of the killed job still run";
  }
  std::string run;
  for (const auto& e : std::filesystem::directory_iterator(dir.File("runs"))) run = e.path().string();
  ASSERT_FALSE(run.empty());
  EXPECT_FALSE(std::filesystem::exists(run + "/summary.json"));

  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  auto resumed_process = StartReadmeMpirun(endpoint, dir.path(), {"--resume", "--set", "checkpoint.interval_s=3"});
  testing::ChildProcess& resumed = *resumed_process;
  auto loaded = resumed.WaitForLine(std::regex("every server has loaded the checkpoint at step (\\d+)"), 180s);
  ASSERT_TRUE(loaded.has_value()) << resumed.Stdout() << resumed.Stderr();
  EXPECT_GE(std::stol(*loaded), std::stol(committed));
  auto final_line = resumed.WaitForLine(std::regex("final test_accuracy: ([0-9.]+)"), 300s);
  ASSERT_TRUE(final_line.has_value()) << resumed.Stdout() << resumed.Stderr();
  EXPECT_GE(std::stod(*final_line), 0.80);
  EXPECT_EQ(resumed.Wait(120s), std::optional<int>(0)) << resumed.Stderr();
  EXPECT_NE(resumed.Stdout().find("exactly once in each of the 10 epochs"), std::string::npos) << resumed.Stdout();
  // It continued the killed run, in its run directory: no second one.
  std::vector<std::string> runs;
  for (const auto& e : std::filesystem::directory_iterator(dir.File("runs"))) runs.push_back(e.path().string());
  EXPECT_EQ(runs, std::vector<std::string>{run});
  EXPECT_TRUE(std::filesystem::exists(run + "/summary.json"));
}

// The Transformers under mpirun as under ps-launch, each with its README
// command made small (one block of 32 features, 150 or 300 steps): the GPT; then
// the BERT-style encoder pre-trained, and the classifier fine-tuned from
// it by the shipped init_from (the encoder's job: its newest run in runs/
// of the working directory).
TEST(Mpirun, TheTransformersPretrainAndFineTune) {
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) GTEST_SKIP() << "mpirun is not installed";
  testing::TempDir dir;
  const std::string configs = PSFORGE_SOURCE_DIR "/configs/";
  const std::string encoder =
      "[{type: embedding, dim: 32, std: 0.02}, position, {type: transformer, heads: 2, mlp: 64, dropout: 0.1}, "
      "layernorm, ";
  // The job's final metric, once mpirun has exited 0 (NaN otherwise).
  auto run = [&](const std::string& config, const std::string& metric, const std::string& layers, int steps) {
    const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
    auto mpirun = StartReadmeMpirun(endpoint, dir.path(),
                                    {"--set", "model.layers=" + layers, "--set", "data.window=64", "--set",
                                     "training.max_steps=" + std::to_string(steps), "--set", "training.epochs=1"},
                                    configs + config);
    auto final_line = mpirun->WaitForLine(std::regex("final " + metric + ": ([0-9.]+)"), 300s);
    EXPECT_TRUE(final_line.has_value()) << config << "\n" << mpirun->Stdout() << mpirun->Stderr();
    EXPECT_EQ(mpirun->Wait(120s), std::optional<int>(0)) << mpirun->Stderr();
    std::printf("%s: final %s %s\n", config.c_str(), metric.c_str(), final_line.value_or("none").c_str());
    return final_line ? std::stod(*final_line) : std::nan("");
  };
  // The unigram entropy of the fortunes is 4.87 bits per character.
  EXPECT_LT(run("fortunes_gpt.yaml", "validation_bits_per_char",
                "[{type: embedding, dim: 32}, position, "
                "{type: transformer, heads: 2, causal: true, mlp: 64, dropout: 0.1}, layernorm, {type: linear}]",
                150),
            4.2);
  // Always answering a space scores 0.16.
  EXPECT_GT(run("fortunes_bert.yaml", "masked_accuracy", encoder + "{type: linear}]", 300), 0.18);
  const double tuned =
      run("fortunes_classify.yaml", "test_accuracy", encoder + "meanpool, {type: dropout, rate: 0.1}, {type: linear}]", 150);
  std::string classify_run;
  for (const auto& e : std::filesystem::directory_iterator(dir.File("runs")))
    if (e.path().filename().string().rfind("fortunes_classify-", 0) == 0) classify_run = e.path().string();
  ASSERT_FALSE(classify_run.empty());
  EXPECT_TRUE(std::filesystem::exists(classify_run + "/init_from.npz")) << "not started from the encoder's run";
  auto summary = nlohmann::json::parse(testing::ReadFile(classify_run + "/summary.json"));
  EXPECT_NEAR(summary["test_accuracy"].get<double>(), tuned, 1e-4);
  EXPECT_GT(tuned, summary["majority_accuracy"].get<double>()) << summary.dump(1);
}

}  // namespace
}  // namespace psforge
