#include "common/shard_plan.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace psforge {
namespace {

TEST(ShardPlan, EveryRecordOnceAnEpoch) {
  ShardPlan plan(1003, 100, 7, true);
  ASSERT_EQ(plan.shards(), 11);
  EXPECT_EQ(plan.Positions(0).size(), 92);  // 1003 = 2 x 92 + 9 x 91
  EXPECT_EQ(plan.Positions(2).size(), 91);
  EXPECT_EQ(plan.Positions(10).end, 1003);
  std::vector<int64_t> records;
  for (int64_t epoch = 1; epoch <= 3; ++epoch) {
    std::vector<int> seen(1003, 0);
    auto order = plan.EpochOrder(epoch);
    ASSERT_EQ(order.size(), 11u);
    for (int64_t shard : order) {
      plan.Records(epoch, shard, &records);
      EXPECT_EQ(static_cast<int64_t>(records.size()), plan.Positions(shard).size());
      for (int64_t r : records) ++seen[r];
    }
    for (int s : seen) ASSERT_EQ(s, 1);
  }
}

// Block shuffling for data read from its file: a shard is a run of
// consecutive records, visited in a shuffled order, every record once an
// epoch; the shard order and the order inside a shard still change by epoch.
TEST(ShardPlan, AContiguousPlanCutsRunsOfTheFileAndShufflesInsideThem) {
  ShardPlan plan(1003, 100, 7, true, 1, /*contiguous=*/true);
  std::vector<int64_t> records, first_epoch;
  for (int64_t epoch = 1; epoch <= 2; ++epoch) {
    std::vector<int> seen(1003, 0);
    for (int64_t shard : plan.EpochOrder(epoch)) {
      plan.Records(epoch, shard, &records);
      const KeyRange p = plan.Positions(shard);
      std::vector<int64_t> sorted = records;
      std::sort(sorted.begin(), sorted.end());
      ASSERT_EQ(sorted.front(), p.begin);
      ASSERT_EQ(sorted.back(), p.end - 1) << "shard " << shard << " is not a run of the file";
      EXPECT_FALSE(std::is_sorted(records.begin(), records.end())) << "shard " << shard << " is not shuffled";
      for (int64_t r : records) ++seen[r];
      if (shard == 3 && epoch == 1) first_epoch = records;
      if (shard == 3 && epoch == 2) {
        EXPECT_NE(records, first_epoch);
      }
    }
    for (int s : seen) ASSERT_EQ(s, 1);
  }
  EXPECT_NE(plan.EpochOrder(1), plan.EpochOrder(2));
}

TEST(ShardPlan, OrdersDependOnSeedAndEpochOnly) {
  ShardPlan a(5000, 64, 3, true), b(5000, 64, 3, true), c(5000, 64, 4, true);
  EXPECT_EQ(a.EpochOrder(2), b.EpochOrder(2));
  EXPECT_NE(a.EpochOrder(1), a.EpochOrder(2));
  EXPECT_NE(a.EpochOrder(1), c.EpochOrder(1));
  std::vector<int64_t> r1, r2, r3;
  a.Records(1, 5, &r1);
  b.Records(1, 5, &r2);
  a.Records(2, 5, &r3);
  EXPECT_EQ(r1, r2);
  EXPECT_NE(r1, r3);
  // The same shard holds the same records in every epoch, in another order.
  std::sort(r1.begin(), r1.end());
  std::sort(r3.begin(), r3.end());
  EXPECT_EQ(r1, r3);
}

TEST(ShardPlan, WithoutShuffleEverythingIsInFileOrder) {
  ShardPlan plan(10, 4, 1, false);
  EXPECT_EQ(plan.EpochOrder(3), (std::vector<int64_t>{0, 1, 2}));
  std::vector<int64_t> r;
  plan.Records(3, 2, &r);
  EXPECT_EQ(r, (std::vector<int64_t>{7, 8, 9}));  // 10 = 4 + 3 + 3
  EXPECT_EQ(plan.ShardOf(plan.LeaseId(4, 2)), 2);
  EXPECT_EQ(plan.EpochOf(plan.LeaseId(4, 2)), 4);
}

// W workers each lease every W-th shard of an epoch's order: the shards come
// in a multiple of W, of sizes that differ by one record at most, so every
// worker gets the same number of records (give or take one per shard).
TEST(ShardPlan, ShardsComeInAMultipleOfTheWorkersAndBalanced) {
  ShardPlan plan(60000, 2048, 1, true, 2);
  EXPECT_EQ(plan.shards(), 30);  // ceil(60000 / 2048) = 30, already even
  for (int64_t s = 0; s < plan.shards(); ++s) EXPECT_EQ(plan.Positions(s).size(), 2000);
  ShardPlan three(60000, 2048, 1, true, 4);
  EXPECT_EQ(three.shards(), 32);
  int64_t total = 0, smallest = 1 << 30, largest = 0;
  for (int64_t s = 0; s < three.shards(); ++s) {
    const int64_t n = three.Positions(s).size();
    total += n, smallest = std::min(smallest, n), largest = std::max(largest, n);
    if (s > 0) {
      EXPECT_EQ(three.Positions(s).begin, three.Positions(s - 1).end);
    }
  }
  EXPECT_EQ(total, 60000);
  EXPECT_LE(largest - smallest, 1);
  ShardPlan tiny(3, 100, 1, true, 8);  // never more shards than records
  EXPECT_EQ(tiny.shards(), 3);
}

}  // namespace
}  // namespace psforge
