// The job every fault scenario runs, and what they check it with: 2
// workers on 64 records each, 2 servers, BSP, a checkpoint every 100 steps,
// started and restarted piece by piece as a supervisor would.
#pragma once

#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/integration/cluster_fixture.h"

namespace psforge::fault {

using namespace std::chrono_literals;
using testing::kMlpConfig;

// 450 steps (epoch 1 has 469), or 2 epochs. BSP is one computation however
// the processes are timed, across epochs too (lease_table.h: the epoch turns
// over at the same step whichever worker asks first).
inline std::vector<std::string> JobSets(const std::string& checkpoints, bool two_epochs = false) {
  return {two_epochs ? "training.epochs=2" : "training.max_steps=450",
          two_epochs ? "training.epochs=2" : "training.epochs=1",
          "training.batch_size=128",
          "cluster.workers=2",
          "data.shard_size=64",
          "checkpoint.interval_steps=100",
          "checkpoint.dir=" + checkpoints,
          "cluster.peer_timeout_s=2",
          "cluster.heartbeat_interval_s=0.2"};
}

inline std::vector<float> ReadWeights(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> w(std::filesystem::file_size(path) / sizeof(float));
  in.read(reinterpret_cast<char*>(w.data()), static_cast<std::streamsize>(w.size() * sizeof(float)));
  return w;
}

struct Job {
  testing::TestCluster cluster;
  std::vector<std::unique_ptr<testing::ChildProcess>> workers;
  std::vector<std::string> sets;  // the coordinator's overrides
  std::string name;
};

inline std::vector<std::string> CoordinatorArgs(const testing::TempDir& dir, const std::string& name, bool resume) {
  std::vector<std::string> args{"--summary", dir.File(name + ".json")};
  if (resume) args.push_back("--resume");
  return args;
}

inline std::unique_ptr<testing::ChildProcess> StartJobWorker(const Job& job, const testing::TempDir& dir, int w,
                                                             const std::vector<std::string>& extra_args = {}) {
  std::vector<std::string> args{"--save-weights", dir.File(job.name + "-w" + std::to_string(w))};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  return testing::StartWorker(job.cluster, "", args);
}

inline Job StartJob(const testing::TempDir& dir, const std::string& name, bool resume, bool two_epochs = false,
                    const std::vector<std::string>& extra_sets = {}) {
  auto sets = JobSets(dir.File("checkpoints"), two_epochs);
  sets.insert(sets.end(), extra_sets.begin(), extra_sets.end());
  Job job{testing::StartCluster(kMlpConfig, 2, sets, CoordinatorArgs(dir, name, resume)), {}, sets, name};
  for (int w = 0; w < 2; ++w) job.workers.push_back(StartJobWorker(job, dir, w));
  return job;
}

// Waits for the job to complete; the final weights (saved by the evaluating worker).
inline std::vector<float> Finish(Job& job, const testing::TempDir& dir) {
  for (auto& w : job.workers) EXPECT_EQ(w->Wait(240s), std::optional<int>(0)) << w->Stderr();
  testing::ExpectClusterExits(job.cluster);
  for (int w = 0; w < 2; ++w)
    if (std::filesystem::exists(dir.File(job.name + "-w" + std::to_string(w))))
      return ReadWeights(dir.File(job.name + "-w" + std::to_string(w)));
  ADD_FAILURE() << "no worker saved the final weights of " << job.name;
  return {};
}

inline void KillAll(Job& job) {
  job.cluster.coordinator->Signal(SIGKILL);
  for (auto& s : job.cluster.servers) s.process->Signal(SIGKILL);
  for (auto& w : job.workers) w->Signal(SIGKILL);
  EXPECT_TRUE(job.cluster.coordinator->Wait(30s).has_value());
  for (auto& s : job.cluster.servers) EXPECT_TRUE(s.process->Wait(30s).has_value());
  for (auto& w : job.workers) EXPECT_TRUE(w->Wait(30s).has_value());
}

// Server `i` SIGKILLed and started again by its supervisor (here, the test).
inline void KillAndRestartServer(Job& job, int i, const std::vector<std::string>& extra_args = {}) {
  job.cluster.servers[i].process->Signal(SIGKILL);
  EXPECT_TRUE(job.cluster.servers[i].process->Wait(30s).has_value());
  std::vector<std::string> argv{testing::BinPath("ps-server"), "--coordinator", job.cluster.coordinator_endpoint};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  job.cluster.servers[i].process = std::make_unique<testing::ChildProcess>(argv);
}

// The coordinator SIGKILLed and started again on its endpoint with --resume.
inline void KillAndRestartCoordinator(Job& job, const testing::TempDir& dir) {
  job.cluster.coordinator->Signal(SIGKILL);
  EXPECT_TRUE(job.cluster.coordinator->Wait(30s).has_value());
  std::vector<std::string> argv{testing::BinPath("ps-coordinator"), "--config", kMlpConfig, "--no-run-dir",
                                "--summary", dir.File(job.name + ".json"), "--resume",
                                "--bind", job.cluster.coordinator_endpoint};
  for (const auto& set : job.sets) argv.insert(argv.end(), {"--set", set});
  argv.insert(argv.end(), {"--set", "cluster.servers=2"});
  job.cluster.coordinator = std::make_unique<testing::ChildProcess>(argv);
}

inline double RelativeDifference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    diff += d * d;
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

inline nlohmann::json Summary(const testing::TempDir& dir, const std::string& name) {
  return nlohmann::json::parse(testing::ReadFile(dir.File(name + ".json")));
}

// The undisturbed run a scenario is compared with: its final weights.
inline std::vector<float> Undisturbed(const testing::TempDir& dir, bool two_epochs = false) {
  Job job = StartJob(dir, "undisturbed", false, two_epochs);
  return Finish(job, dir);
}

// How many of `a`'s values differ from `b`'s, bit for bit.
inline std::size_t Differing(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return n;
}

// Waits for a BSP job (450 steps, or `steps`) to complete and checks it
// ended as the undisturbed run did: the same weights bit for bit (2
// workers: a sum of two floats does not depend on their order), every step
// taken, every record once. Its summary, for further checks.
inline nlohmann::json ExpectUndisturbedEnd(Job& job, const testing::TempDir& dir, const std::vector<float>& expected,
                                           int64_t steps = 450) {
  const std::vector<float> weights = Finish(job, dir);
  EXPECT_EQ(Differing(weights, expected), 0u) << "relative difference " << RelativeDifference(weights, expected)
                                              << "\n" << job.cluster.coordinator->Stdout();
  auto summary = Summary(dir, job.name);
  EXPECT_EQ(summary["steps"], steps);
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2);
  return summary;
}

