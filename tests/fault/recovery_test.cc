// Fault injection with real processes on loopback: a job killed outright
// and resumed, a checkpoint one server lacks, a server killed mid-run. In
// BSP each must end with the weights of the same job run undisturbed (up to
// summation order), every record applied once an epoch, nothing left running.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <nlohmann/json.hpp>

#include "paramserver/param_store.h"
#include "tests/integration/cluster_fixture.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;
using testing::kMlpConfig;

// 2 workers on 64 records each, 2 servers, BSP, 450 steps (epoch 1 has
// 469), a checkpoint every 100 steps. (Within an epoch BSP is one
// computation however the processes are timed; at an epoch's end a worker
// may take an empty step while the last leases are reported, so runs that
// cross it agree on the records trained, not bit for bit on the weights.)
std::vector<std::string> JobSets(const std::string& checkpoints, bool two_epochs = false) {
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

std::vector<float> ReadWeights(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> w(std::filesystem::file_size(path) / sizeof(float));
  in.read(reinterpret_cast<char*>(w.data()), static_cast<std::streamsize>(w.size() * sizeof(float)));
  return w;
}

struct Job {
  testing::TestCluster cluster;
  std::vector<std::unique_ptr<testing::ChildProcess>> workers;
};

Job StartJob(const testing::TempDir& dir, const std::string& name, bool resume, bool two_epochs = false,
             const std::vector<std::string>& extra_sets = {}) {
  std::vector<std::string> args{"--summary", dir.File(name + ".json")};
  if (resume) args.push_back("--resume");
  auto sets = JobSets(dir.File("checkpoints"), two_epochs);
  sets.insert(sets.end(), extra_sets.begin(), extra_sets.end());
  Job job{testing::StartCluster(kMlpConfig, 2, sets, args), {}};
  for (int w = 0; w < 2; ++w)
    job.workers.push_back(testing::StartWorker(
        job.cluster, "", {"--save-weights", dir.File(name + "-w" + std::to_string(w))}));
  return job;
}

// Waits for the job to complete; the final weights (saved by the evaluating worker).
std::vector<float> Finish(Job& job, const testing::TempDir& dir, const std::string& name) {
  for (auto& w : job.workers) EXPECT_EQ(w->Wait(240s), std::optional<int>(0)) << w->Stderr();
  testing::ExpectClusterExits(job.cluster);
  for (int w = 0; w < 2; ++w)
    if (std::filesystem::exists(dir.File(name + "-w" + std::to_string(w))))
      return ReadWeights(dir.File(name + "-w" + std::to_string(w)));
  ADD_FAILURE() << "no worker saved the final weights of " << name;
  return {};
}

void KillAll(Job& job) {
  job.cluster.coordinator->Signal(SIGKILL);
  for (auto& s : job.cluster.servers) s.process->Signal(SIGKILL);
  for (auto& w : job.workers) w->Signal(SIGKILL);
  EXPECT_TRUE(job.cluster.coordinator->Wait(30s).has_value());
  for (auto& s : job.cluster.servers) EXPECT_TRUE(s.process->Wait(30s).has_value());
  for (auto& w : job.workers) EXPECT_TRUE(w->Wait(30s).has_value());
}

double RelativeDifference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    diff += d * d;
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

nlohmann::json Summary(const testing::TempDir& dir, const std::string& name) {
  return nlohmann::json::parse(testing::ReadFile(dir.File(name + ".json")));
}

// The undisturbed run every scenario is compared with.
std::vector<float> Undisturbed(const testing::TempDir& dir) {
  Job job = StartJob(dir, "undisturbed", false);
  return Finish(job, dir, "undisturbed");
}

// The step of the first checkpoint committed whose step matches `steps` (a regex).
int64_t WaitForCommit(Job& job, const std::string& steps) {
  auto step = job.cluster.coordinator->WaitForLine(std::regex("checkpoint at step (" + steps + ") committed"), 120s);
  if (!step) {
    ADD_FAILURE() << "no checkpoint committed at " << steps << ": " << job.cluster.coordinator->Stderr();
    return -1;
  }
  return std::stoll(*step);
}

TEST(Recovery, AJobKilledOutrightResumesFromItsLastCheckpointWithTheSameWeights) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = Undisturbed(reference);

  Job first = StartJob(dir, "first", false);
  const int64_t committed = WaitForCommit(first, "[23]00");
  KillAll(first);

  Job resumed = StartJob(dir, "resumed", true);
  const std::vector<float> weights = Finish(resumed, dir, "resumed");
  EXPECT_LE(RelativeDifference(weights, expected), 1e-5);
  auto summary = Summary(dir, "resumed");
  EXPECT_GE(summary["resumed_from_step"].get<int64_t>(), committed) << "a committed step was lost";
  EXPECT_EQ(summary["steps"], 450);
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2);
  EXPECT_NE(resumed.cluster.coordinator->Stdout().find("shards done"), std::string::npos);
}

