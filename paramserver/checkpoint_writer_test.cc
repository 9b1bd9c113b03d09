#include "paramserver/checkpoint_writer.h"

#include <gtest/gtest.h>

#include <chrono>

#include "common/clock.h"
#include "paramserver/faulty_store.h"
#include "paramserver/table_shard.h"

#include <map>
#include <random>
#include <set>

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

// A store whose writes of chosen checkpoints fail (a full disk, say).
class FailingStore final : public ParamStore {
 public:
  FailingStore(std::unique_ptr<ParamStore> inner, std::set<int64_t> failing)
      : inner_(std::move(inner)), failing_(std::move(failing)) {}
  Status Write(const ServerCheckpoint& c) override {
    if (failing_.count(c.id)) return ResourceExhausted("no space left (test)");
    return inner_->Write(c);
  }
  Result<ServerCheckpoint> Read(int64_t id) const override { return inner_->Read(id); }
  Result<int64_t> RowsBase(int64_t id) const override { return inner_->RowsBase(id); }
  Result<std::vector<int64_t>> List() const override { return inner_->List(); }
  Status Remove(int64_t id) override { return inner_->Remove(id); }
  Status RemoveNewerThan(int64_t id) override { return inner_->RemoveNewerThan(id); }
  const std::string& where() const override { return inner_->where(); }

 private:
  std::unique_ptr<ParamStore> inner_;
  std::set<int64_t> failing_;
};

TableOptions Table(const char* name, RowOptimizerKind kind, int64_t dim) {
  TableOptions o;
  o.name = name;
  o.rows = int64_t{1} << 30;
  o.dim = dim;
  o.optimizer = kind;
  o.seed = 11;
  return o;
}

// Every row any step touched, by table, and their weights now.
std::map<std::pair<std::size_t, uint64_t>, std::vector<float>> Weights(TableShard& shard,
                                                                        const std::set<std::pair<std::size_t, uint64_t>>& rows) {
  std::map<std::pair<std::size_t, uint64_t>, std::vector<float>> out;
  for (const auto& [t, row] : rows) {
    std::vector<float> w;
    EXPECT_TRUE(shard.Read(t, std::vector<uint64_t>{row}, &w).ok());
    out[{t, row}] = w;
  }
  return out;
}

// Incremental table checkpoints: each holds only the rows changed since the
// last one written (one whose write failed is not built on: its rows go
// into the next), pruning folds a pruned checkpoint's rows into the one
// built on it, and a restore (the chain laid together) gives back every
// row's weights and optimizer state bit for bit: the restored tables and
// the original ones take the same next update to the same values.
TEST(CheckpointWriter, IncrementalTableRowsRestoreBitIdenticalAfterPruningAndAFailedWrite) {
  const std::vector<TableOptions> tables{Table("adagrad", RowOptimizerKind::kAdaGrad, 3),
                                         Table("adam", RowOptimizerKind::kLazyAdam, 2)};
  auto shard = std::move(TableShard::Create(tables, 0, 1)).value();
  CheckpointWriter w(std::make_unique<FailingStore>(ParamStore::CreateInMemory(), std::set<int64_t>{3}), 2, 10s);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  std::set<std::pair<std::size_t, uint64_t>> touched;
  // One update of `n` random rows (of the first 40) of each table.
  auto step = [&](TableShard& s, std::mt19937& r, int n) {
    for (std::size_t t = 0; t < tables.size(); ++t) {
      std::set<uint64_t> rows;
      while (static_cast<int>(rows.size()) < n) rows.insert(r() % 40);
      std::vector<uint64_t> ids(rows.begin(), rows.end());
      std::vector<float> g(ids.size() * tables[t].dim);
      for (float& x : g) x = u(r);
      SparseSection section;
      section.table = static_cast<uint16_t>(t);
      section.rows = ids;
      section.values = std::as_bytes(std::span(g));
      s.ApplyNow(std::vector<SparseSection>{section});
      for (uint64_t row : ids) touched.insert({t, row});
    }
  };
  std::map<int64_t, std::map<std::pair<std::size_t, uint64_t>, std::vector<float>>> at;
  std::map<int64_t, std::set<std::pair<std::size_t, uint64_t>>> touched_at;
  std::map<int64_t, std::size_t> rows_written;
  for (int64_t id = 1; id <= 6; ++id) {
    for (int k = 0; k < 3; ++k) step(*shard, rng, 4);
    ServerCheckpoint* c = w.Begin();
    ASSERT_NE(c, nullptr);
    *c = Sample(id);
    shard->Snapshot(w.durable(), c);
    rows_written[id] = c->tables[0].rows.size() + c->tables[1].rows.size();
    EXPECT_EQ(c->rows_base, id == 4 ? 2 : id - 1) << "checkpoint 3 failed: 4 builds on 2";
    w.SetCommitted(id - 1);
    w.Commit();
    ASSERT_TRUE(w.Drain().ok());
    at[id] = Weights(*shard, touched);
    touched_at[id] = touched;
  }
  EXPECT_EQ(w.failures(), 1);
  EXPECT_LE(rows_written[2], 2u * 12) << "at most the rows of 3 steps of 4 rows in 2 tables: incremental";
  EXPECT_GT(rows_written[4], rows_written[2] / 2) << "checkpoint 4 also holds checkpoint 3's rows";
  auto ids = w.store().List();
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::vector<int64_t>{4, 5, 6})) << "committed 1, 2, 4, 5: the newest 2 kept";
  EXPECT_EQ(*w.store().RowsBase(4), 0) << "1 and 2 were folded into 4";

  // The original goes on one more step; so does the restore of each kept checkpoint, from there.
  for (int64_t back : {5, 4}) {
    auto restored = w.RestoreTo(back);
    ASSERT_TRUE(restored.ok()) << restored.status().ToString();
    EXPECT_EQ(restored->rows_base, 0);
    auto again = std::move(TableShard::Create(tables, 0, 1)).value();
    ASSERT_TRUE(again->Restore(back, restored->tables).ok());
    EXPECT_EQ(Weights(*again, touched_at[back]), at[back]) << "checkpoint " << back;
    // Update both the same way: state (accumulators, moments, lazy_adam's
    // counts) restored exactly gives the same weights.
    auto original = std::move(TableShard::Create(tables, 0, 1)).value();
    ASSERT_TRUE(original->Restore(back, restored->tables).ok());
    std::mt19937 r1(99), r2(99);
    step(*again, r1, 6);
    step(*original, r2, 6);
    EXPECT_EQ(Weights(*again, touched), Weights(*original, touched));
  }
}

