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
#include "tests/fault/fault_job.h"

namespace psforge {
namespace {

using namespace fault;

TEST(Recovery, AJobKilledOutrightResumesFromItsLastCheckpointWithTheSameWeights) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = Undisturbed(reference);

  Job first = StartJob(dir, "first", false);
  const int64_t committed = WaitForCommit(first, "[23]00");
  KillAll(first);

  Job resumed = StartJob(dir, "resumed", true);
  auto summary = ExpectUndisturbedEnd(resumed, dir, expected);
  EXPECT_GE(summary["resumed_from_step"].get<int64_t>(), committed) << "a committed step was lost";
  EXPECT_NE(resumed.cluster.coordinator->Stdout().find("shards done"), std::string::npos);
}

// Checkpoints by time (checkpoint.interval_s): the coordinator picks the
// steps, every server writes them, they are committed, and a job killed
// outright resumes from one with the weights of the undisturbed run.
// Two epochs (938 steps): at ~500 steps/s on a Zen 5 the 450-step job was
// over before its first timed checkpoint, which was then the end-of-job one,
// and the resumed job had nothing left to train or checkpoint. The kill
// waits for a commit in the first epoch (steps below 469).
TEST(Recovery, CheckpointsByTimeAreCommittedAndAJobResumesFromOne) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = Undisturbed(reference, /*two_epochs=*/true);
  const std::vector<std::string> by_time{"checkpoint.interval_steps=0", "checkpoint.interval_s=0.2"};
  Job first = StartJob(dir, "first", false, /*two_epochs=*/true, by_time);
  const int64_t committed = WaitForCommit(first, "[1-9]\\d?|[1-3]\\d\\d|4[0-6]\\d");
  ASSERT_GT(committed, 0);
  KillAll(first);

  Job resumed = StartJob(dir, "resumed", true, /*two_epochs=*/true, by_time);
  auto summary = ExpectUndisturbedEnd(resumed, dir, expected, 938);
  EXPECT_GE(summary["resumed_from_step"].get<int64_t>(), committed) << "a committed step was lost";
  EXPECT_GE(summary["checkpoints_committed"].get<int64_t>(), 1) << resumed.cluster.coordinator->Stdout();
}

// A server SIGKILLed while it writes a checkpoint (every write stalls:
// cluster.faults write_stall_ms): the checkpoint it never finished is not
// committed, every server rolls back to the last committed one, and the
// job ends as undisturbed.
TEST(Recovery, AServerKilledDuringACheckpointWriteRollsBackToTheLastCommittedOne) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = Undisturbed(reference);
  Job job = StartJob(dir, "killed", false, false, {"cluster.faults=write_stall_ms=250"});
  const int64_t committed = WaitForCommit(job, "[1-3]00");
  const int64_t writing =
      WaitForStderr(*job.cluster.servers[1].process, std::regex("checkpoint (\\d+) stalls"), committed);
  ASSERT_GT(writing, committed);
  const std::size_t mark = job.cluster.coordinator->lines_read();
  KillAndRestartServer(job, 1, {"--faults", "none"});  // the restarted one writes at full speed
  const int64_t resumed = WaitForResume(job, mark);
  EXPECT_GE(resumed, committed) << "a committed step was lost";
  EXPECT_LT(resumed, writing) << "a checkpoint one server never finished was committed";
  auto summary = ExpectUndisturbedEnd(job, dir, expected);
  EXPECT_EQ(summary["restarts"], 1);
}

