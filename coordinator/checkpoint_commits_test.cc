#include "coordinator/checkpoint_commits.h"

#include <gtest/gtest.h>

namespace psforge {
namespace {

CheckpointOptions ByTime(double interval_s) {
  CheckpointOptions o;
  o.interval_s = interval_s;
  return o;
}

std::vector<Member> Servers(std::vector<std::set<int64_t>> durable) {
  std::vector<Member> servers(durable.size());
  for (std::size_t i = 0; i < durable.size(); ++i) {
    servers[i].role = PeerRole::kServer;
    servers[i].id = static_cast<uint32_t>(i);
    servers[i].durable = durable[i];
  }
  return servers;
}

TEST(CheckpointCommits, CommitsTheLatestStepEveryServerHasWritten) {
  CheckpointCommits c(ByTime(60), 0.5);
  EXPECT_FALSE(c.Committable(Servers({{10}, {}})));
  // Server 1's write of step 20 failed: 30 is the latest both have.
  auto servers = Servers({{10, 20, 30}, {10, 30}});
  ASSERT_EQ(c.Committable(servers), 30);
  c.Commit(30);
  EXPECT_EQ(c.committed(), 30);
  EXPECT_EQ(c.commits(), 1);
  EXPECT_FALSE(c.Committable(servers));  // nothing newer
}

TEST(CheckpointCommits, PicksAStepAheadByTimeAndAimsFurtherWhenAPickIsMissed) {
  CheckpointCommits c(ByTime(10), 0.5);
  const auto t0 = Clock::now();
  c.Plan(t0, 0);  // the first call starts the interval
  EXPECT_EQ(c.planned(), 0);
  c.Plan(t0 + Seconds(5), 50);
  EXPECT_EQ(c.planned(), 0);  // not yet
  // 100 steps in 10 s: two heartbeat intervals (1 s) ahead is 10 steps.
  c.Plan(t0 + Seconds(10), 100);
  EXPECT_EQ(c.planned(), 111);
  c.Plan(t0 + Seconds(20), 105);  // the pick is still ahead of the servers
  EXPECT_EQ(c.planned(), 111);
  // It passed and was not committed: the lead doubles. 100 steps in 11 s,
  // 2 s ahead: 19 steps.
  c.Plan(t0 + Seconds(21), 200);
  EXPECT_EQ(c.planned(), 200 + 1 + 19);
}

TEST(CheckpointCommits, NoPicksByTimeWhenCheckpointsGoBySteps) {
  CheckpointOptions steps;
  steps.interval_steps = 100;
  steps.interval_s = 0;
  CheckpointCommits c(steps, 0.5);
  const auto t0 = Clock::now();
  for (int i = 0; i < 5; ++i) c.Plan(t0 + Seconds(100 * i), 1000 * i);
  EXPECT_EQ(c.planned(), 0);
}

TEST(CheckpointCommits, RollsBackToTheNewestCommittedAtOrBeforeTheStepAskedFor) {
  CheckpointCommits c(ByTime(60), 0.5);
  c.Commit(30);
  const std::vector<CommittedCheckpoint> committed = {{10, 1}, {20, 1}, {30, 1}};
  c.RollBack(25, committed);
  EXPECT_EQ(c.generation(), 2u);
  EXPECT_EQ(c.restarts(), 1);
  EXPECT_EQ(c.restore_step(), 20);
  c.BeginCollecting(Clock::now());
  EXPECT_TRUE(c.collecting());
  EXPECT_EQ(c.committed(), 20);  // what the generation starts from
  EXPECT_FALSE(c.Committable(Servers({{40}})));  // not while loading
  // Nothing at or before 5: the initial weights.
  c.RollBack(5, committed);
  EXPECT_EQ(c.restore_step(), 0);
  EXPECT_EQ(c.generation(), 3u);
}

TEST(CheckpointCommits, WithoutAStoreRollsBackToTheLastCommittedStep) {
  CheckpointCommits c(ByTime(60), 0.5);
  c.Commit(40);
  c.RollBack(INT64_MAX, std::nullopt);
  EXPECT_EQ(c.restore_step(), 40);
}

TEST(CheckpointCommits, FallsBackToThePreviousCommittedCheckpointUntilNoneIsLeft) {
  CheckpointCommits c(ByTime(60), 0.5);
  c.Resume({{10, 1}, {20, 2}}, 2);
  EXPECT_EQ(c.generation(), 3u);
  EXPECT_EQ(c.restore_step(), 20);
  EXPECT_EQ(c.resumed_from(), 20);
  EXPECT_EQ(c.GenerationOf(20), 2u);
  EXPECT_EQ(c.GenerationOf(10), 1u);
  ASSERT_TRUE(c.FallBack());
  EXPECT_EQ(c.restore_step(), 10);
  EXPECT_EQ(c.resumed_from(), 10);
  EXPECT_EQ(c.generation(), 4u);
  EXPECT_FALSE(c.FallBack());
}

TEST(CheckpointCommits, TheRejoinDeadlineFollowsOnlyARollback) {
  const auto t0 = Clock::now();
  CheckpointCommits resumed(ByTime(60), 0.5);
  resumed.Resume({{10, 1}}, 1);
  resumed.BeginCollecting(t0);
  resumed.EndCollecting(t0, 6);
  EXPECT_FALSE(resumed.RejoinDeadlinePassed(t0 + Seconds(100)));

  CheckpointCommits rolled(ByTime(60), 0.5);
  rolled.RollBack(INT64_MAX, std::vector<CommittedCheckpoint>{});
  rolled.BeginCollecting(t0);
  EXPECT_FALSE(rolled.RejoinDeadlinePassed(t0 + Seconds(100)));  // still loading
  rolled.EndCollecting(t0, 6);
  EXPECT_FALSE(rolled.RejoinDeadlinePassed(t0 + Seconds(5)));
  EXPECT_TRUE(rolled.RejoinDeadlinePassed(t0 + Seconds(7)));
  EXPECT_FALSE(rolled.RejoinDeadlinePassed(t0 + Seconds(8)));  // once

  // A second rollback inside the window: not while its servers load.
  CheckpointCommits twice(ByTime(60), 0.5);
  twice.RollBack(INT64_MAX, std::vector<CommittedCheckpoint>{});
  twice.BeginCollecting(t0);
  twice.EndCollecting(t0, 6);
  twice.RollBack(INT64_MAX, std::vector<CommittedCheckpoint>{});
  twice.BeginCollecting(t0 + Seconds(3));
  EXPECT_FALSE(twice.RejoinDeadlinePassed(t0 + Seconds(100)));  // still loading
  twice.EndCollecting(t0 + Seconds(4), 6);
  EXPECT_FALSE(twice.RejoinDeadlinePassed(t0 + Seconds(9)));  // the second deadline counts
  EXPECT_TRUE(twice.RejoinDeadlinePassed(t0 + Seconds(11)));
}

}  // namespace
}  // namespace psforge