// A job killed after checkpoint 300 whose newest checkpoint `spoil` damages
// in server 1's store: the resumed job says so (server 1, that step, and
// `reason` in the server's log), falls back to the previous committed
// checkpoint and ends as undisturbed.
void ExpectFallBack(const std::function<void(const std::string& store, int64_t committed)>& spoil,
                    const std::string& reason) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = Undisturbed(reference);

  Job first = StartJob(dir, "first", false);
  const int64_t committed = WaitForCommit(first, "[3]00");
  KillAll(first);
  spoil(dir.File("checkpoints/server-1"), committed);
  if (::testing::Test::HasFatalFailure()) return;
  Job resumed = StartJob(dir, "resumed", true);
  const std::vector<float> weights = Finish(resumed, dir, "resumed");
  const std::string log = resumed.cluster.coordinator->Stdout();
  EXPECT_NE(log.find("server 1 cannot load the checkpoint at step " + std::to_string(committed)), std::string::npos)
      << log;
  EXPECT_NE(log.find("falling back to the previous committed checkpoint"), std::string::npos);
  const std::string servers = resumed.cluster.servers[0].process->Stderr() + resumed.cluster.servers[1].process->Stderr();
  EXPECT_NE(servers.find("cannot load the checkpoint at step " + std::to_string(committed)), std::string::npos) << servers;
  EXPECT_NE(servers.find(reason), std::string::npos) << servers;
  EXPECT_LE(RelativeDifference(weights, expected), 1e-5) << log;
  auto summary = Summary(dir, "resumed");
  EXPECT_LT(summary["resumed_from_step"].get<int64_t>(), committed);
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2);
}

TEST(Recovery, ACheckpointOneServerLacksFallsBackToThePreviousOne) {
  ExpectFallBack(
      [](const std::string& path, int64_t committed) {
        auto store = ParamStore::OpenRocksDb(path);
        ASSERT_TRUE(store.ok()) << store.status().ToString();
        auto ids = (*store)->List();
        ASSERT_TRUE(ids.ok());
        ASSERT_FALSE(ids->empty());
        for (int64_t id : *ids) {
          if (id >= committed) {
            ASSERT_TRUE((*store)->Remove(id).ok());
          }
        }
      },
      "does not exist");
}

// Each checkpoint is one table file of the store: bytes in the middle of
// the committed one's are overwritten, as a bad disk or a stray write would.
TEST(Recovery, AByteDamagedCheckpointIsDetectedAndFallsBackToThePreviousOne) {
  ExpectFallBack(
      [](const std::string& path, int64_t committed) {
        char key[32];
        std::snprintf(key, sizeof key, "c/%020lld/", static_cast<long long>(committed));
        std::filesystem::path file;  // the table file with that checkpoint's keys
        for (const auto& f : std::filesystem::directory_iterator(path))
          if (f.path().extension() == ".sst" && testing::ReadFile(f.path().string()).find(key) != std::string::npos)
            file = f.path();
        ASSERT_FALSE(file.empty()) << "no table file of checkpoint " << committed << " in " << path;
        const auto size = std::filesystem::file_size(file);
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(size / 2));
        const std::string junk(256, '\x5a');
        f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
        ASSERT_TRUE(f.good());
      },
      "Corruption");
}