// The other half of that check: the restored state is the checkpoint's,
// not a fresh row's (a restore that lost the optimizer state would update
// differently from the shard that trained on).
TEST(CheckpointWriter, RestoredTablesContinueExactlyAsTheOriginal) {
  const std::vector<TableOptions> tables{Table("adam", RowOptimizerKind::kLazyAdam, 2)};
  auto shard = std::move(TableShard::Create(tables, 0, 1)).value();
  CheckpointWriter w(ParamStore::CreateInMemory(), 3, 10s);
  std::vector<uint64_t> rows{1, 7};
  auto push = [&](TableShard& s, float g) {
    std::vector<float> v{g, -g, 2 * g, g};
    SparseSection section;
    section.rows = rows;
    section.values = std::as_bytes(std::span(v));
    s.ApplyNow(std::vector<SparseSection>{section});
  };
  for (float g : {0.5f, -0.25f, 1.0f}) push(*shard, g);
  ServerCheckpoint* c = w.Begin();
  *c = Sample(1);
  shard->Snapshot(w.durable(), c);
  w.Commit();
  ASSERT_TRUE(w.Drain().ok());
  auto restored = w.RestoreTo(1);
  ASSERT_TRUE(restored.ok());
  auto again = std::move(TableShard::Create(tables, 0, 1)).value();
  ASSERT_TRUE(again->Restore(1, restored->tables).ok());
  auto fresh = std::move(TableShard::Create(tables, 0, 1)).value();
  std::vector<float> a, b, f;
  ASSERT_TRUE(shard->Read(0, rows, &a).ok());
  ASSERT_TRUE(again->Read(0, rows, &b).ok());
  EXPECT_EQ(a, b);
  // Copy the weights alone into a fresh shard's rows? Its state would be
  // zero: after one more update it differs.
  push(*shard, 0.1f);
  push(*again, 0.1f);
  push(*fresh, 0.1f);
  a.clear(), b.clear();
  ASSERT_TRUE(shard->Read(0, rows, &a).ok());
  ASSERT_TRUE(again->Read(0, rows, &b).ok());
  ASSERT_TRUE(fresh->Read(0, rows, &f).ok());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, f);
  // A checkpoint's rows that do not fit the tables are refused by name.
  auto other = std::move(TableShard::Create({Table("adagrad", RowOptimizerKind::kAdaGrad, 2)}, 0, 1)).value();
  Status refused = other->Restore(1, restored->tables);
  EXPECT_EQ(refused.code(), StatusCode::kDataLoss);
  EXPECT_NE(refused.message().find("was the table's optimizer or dim changed"), std::string::npos) << refused.message();
}

}  // namespace
}  // namespace psforge