// A disk that hangs in a checkpoint write (write_stall_ms far beyond
// checkpoint.write_timeout_s) freezes nothing. Server 1 is killed, so the
// job must restart; server 0 cannot load while its write holds the store,
// keeps serving heartbeats meanwhile (it is not declared dead), and after
// the timeout says which write, where and how long it waited. No
// checkpoint was ever committed and there is nothing else to load, so the
// job ends with an error naming the server, and every process exits.
TEST(Recovery, AHungDiskIsNamedAndFreezesNothing) {
  testing::TempDir dir;
  Job job = StartJob(dir, "hung", false, false, {"cluster.faults=write_stall_ms=600000", "checkpoint.write_timeout_s=2"});
  testing::ChildProcess& hung = *job.cluster.servers[0].process;
  std::smatch id;
  const std::string listening = hung.Stdout();
  ASSERT_TRUE(std::regex_search(listening, id, std::regex("ps-server (\\d+) listening"))) << listening;
  const std::string server = "server " + id[1].str();
  ASSERT_EQ(WaitForStderr(hung, std::regex("checkpoint (\\d+) stalls"), 0), 100);
  KillAndRestartServer(job, 1, {"--faults", "none"});
  auto& coordinator = *job.cluster.coordinator;
  EXPECT_NE(coordinator.Wait(120s).value_or(0), 0) << coordinator.Stdout();
  for (auto& s : job.cluster.servers) EXPECT_TRUE(s.process->Wait(60s).has_value()) << s.process->Stderr();
  for (auto& w : job.workers) EXPECT_TRUE(w->Wait(60s).has_value()) << w->Stderr();
  const std::string log = coordinator.Stdout() + coordinator.Stderr();
  EXPECT_NE(log.find(server + " cannot load the initial weights"), std::string::npos) << log;
  EXPECT_FALSE(std::regex_search(log, std::regex(server + " [^\n]* sent no heartbeat")))
      << "declared dead while it waited: " << log;
  const std::string err = hung.Stderr();
  EXPECT_NE(err.find("cannot load the initial weights: the write of the checkpoint at step 100 to " +
                     dir.File("checkpoints/server-" + id[1].str()) + " has not ended after "),
            std::string::npos)
      << err;
  EXPECT_TRUE(std::regex_search(err, std::regex("has not ended after [0-9.]+ s \\(checkpoint.write_timeout_s")))
      << err;
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
  const std::vector<float> weights = Finish(resumed, dir);
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
  const auto killed_at = std::chrono::steady_clock::now();
  KillAndRestartServer(job, 1);
  const int64_t resumed = WaitForResume(job);
  const double recovery_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  std::printf("time from the server kill to training resuming: %.2f s (peer timeout 2 s)\n", recovery_s);
  EXPECT_GE(resumed, committed) << "a committed step was lost";
  auto summary = ExpectUndisturbedEnd(job, dir, expected);
  EXPECT_EQ(summary["restarts"], 1);
}

// Across epochs as within one: the same two-epoch job twice gives the same
// weights bit for bit, and a server killed in the second epoch (every
// server rolls back to the last checkpoint, the workers replay the same
// steps) ends with them too.
TEST(Recovery, TwoEpochRunsAgreeBitForBitAndAServerKilledInTheSecondEndsTheSame) {
  testing::TempDir reference, again, dir;
  const std::vector<float> expected = Undisturbed(reference, /*two_epochs=*/true);
  const int64_t steps = Summary(reference, "undisturbed")["steps"];
  EXPECT_EQ(Differing(Undisturbed(again, true), expected), 0u) << "two undisturbed runs differ";
  EXPECT_EQ(Summary(again, "undisturbed")["steps"], steps);

  Job job = StartJob(dir, "killed", false, /*two_epochs=*/true);
  const int64_t committed = WaitForCommit(job, "[5-8]00");
  KillAndRestartServer(job, 0);
  EXPECT_GE(WaitForResume(job), committed);
  auto summary = ExpectUndisturbedEnd(job, dir, expected, steps);
  EXPECT_EQ(summary["restarts"], 1);
}

