#include "paramserver/checkpoint_writer.h"

#include <gtest/gtest.h>

#include <chrono>

#include "common/clock.h"
#include "paramserver/faulty_store.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;

ServerCheckpoint Sample(int64_t id) {
  ServerCheckpoint c;
  c.id = id;
  c.version = id;
  c.range = {0, 4};
  c.weights = {1, 2, 3, 4};
  return c;
}

void Write(CheckpointWriter& w, int64_t id) {
  ServerCheckpoint* c = w.Begin();
  ASSERT_NE(c, nullptr);
  *c = Sample(id);
  w.Commit();
}

FaultOptions Stall(double ms) {
  FaultOptions f;
  f.write_stall_ms = ms;
  return f;
}

TEST(CheckpointWriter, WritesInTheBackgroundAndRestores) {
  CheckpointWriter w(ParamStore::CreateInMemory(), 3, 10s);
  Write(w, 100);
  ASSERT_TRUE(w.Drain().ok());
  EXPECT_FALSE(w.writing());
  EXPECT_EQ(w.durable(), 100);
  EXPECT_EQ(w.written(), 1);
  auto back = w.RestoreTo(100);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->weights, Sample(100).weights);
  EXPECT_EQ(w.RestoreTo(200).status().code(), StatusCode::kNotFound);
}

// A write that does not end (a hung disk) holds nobody past the deadline:
// Drain and RestoreTo say which write, where, and for how long; the writer
// is destroyed while the write still stalls.
TEST(CheckpointWriter, AHungWriteIsADeadlineExceededNamingItNotAHang) {
  const auto start = Clock::now();
  {
    CheckpointWriter w(WithFaults(ParamStore::CreateInMemory(), Stall(60'000)), 3, 200ms);
    Write(w, 300);
    EXPECT_EQ(w.Begin(), nullptr) << "a second write while the first is pending";
    EXPECT_TRUE(w.writing());
    Status drained = w.Drain();
    EXPECT_EQ(drained.code(), StatusCode::kDeadlineExceeded);
    for (const char* part : {"checkpoint at step 300", "memory", "has not ended after", "write_timeout_s"})
      EXPECT_NE(drained.message().find(part), std::string::npos) << part << " not in: " << drained.message();
    auto restored = w.RestoreTo(0);
    EXPECT_EQ(restored.status().code(), StatusCode::kDeadlineExceeded);
    EXPECT_EQ(w.durable(), 0);
  }
  EXPECT_LT(SecondsSince(start), 30) << "something waited for the stalled write";
}

TEST(CheckpointWriter, ASlowWriteWithinTheDeadlineIsWaitedFor) {
  CheckpointWriter w(WithFaults(ParamStore::CreateInMemory(), Stall(300)), 3, 30s);
  Write(w, 7);
  EXPECT_EQ(w.Drain(1ms).code(), StatusCode::kDeadlineExceeded);  // a shorter limit than the write
  ASSERT_TRUE(w.Drain().ok());
  EXPECT_EQ(w.durable(), 7);
  EXPECT_EQ(w.failures(), 0);
}

TEST(CheckpointWriter, PrunesCommittedCheckpointsBeyondKeep) {
  CheckpointWriter w(ParamStore::CreateInMemory(), 2, 10s);
  for (int64_t id : {1, 2, 3, 4}) {
    w.SetCommitted(id - 1);
    Write(w, id);
    ASSERT_TRUE(w.Drain().ok());
  }
  auto ids = w.store().List();
  ASSERT_TRUE(ids.ok());
  // Committed: 1, 2, 3 (keep the newest 2 of them); 4 is newer than the commit.
  EXPECT_EQ(*ids, (std::vector<int64_t>{2, 3, 4}));
}

}  // namespace
}  // namespace psforge