TEST(Recovery, AServerKilledMidRunMakesEveryServerRollBackAndTheJobEndsAsUndisturbed) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = Undisturbed(reference);

  Job job = StartJob(dir, "killed", false);
  const int64_t committed = WaitForCommit(job, "[23]00");
  job.cluster.servers[1].process->Signal(SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(job.cluster.servers[1].process->Wait(30s).has_value());
  // Its supervisor (here, the test) starts it again.
  job.cluster.servers[1].process = std::make_unique<testing::ChildProcess>(
      std::vector<std::string>{testing::BinPath("ps-server"), "--coordinator", job.cluster.coordinator_endpoint});
  auto resumed = job.cluster.coordinator->WaitForLine(std::regex("every server has loaded the checkpoint at step (\\d+)"), 120s);
  ASSERT_TRUE(resumed.has_value()) << job.cluster.coordinator->Stdout() << job.cluster.servers[1].process->Stderr();
  const double recovery_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  std::printf("time from the server kill to training resuming: %.2f s (peer timeout 2 s)\n", recovery_s);
  EXPECT_GE(std::stoll(*resumed), committed) << "a committed step was lost";
  const std::vector<float> weights = Finish(job, dir, "killed");
  EXPECT_LE(RelativeDifference(weights, expected), 1e-5)
      << job.cluster.coordinator->Stdout() << job.workers[0]->Stderr() << job.workers[1]->Stderr();
  auto summary = Summary(dir, "killed");
  EXPECT_EQ(summary["restarts"], 1);
  EXPECT_EQ(summary["steps"], 450);
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2);
}

// A worker SIGKILLed mid-epoch and started again by its supervisor (here,
// the test) at once: it waits until its predecessor is declared dead and
// its leases are back in the pool, takes its place at the servers' current
// step, and the job ends with every record trained once an epoch and at
// least the accuracy of an undisturbed run (less 0.5 points).
TEST(Recovery, AWorkerKilledMidEpochIsReplacedAndEveryRecordIsTrainedOnce) {
  testing::TempDir reference, dir;
  Job undisturbed = StartJob(reference, "undisturbed", false, /*two_epochs=*/true);
  Finish(undisturbed, reference, "undisturbed");
  const double expected = Summary(reference, "undisturbed")["test_accuracy"].get<double>();

  Job job = StartJob(dir, "killed", false, /*two_epochs=*/true);
  WaitForCommit(job, "[23]00");
  job.workers[1]->Signal(SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(job.workers[1]->Wait(30s).has_value());
  job.workers[1] = testing::StartWorker(job.cluster, "", {"--save-weights", dir.File("killed-w1")});
  auto place = job.cluster.coordinator->WaitForLine(std::regex("worker (\\d+) joined again"), 60s);
  ASSERT_TRUE(place.has_value()) << job.cluster.coordinator->Stdout() << job.workers[1]->Stderr();
  const double rejoined_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  std::printf("time from the worker kill to its replacement joining: %.2f s (peer timeout 2 s)\n", rejoined_s);
  Finish(job, dir, "killed");
  const std::string log = job.cluster.coordinator->Stdout();
  EXPECT_NE(log.find("declared dead"), std::string::npos) << log;
  const std::string replacement = job.workers[1]->Stdout() + job.workers[1]->Stderr();
  EXPECT_NE(replacement.find(", from step "), std::string::npos) << replacement;
  auto summary = Summary(dir, "killed");
  EXPECT_EQ(summary["epochs"], 2);
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2) << log;
  // While it was missing the other trained alone: more, smaller steps over
  // the same records, so the result is no worse (typically a little better).
  EXPECT_GE(summary["test_accuracy"].get<double>(), expected - 0.005) << log;
}