// A worker SIGKILLed mid-epoch and started again by its supervisor (here,
// the test) at once: it waits until its predecessor is declared dead and
// its leases are back in the pool, takes its place at the servers' current
// step, and the job ends with every record trained once an epoch and at
// least the accuracy of an undisturbed run (less 0.5 points; AccuracyFloor).
TEST(Recovery, AWorkerKilledMidEpochIsReplacedAndEveryRecordIsTrainedOnce) {
  testing::TempDir reference, dir;
  Job undisturbed = StartJob(reference, "undisturbed", false, /*two_epochs=*/true);
  Finish(undisturbed, reference);
  const double expected = Summary(reference, "undisturbed")["test_accuracy"].get<double>();
  const int64_t expected_steps = Summary(reference, "undisturbed")["steps"].get<int64_t>();

  Job job = StartJob(dir, "killed", false, /*two_epochs=*/true);
  WaitForCommit(job, "[23]00");
  job.workers[1]->Signal(SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  EXPECT_TRUE(job.workers[1]->Wait(30s).has_value());
  job.workers[1] = StartJobWorker(job, dir, 1);
  // The replacement takes the dead one's place; or, when the kill fell
  // between the worker's pushes to the two servers, the job rolls back to a
  // checkpoint and the replacement joins the new generation.
  auto place = job.cluster.coordinator->WaitForLine(
      std::regex("(worker \\d+ joined again|every server has loaded the checkpoint at step \\d+)"), 60s);
  ASSERT_TRUE(place.has_value()) << job.cluster.coordinator->Stdout() << job.workers[1]->Stderr();
  const double rejoined_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  std::printf("time from the worker kill to its replacement joining: %.2f s (peer timeout 2 s)\n", rejoined_s);
  Finish(job, dir);
  const std::string log = job.cluster.coordinator->Stdout();
  EXPECT_NE(log.find("declared dead"), std::string::npos) << log;
  const std::string replacement = job.workers[1]->Stdout() + job.workers[1]->Stderr();
  EXPECT_NE(replacement.find(", from step "), std::string::npos) << replacement;
  auto summary = Summary(dir, "killed");
  EXPECT_EQ(summary["epochs"], 2);
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2) << log;
  // While it was missing the other took its share of each step's batch: as
  // many steps of the job's batch size as undisturbed (one more where the
  // replacement joined mid-step, one per epoch end at most).
  EXPECT_LE(summary["steps"].get<int64_t>(), expected_steps + 2) << log;
  EXPECT_GE(summary["test_accuracy"].get<double>(), AccuracyFloor(reference, expected)) << log;
}

// The fault job with worker 1 made to SIGKILL itself between its pushes of
// step 250 to the two servers (--faults die_mid_push); returns once it
// has died.
Job StartJobWhoseWorkerDiesMidPush(const testing::TempDir& dir, const std::string& name, bool two_epochs) {
  const auto sets = JobSets(dir.File("checkpoints"), two_epochs);
  Job job{testing::StartCluster(kMlpConfig, 2, sets, CoordinatorArgs(dir, name, false)), {}, sets, name};
  job.workers.push_back(StartJobWorker(job, dir, 0));
  job.workers.push_back(StartJobWorker(job, dir, 1, {"--faults", "die_mid_push=250"}));
  EXPECT_EQ(job.workers[1]->Wait(120s), std::optional<int>(-1)) << job.workers[1]->Stderr();
  EXPECT_NE(job.workers[1]->Stderr().find("dying between its pushes of step 250"), std::string::npos)
      << job.workers[1]->Stderr();
  return job;
}

// A worker dies after its push of step 250 has reached the first server and
// before it is sent to the second (--faults die_mid_push): its last
// batch is in one server's weights only, which no resume from either
// position can mend. The job goes back to the last checkpoint committed
// before that batch, and ends as undisturbed.
TEST(Recovery, AWorkerDeadBetweenItsPushesToTwoServersMakesTheJobRollBack) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = Undisturbed(reference);
  Job job = StartJobWhoseWorkerDiesMidPush(dir, "killed", /*two_epochs=*/false);
  const std::size_t mark = job.cluster.coordinator->lines_read();
  job.workers[1] = StartJobWorker(job, dir, 1);
  const int64_t resumed = WaitForResume(job, mark);
  EXPECT_GE(resumed, 200) << "a committed step was lost";
  EXPECT_LT(resumed, 250) << "the job kept a checkpoint with the dead worker's batch on one server only";
  auto summary = ExpectUndisturbedEnd(job, dir, expected);
  EXPECT_EQ(summary["restarts"], 1);
  const std::string log = job.cluster.coordinator->Stdout();
  EXPECT_NE(log.find("died between its pushes to different servers"), std::string::npos) << log;
}

