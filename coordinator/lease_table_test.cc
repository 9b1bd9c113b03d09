#include "coordinator/lease_table.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace psforge {
namespace {

// Drives the table as workers would: each takes a lease and reports it done.
TEST(LeaseTable, EveryShardOnceAnEpochThenFinished) {
  ShardPlan plan(1000, 64, 5, true);  // 16 shards, the last one short
  LeaseTable table(&plan, 3, 2);
  for (int64_t epoch = 1; epoch <= 2; ++epoch) {
    std::set<int64_t> seen;
    int64_t records = 0;
    for (int i = 0; i < plan.shards(); ++i) {
      uint32_t w = static_cast<uint32_t>(i % 3);
      auto g = table.Next(w);
      ASSERT_EQ(g.status, LeaseStatus::kGranted);
      ASSERT_EQ(g.epoch, epoch);
      EXPECT_TRUE(seen.insert(plan.ShardOf(g.lease)).second);
      records += g.positions.size();
      auto done = table.Done(w, g.lease);
      ASSERT_TRUE(done.ok());
      EXPECT_EQ(*done, i + 1 == plan.shards() ? epoch : 0);
    }
    EXPECT_EQ(records, 1000);
  }
  EXPECT_TRUE(table.finished());
  EXPECT_EQ(table.Next(0).status, LeaseStatus::kFinished);
}

TEST(LeaseTable, WorkersGetTheirOwnShardsWhateverTheTiming) {
  ShardPlan plan(640, 64, 9, true);
  auto order = plan.EpochOrder(1);
  LeaseTable table(&plan, 2, 1);
  // Worker 1 asks twice before worker 0 asks at all.
  EXPECT_EQ(plan.ShardOf(table.Next(1).lease), order[1]);
  EXPECT_EQ(plan.ShardOf(table.Next(1).lease), order[3]);
  EXPECT_EQ(plan.ShardOf(table.Next(0).lease), order[0]);
}

TEST(LeaseTable, WaitsForTheEpochsLastShardsAndStealsWhenOwnAreGone) {
  ShardPlan plan(4 * 10, 10, 1, false);
  LeaseTable table(&plan, 2, 2);
  auto a = table.Next(0), b = table.Next(0), c = table.Next(0);  // 0's two, then one stolen from 1
  ASSERT_EQ(c.status, LeaseStatus::kGranted);
  auto d = table.Next(1);
  ASSERT_EQ(d.status, LeaseStatus::kGranted);
  EXPECT_EQ(table.Next(1).status, LeaseStatus::kWait);  // all handed out, none done
  for (auto g : {a, b, c}) ASSERT_TRUE(table.Done(0, g.lease).ok());
  EXPECT_EQ(table.Next(0).status, LeaseStatus::kWait);
  ASSERT_EQ(*table.Done(1, d.lease), 1);
  EXPECT_EQ(table.Next(0).epoch, 2);
}

// BSP: no taking over, and the epoch turns over at the step after the last
// shards were used up, whichever worker asks first.
TEST(LeaseTable, InLockstepTheEpochTurnsOverAtTheSameStepWhoeverAsksFirst) {
  ShardPlan plan(4 * 10, 10, 1, false, 2);
  auto alive = [](uint32_t) { return true; };
  for (uint32_t first : {0u, 1u}) {
    LeaseTable table(&plan, 2, 2, /*lockstep=*/true);
    const uint32_t second = 1 - first;
    // Step 0: each takes its first shard.
    auto a0 = table.Next(0), b0 = table.Next(1);
    // Step 1: both used theirs up (10 records, 10 a step) and ask again.
    for (uint32_t w : {first, second}) {
      table.UsedUp(w, 1);
      EXPECT_EQ(table.CompleteUsedUp(1, alive), 0);  // used up in step 1: not applied yet
      ASSERT_EQ(table.Next(w).status, LeaseStatus::kGranted);
    }
    // Step 2: the own shards are gone; nobody takes over another's.
    for (uint32_t w : {first, second}) {
      table.UsedUp(w, 2);
      EXPECT_EQ(table.CompleteUsedUp(2, alive), 0);
      EXPECT_EQ(table.Next(w).status, LeaseStatus::kWait) << "worker " << w;
    }
    // Step 3: whoever asks first finds epoch 1 done and gets epoch 2's shard.
    table.UsedUp(first, 3);
    EXPECT_EQ(table.CompleteUsedUp(3, alive), 1);
    auto g = table.Next(first);
    ASSERT_EQ(g.status, LeaseStatus::kGranted);
    EXPECT_EQ(g.epoch, 2);
    table.UsedUp(second, 3);
    EXPECT_EQ(table.CompleteUsedUp(3, alive), 0);
    EXPECT_EQ(table.Next(second).epoch, 2);
    // The workers' own reports of the same leases are repeats.
    EXPECT_EQ(*table.Done(0, a0.lease), 0);
    EXPECT_EQ(*table.Done(1, b0.lease), 0);
  }
}

// A dead holder's used-up lease is not done by step: its last push may be
// missing (the servers stopped waiting for it).
TEST(LeaseTable, InLockstepADeadHoldersLeaseWaitsForItsPosition) {
  ShardPlan plan(20, 10, 1, false, 2);
  LeaseTable table(&plan, 2, 1, /*lockstep=*/true);
  table.Next(0);
  table.Next(1);
  table.UsedUp(0, 1);
  table.UsedUp(1, 1);
  EXPECT_EQ(table.CompleteUsedUp(2, [](uint32_t w) { return w != 1; }), 0);
  EXPECT_EQ(table.HeldBy(1), 1);
  EXPECT_EQ(table.HeldBy(0), 0);
}

TEST(LeaseTable, ADeadWorkersLeasesGoBackFirst) {
  ShardPlan plan(100, 10, 3, true);
  LeaseTable table(&plan, 2, 1);
  auto held = table.Next(1);
  auto r = table.ReturnLeases(1, DataPosition{1, 0, 0});  // it never pushed
  EXPECT_EQ(r.whole, 1);
  auto again = table.Next(0);
  EXPECT_EQ(again.lease, held.lease);
  EXPECT_EQ(again.offset, 0);
  // The dead worker's report of the returned lease is refused.
  EXPECT_FALSE(table.Done(1, held.lease).ok());
  EXPECT_TRUE(table.Done(0, again.lease).ok());
  // A repeated report is ignored.
  EXPECT_TRUE(table.Done(0, again.lease).ok());
}

// The servers' position of a dead worker decides what it trained: leases
// granted before the one it was in are complete, that one resumes at the
// offset, later ones come back whole.
TEST(LeaseTable, ADeadWorkersLeasesResumeWhereTheServersStopped) {
  ShardPlan plan(60, 10, 3, true);  // 6 shards
  LeaseTable table(&plan, 2, 1);
  auto a = table.Next(1), b = table.Next(1), c = table.Next(1);
  ASSERT_EQ(c.status, LeaseStatus::kGranted);
  EXPECT_EQ(table.GrantOrder(1, a.lease), 0);
  EXPECT_EQ(table.GrantOrder(1, b.lease), 1);
  EXPECT_EQ(table.GrantOrder(0, b.lease), -1);
  auto r = table.ReturnLeases(1, DataPosition{1, b.lease, 4});
  EXPECT_EQ(r.completed, 1);  // a: every record applied
  EXPECT_EQ(r.partial, 1);    // b: from record 4
  EXPECT_EQ(r.whole, 1);      // c: untouched
  EXPECT_EQ(table.records_done_in_epoch(), 10);
  auto b2 = table.Next(0);
  EXPECT_EQ(b2.lease, b.lease);
  EXPECT_EQ(b2.offset, 4);
  auto c2 = table.Next(0);
  EXPECT_EQ(c2.lease, c.lease);
  EXPECT_EQ(c2.offset, 0);
  // The rest of the epoch, then it is complete with no shard twice.
  int64_t completed = 0;
  for (auto g : {b2, c2}) completed = std::max(completed, *table.Done(0, g.lease));
  for (auto g = table.Next(0); g.status == LeaseStatus::kGranted; g = table.Next(0))
    completed = std::max(completed, *table.Done(0, g.lease));
  EXPECT_EQ(completed, 1);
  EXPECT_TRUE(table.finished());
}

TEST(LeaseTable, ReturningTheLastLeasesCanCompleteTheEpoch) {
  ShardPlan plan(20, 10, 3, true);  // 2 shards
  LeaseTable table(&plan, 2, 2);
  auto a = table.Next(0), b = table.Next(1);
  ASSERT_TRUE(table.Done(0, a.lease).ok());
  auto r = table.ReturnLeases(1, DataPosition{1, b.lease, 10});  // all of b applied
  EXPECT_EQ(r.completed, 1);
  EXPECT_EQ(r.epoch_completed, 1);
  EXPECT_EQ(table.Next(0).epoch, 2);
}

// A checkpoint caught worker 1 in the middle of its second shard: replaying
// the grants finds the shards trained, and the restored table hands that
// shard's rest to worker 1 (as the undisturbed run would), even when worker
// 0 asks first.
TEST(LeaseTable, ARestoredPartialShardGoesBackToTheWorkerWhosePositionIsInIt) {
  ShardPlan plan(640, 64, 9, true);
  auto order = plan.EpochOrder(1);
  LeaseTable table(&plan, 2, 1);
  std::vector<GrantRecord> grants;
  for (uint32_t w : {0u, 1u, 0u, 1u}) {
    auto g = table.Next(w);
    grants.push_back({w, g.lease, g.offset});
  }
  std::map<uint32_t, DataPosition> positions{{0, {0, grants[2].lease, 64}}, {1, {1, grants[3].lease, 40}}};
  LeaseState state = ReplayLeases(plan, 1, LeaseState{}, grants, positions);
  EXPECT_EQ(state.done.size(), 3u);
  ASSERT_EQ(state.partial.size(), 1u);
  EXPECT_EQ(state.partial[0], std::make_pair(order[3], int64_t{40}));
  EXPECT_EQ(state.owner, (std::map<int64_t, uint32_t>{{order[3], 1}}));

  LeaseTable restored(&plan, 2, 1);
  restored.Restore(state);
  auto first = restored.Next(0);
  EXPECT_EQ(plan.ShardOf(first.lease), order[4]);
  EXPECT_EQ(first.offset, 0);
  auto rest = restored.Next(1);
  EXPECT_EQ(plan.ShardOf(rest.lease), order[3]);
  EXPECT_EQ(rest.offset, 40);
  EXPECT_EQ(plan.ShardOf(restored.Next(1).lease), order[5]);
}

// A worker granted the rest of a partly trained shard (restored from a
// checkpoint here) dies before the servers apply any of it: the shard goes
// back from where it was granted, not from record 0, whose first 40 records
// the checkpoint holds (the recovery test's 32 records applied twice after
// a coordinator restart and a worker kill).
TEST(LeaseTable, AResumedShardWhoseHolderDiesBeforePushingGoesBackFromItsOffset) {
  ShardPlan plan(640, 64, 9, true);
  auto order = plan.EpochOrder(1);
  LeaseState state;
  state.epoch = 1;
  state.partial = {{order[3], 40}};
  state.owner = {{order[3], 1}};
  LeaseTable table(&plan, 2, 1);
  table.Restore(state);
  auto rest = table.Next(1);
  ASSERT_EQ(plan.ShardOf(rest.lease), order[3]);
  ASSERT_EQ(rest.offset, 40);
  auto more = table.Next(1);
  auto r = table.ReturnLeases(1, DataPosition{1, 0, 0});  // it never pushed
  EXPECT_EQ(r.partial, 1);
  EXPECT_EQ(r.whole, 1);
  auto again = table.Next(0);
  EXPECT_EQ(again.lease, rest.lease);
  EXPECT_EQ(again.offset, 40);
  EXPECT_EQ(table.Next(0).lease, more.lease);
}

// A lease returned partway is granted from its offset to another worker,
// which dies in turn, having pushed nothing or less than the first holder:
// the shard still goes back from the first holder's offset.
TEST(LeaseTable, ALeaseReturnedPartwayKeepsItsOffsetThroughAnotherDeath) {
  ShardPlan plan(60, 10, 3, true);
  LeaseTable table(&plan, 3, 1);
  auto a = table.Next(1);
  table.ReturnLeases(1, DataPosition{1, a.lease, 6});
  auto a2 = table.Next(2);
  ASSERT_EQ(a2.lease, a.lease);
  ASSERT_EQ(a2.offset, 6);
  table.ReturnLeases(2, DataPosition{2, 0, 0});
  auto a3 = table.Next(0);
  EXPECT_EQ(a3.lease, a.lease);
  EXPECT_EQ(a3.offset, 6);
  table.ReturnLeases(0, DataPosition{0, a.lease, 8});  // two more of its records applied
  EXPECT_EQ(table.Next(2).offset, 8);
}

}  // namespace
}  // namespace psforge