// The coordinator SIGKILLed mid-run and started again by its supervisor
// (here, the test) on the same endpoint with --resume: the servers and
// workers, still running, learn that it does not know them, join again in
// their processes, and the job resumes from the last committed checkpoint
// and ends as undisturbed.
TEST(Recovery, ACoordinatorKilledMidRunIsRestartedAndTheMembersJoinAgain) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = Undisturbed(reference);

  Job job = StartJob(dir, "killed", false);
  const int64_t committed = WaitForCommit(job, "[23]00");
  job.cluster.coordinator->Signal(SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(job.cluster.coordinator->Wait(30s).has_value());
  std::vector<std::string> argv{testing::BinPath("ps-coordinator"), "--config", kMlpConfig, "--no-run-dir",
                                "--summary", dir.File("killed.json"), "--resume",
                                "--bind", job.cluster.coordinator_endpoint};
  for (const auto& set : JobSets(dir.File("checkpoints")))
    argv.insert(argv.end(), {"--set", set});
  argv.insert(argv.end(), {"--set", "cluster.servers=2"});
  job.cluster.coordinator = std::make_unique<testing::ChildProcess>(argv);
  auto resumed = job.cluster.coordinator->WaitForLine(std::regex("every server has loaded the checkpoint at step (\\d+)"), 120s);
  ASSERT_TRUE(resumed.has_value()) << job.cluster.coordinator->Stdout() << job.cluster.coordinator->Stderr();
  const double recovery_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  std::printf("time from the coordinator kill to training resuming: %.2f s\n", recovery_s);
  EXPECT_GE(std::stoll(*resumed), committed) << "a committed step was lost";
  const std::vector<float> weights = Finish(job, dir, "killed");
  EXPECT_LE(RelativeDifference(weights, expected), 1e-5) << job.cluster.coordinator->Stdout();
  auto summary = Summary(dir, "killed");
  EXPECT_EQ(summary["steps"], 450);
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2);
  const std::string servers = job.cluster.servers[0].process->Stderr() + job.cluster.servers[1].process->Stderr();
  EXPECT_NE(servers.find("join again"), std::string::npos) << servers;
}

// As users run it: under ps-launch, the coordinator and then a worker are
// SIGKILLed; ps-launch starts each again, the job completes, every record
// once, and nothing is left running.
TEST(Recovery, UnderPsLaunchAKilledCoordinatorAndAKilledWorkerAreRestarted) {
  testing::TempDir dir;
  const std::string run = dir.File("run");
  std::vector<std::string> argv{testing::BinPath("ps-launch"), "--config", kMlpConfig, "--run-dir", run,
                                "--summary", dir.File("summary.json")};
  for (const auto& set : JobSets(dir.File("checkpoints"), /*two_epochs=*/true)) argv.insert(argv.end(), {"--set", set});
  testing::ChildProcess launch(argv);
  ASSERT_TRUE(launch.WaitForLine(std::regex("(checkpoint at step 200 committed)"), 120s).has_value()) << launch.Stderr();
  auto coordinators = testing::PidsMentioning("ps-coordinator --config " + kMlpConfig + " --run-dir " + run);
  ASSERT_EQ(coordinators.size(), 1u);
  ::kill(coordinators[0], SIGKILL);
  ASSERT_TRUE(launch.WaitForLine(std::regex("generation 2: (every server has loaded)"), 120s).has_value())
      << launch.Stdout() << launch.Stderr();
  auto workers = testing::PidsMentioning(run + "/logs/worker-1.json");
  ASSERT_EQ(workers.size(), 1u);
  ::kill(workers[0], SIGKILL);
  ASSERT_TRUE(launch.WaitForLine(std::regex("worker (\\d+) joined again"), 120s).has_value())
      << launch.Stdout() << launch.Stderr();
  EXPECT_EQ(launch.Wait(300s), std::optional<int>(0)) << launch.Stdout() << launch.Stderr();
  const std::string log = launch.Stderr();
  EXPECT_NE(log.find("the coordinator killed by signal"), std::string::npos) << log;
  EXPECT_NE(log.find("worker 1 killed by signal"), std::string::npos) << log;
  auto summary = Summary(dir, "summary");
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2);
  EXPECT_EQ(summary["epochs"], 2);
  EXPECT_TRUE(testing::PidsMentioning(run).empty()) << "processes left behind";
}