// The accuracy a 2-epoch job that lost a worker must reach. The death
// regroups the records of every later step, which moves the final accuracy
// as much as another data order does (+-0.4 points at 2 epochs, measured
// with ps-train over training.seed 1-6), so a fixed margin under one
// undisturbed run fails one run in ten with nothing wrong. The disturbed run
// is one more data order: the floor is the worst of the undisturbed run
// (same seed) and one-process runs of the same job over 4 other data orders
// (ps-train computes what BSP does: cluster_test's equivalence test), less
// as much as those five spread among themselves, and at least 0.5 points.
// (With a fixed 0.5: 0.8530 against a floor of 0.8536 once in CI, the five
// spanning 0.8586-0.8677.) Whether every record was trained once is the
// audit's to say, exactly; this only catches training wrecked.
inline double AccuracyFloor(const testing::TempDir& dir, double undisturbed) {
  double worst = undisturbed, best = undisturbed;
  for (int seed = 2; seed <= 5; ++seed) {
    const std::string summary = dir.File("ps-train-seed" + std::to_string(seed) + ".json");
    std::vector<std::string> argv{testing::BinPath("ps-train"), "--config", kMlpConfig, "--summary", summary};
    for (const auto& set : JobSets(dir.File("unused"), /*two_epochs=*/true)) argv.insert(argv.end(), {"--set", set});
    argv.insert(argv.end(), {"--set", "training.seed=" + std::to_string(seed)});
    testing::ChildProcess train(argv);
    EXPECT_EQ(train.Wait(120s), std::optional<int>(0)) << train.Stderr();
    if (!std::filesystem::exists(summary)) continue;
    const double accuracy = nlohmann::json::parse(testing::ReadFile(summary))["test_accuracy"].get<double>();
    std::printf("undisturbed, data order of seed %d: test accuracy %.4f\n", seed, accuracy);
    worst = std::min(worst, accuracy);
    best = std::max(best, accuracy);
  }
  return worst - std::max(0.005, best - worst);
}

// The step of the first checkpoint committed whose step matches `steps` (a regex).
inline int64_t WaitForCommit(Job& job, const std::string& steps) {
  auto step = job.cluster.coordinator->WaitForLine(std::regex("checkpoint at step (" + steps + ") committed"), 120s);
  if (!step) {
    ADD_FAILURE() << "no checkpoint committed at " << steps << ": " << job.cluster.coordinator->Stderr();
    return -1;
  }
  return std::stoll(*step);
}

// Waits (reading the coordinator's output from offset `from` on) until
// every server has loaded the checkpoint the job restarts from (or a
// restarted coordinator found none committed and starts afresh); its step
// (0: the initial weights), -1 on timeout.
inline int64_t WaitForResume(Job& job, std::size_t from = 0) {
  const std::regex loaded(
      "every server has loaded (the checkpoint at step (\\d+)|the initial weights)|no checkpoint of this job was committed");
  int64_t step = -1;
  auto accept = [&](const std::string& line) {
    std::smatch m;
    if (!std::regex_search(line, m, loaded)) return false;
    step = m[2].matched ? std::stoll(m[2].str()) : 0;
    return true;
  };
  if (!job.cluster.coordinator->WaitForLine(accept, 120s, from))
    ADD_FAILURE() << "training did not resume: " << job.cluster.coordinator->Stdout();
  return step;
}

// The first number `pattern` captures in `process`'s standard error that
// is above `above`, once it appears (polled: stderr goes to a file); -1 on timeout.
inline int64_t WaitForStderr(testing::ChildProcess& process, const std::regex& pattern, int64_t above,
                             std::chrono::seconds deadline = 120s) {
  for (auto until = std::chrono::steady_clock::now() + deadline; std::chrono::steady_clock::now() < until;) {
    const std::string log = process.Stderr();
    for (std::sregex_iterator m(log.begin(), log.end(), pattern), end; m != end; ++m)
      if (std::stoll((*m)[1].str()) > above) return std::stoll((*m)[1].str());
    std::this_thread::sleep_for(20ms);  // the polling interval of a wait with a deadline
  }
  ADD_FAILURE() << "not in the log within " << deadline.count() << " s: " << process.Stderr();
  return -1;
}

}  // namespace psforge::fault