// The same death with nobody to restart the worker: after the rollback the
// other worker joins the new generation alone, the dead one's place is
// declared dead once the peer timeout has passed, and the job ends with
// every record trained once an epoch (the last batch on one server only is
// gone with the rollback).
TEST(Recovery, AWorkerDeadBetweenItsPushesAndNeverRestartedLeavesTheRestToFinish) {
  testing::TempDir dir;
  Job job = StartJobWhoseWorkerDiesMidPush(dir, "alone", /*two_epochs=*/true);
  EXPECT_EQ(job.workers[0]->Wait(240s), std::optional<int>(0)) << job.workers[0]->Stderr();
  testing::ExpectClusterExits(job.cluster);
  const std::string log = job.cluster.coordinator->Stdout();
  EXPECT_NE(log.find("died between its pushes to different servers"), std::string::npos) << log;
  EXPECT_NE(log.find("worker 1 declared dead: nobody took its place in generation 2"), std::string::npos) << log;
  auto summary = Summary(dir, "alone");
  EXPECT_EQ(summary["restarts"], 1);
  EXPECT_EQ(summary["workers_lost"], 1);
  EXPECT_EQ(summary["epochs"], 2);
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2) << log;
  EXPECT_GE(summary["test_accuracy"].get<double>(), 0.80) << log;
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
  const auto killed_at = std::chrono::steady_clock::now();
  KillAndRestartCoordinator(job, dir);
  const int64_t resumed = WaitForResume(job);
  const double recovery_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  std::printf("time from the coordinator kill to training resuming: %.2f s\n", recovery_s);
  EXPECT_GE(resumed, committed) << "a committed step was lost";
  ExpectUndisturbedEnd(job, dir, expected);
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
  // Both workers in generation 2, before or after the servers have loaded
  // it (one killed before it joins would leave a free place for its
  // restarted self, not a dead one to take).
  int coordinators_started = 0, joined = 0;
  bool loaded = false;
  auto both_in_second = [&](const std::string& line) {
    coordinators_started += line.find("ps-coordinator listening on") != std::string::npos;
    joined += coordinators_started == 2 && std::regex_search(line, std::regex("^worker \\d joined \\("));
    loaded = loaded || line.find("generation 2: every server has loaded") != std::string::npos;
    return loaded && joined == 2;
  };
  ASSERT_TRUE(launch.WaitForLine(both_in_second, 120s).has_value()) << launch.Stdout() << launch.Stderr();
  auto workers = testing::PidsMentioning(run + "/logs/worker-1.json");
  ASSERT_EQ(workers.size(), 1u);
  ::kill(workers[0], SIGKILL);
  ASSERT_TRUE(launch.WaitForLine(std::regex("worker (\\d+) joined again"), 120s).has_value())
      << launch.Stdout() << launch.Stderr();
  EXPECT_EQ(launch.Wait(300s), std::optional<int>(0)) << launch.Stdout() << launch.Stderr();
  const std::string log = launch.Stderr();
  // The supervisor names each process with its pid, as the coordinator does.
  EXPECT_TRUE(std::regex_search(log, std::regex("the coordinator \\(pid \\d+\\) killed by signal"))) << log;
  EXPECT_TRUE(std::regex_search(log, std::regex("ps-worker 1 \\(pid " + std::to_string(workers[0]) +
                                                "\\) killed by signal"))) << log;
  EXPECT_NE(launch.Stdout().find("pid " + std::to_string(workers[0]) + ")"), std::string::npos)
      << "the coordinator did not name the killed worker's pid:\n" << launch.Stdout();
  auto summary = Summary(dir, "summary");
  EXPECT_TRUE(summary["audit"]["exactly_once"].get<bool>()) << summary["audit"].dump(2);
  EXPECT_EQ(summary["epochs"], 2);
  EXPECT_TRUE(testing::PidsMentioning(run).empty()) << "processes left behind";
}

// The workers' messages to and from the servers are lost, duplicated,
// delayed and reordered (a seeded fault transport, cluster.faults): requests
// are sent again, a repeated push is applied once, and the job ends with
// the weights of the undisturbed run, bit for bit up to summation order.
TEST(Recovery, LostDuplicatedAndReorderedMessagesChangeNothing) {
  testing::TempDir reference, dir;
  const std::vector<float> expected = Undisturbed(reference);
  Job job = StartJob(dir, "faults", false, false,
                     {"cluster.retry_interval_s=0.1",
                      "cluster.faults=drop=0.02,duplicate=0.03,delay=0.1,delay_ms=30,seed=11"});
  const std::vector<float> weights = Finish(job, dir);
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
  const std::vector<float> weights = Finish(job, dir);
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