// The workers' messages to and from the servers are lost, duplicated,
// delayed and reordered (a seeded fault transport, PSFORGE_FAULTS): requests
// are sent again, a repeated push is applied once, and the job ends with
// the weights of the undisturbed run, bit for bit up to summation order.
TEST(Recovery, LostDuplicatedAndReorderedMessagesChangeNothing) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = Undisturbed(reference);
  ::setenv("PSFORGE_FAULTS", "drop=0.02,duplicate=0.03,delay=0.1,delay_ms=30,seed=11", 1);
  Job job = StartJob(dir, "faults", false, false, {"cluster.retry_interval_s=0.1"});
  ::unsetenv("PSFORGE_FAULTS");
  const std::vector<float> weights = Finish(job, dir, "faults");
  EXPECT_LE(RelativeDifference(weights, expected), 1e-5);
  const std::string log = job.workers[0]->Stderr() + job.workers[1]->Stderr();
  EXPECT_NE(log.find("injecting faults"), std::string::npos) << log;
  std::string stats;
  for (auto& s : job.cluster.servers) stats += s.process->Stderr();
  EXPECT_EQ(Summary(dir, "faults")["steps"], 450);
  // The servers saw repeated pushes and recognised them.
  EXPECT_EQ(stats.find("\"duplicates\":0,"), std::string::npos) << stats;
}

// A small tmpfs mounted at `path` (root only), unmounted when it goes.
struct SmallDisk {
  std::string path;
  bool mounted = false;
  SmallDisk(std::string p, const std::string& size) : path(std::move(p)) {
    std::filesystem::create_directories(path);
    mounted = ::geteuid() == 0 && ::mount("psforge-test", path.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0;
  }
  bool Resize(const std::string& size) const {
    return ::mount("psforge-test", path.c_str(), "tmpfs", MS_REMOUNT, ("size=" + size).c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted) ::umount2(path.c_str(), MNT_DETACH);
  }
};

// Server 1's store fills up (a 3 MB tmpfs; its share of a checkpoint is
// 2.4 MB): the checkpoint it cannot write is reported with the reason,
// training goes on, nothing committed is damaged, and once the disk has
// room again the next checkpoints are committed. The job's weights are the
// undisturbed run's.
TEST(Recovery, AFullDiskUnderAServersStoreIsReportedAndCheckpointsResumeWithSpace) {
  testing::TempDir reference, dir;
  SmallDisk disk(dir.File("checkpoints/server-1"), "3M");
  if (!disk.mounted) GTEST_SKIP() << "mounting a tmpfs needs root";
  const std::vector<float> expected = Undisturbed(reference);

  Job job = StartJob(dir, "full", false);
  ASSERT_TRUE(job.cluster.coordinator->WaitForLine(std::regex("(checkpoint at step 100 committed)"), 120s));
  // The failure is in a server's log (server 1 is whichever joined second).
  std::optional<std::string> failed;
  const std::regex not_written("checkpoint at step (\\d+) not written");
  for (auto until = std::chrono::steady_clock::now() + 120s; !failed && std::chrono::steady_clock::now() < until;) {
    for (auto& s : job.cluster.servers) {
      std::smatch m;
      const std::string log = s.process->Stderr();
      if (std::regex_search(log, m, not_written)) failed = m[1].str();
    }
    std::this_thread::sleep_for(20ms);  // polling interval of a condition wait with a deadline
  }
  ASSERT_TRUE(failed.has_value()) << "no checkpoint failed on the full disk";
  ASSERT_TRUE(disk.Resize("64M"));
  const int64_t lost = std::stoll(*failed);
  auto later = job.cluster.coordinator->WaitForLine(std::regex("checkpoint at step ([34]00) committed"), 120s);
  const std::vector<float> weights = Finish(job, dir, "full");
  const std::string servers = job.cluster.servers[0].process->Stderr() + job.cluster.servers[1].process->Stderr();
  EXPECT_NE(servers.find("No space left"), std::string::npos) << servers;
  ASSERT_TRUE(later.has_value()) << "no checkpoint committed once space was back: " << job.cluster.coordinator->Stdout();
  EXPECT_GT(std::stoll(*later), lost);
  EXPECT_EQ(job.cluster.coordinator->Stdout().find("checkpoint at step " + std::to_string(lost) + " committed"),
            std::string::npos)
      << job.cluster.coordinator->Stdout() << servers;
  EXPECT_LE(RelativeDifference(weights, expected), 1e-5);
  // What was committed before the disk filled is intact.
  auto store = ParamStore::OpenRocksDb(disk.path);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_TRUE((*store)->Read(100).ok() || (*store)->Read(std::stoll(*later)).ok());
}

}  // namespace
}  // namespace psforge
