// The memory budget of sparse tables: rows evicted to RocksDB and read back.
#include "paramserver/cold_rows.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>
#include <unordered_map>

#include "common/row_ids.h"
#include "common/row_map.h"
#include "paramserver/embedding_table.h"
#include "paramserver/table_shard.h"
#include "tests/support/subprocess.h"

namespace psforge {
namespace {
using testing::TempDir;

TableOptions Options(RowOptimizerKind kind, int64_t dim = 4) {
  TableOptions o;
  o.name = "ids";
  o.rows = int64_t{1} << 40;
  o.dim = dim;
  o.optimizer = kind;
  o.learning_rate = 0.05;
  o.seed = 5;
  return o;
}

std::unique_ptr<EmbeddingTable> Table(const TableOptions& o) { return std::move(EmbeddingTable::Create(o)).value(); }

std::vector<uint64_t> SortedUnique(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

TEST(RowMap, EraseKeepsEveryOtherRowFindableAgainstAReferenceMap) {
  RowMap map;
  std::unordered_map<uint64_t, uint32_t> reference;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200000; ++i) {
    const uint64_t row = rng() % 5000;  // few rows: long probe runs, many wrap-arounds
    if (rng() % 3 == 0) {
      EXPECT_EQ(map.Erase(row), reference.erase(row) == 1);
    } else {
      auto [value, created] = map.TryEmplace(row, static_cast<uint32_t>(i));
      auto [it, inserted] = reference.try_emplace(row, static_cast<uint32_t>(i));
      ASSERT_EQ(created, inserted);
      ASSERT_EQ(value, it->second);
    }
  }
  ASSERT_EQ(map.size(), reference.size());
  for (uint64_t row = 0; row < 5000; ++row) {
    const uint32_t* v = map.Find(row);
    auto it = reference.find(row);
    ASSERT_EQ(v != nullptr, it != reference.end()) << row;
    if (v) {
      EXPECT_EQ(*v, it->second);
    }
  }
}

// The same random pulls and pushes on a table with everything in memory
// and on one holding at most 200 of its ~3000 rows: every value read is
// bit-identical, for each row optimizer. A third table gets the same pushes
// without the pulls (a push of the rows just read takes their slots from
// the read; eviction in between makes it look them up): the same records.
TEST(ColdRows, EvictionAndReadBackKeepEveryValueBitIdentical) {
  for (RowOptimizerKind kind : {RowOptimizerKind::kSgd, RowOptimizerKind::kAdaGrad, RowOptimizerKind::kLazyAdam}) {
    TempDir dir;
    auto full = Table(Options(kind));
    auto budget = Table(Options(kind));
    auto unread = Table(Options(kind));
    auto cold = std::move(RocksColdRows::Create(dir.path(), {budget->record_floats()})).value();
    budget->Spill(cold.get(), 0, 200);
    std::mt19937_64 rng(static_cast<uint64_t>(kind) + 1);
    std::vector<float> a, b, g;
    for (int step = 0; step < 300; ++step) {
      std::vector<uint64_t> rows;
      for (int i = 0; i < 60; ++i) rows.push_back(rng() % 3000 * 7919);
      rows = SortedUnique(rows);
      a.assign(rows.size() * 4, 0);
      b.assign(rows.size() * 4, 0);
      ASSERT_TRUE(full->Read(rows, a).ok());
      ASSERT_TRUE(budget->Read(rows, b).ok());
      ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "step " << step;
      g.resize(rows.size() * 4);
      for (float& x : g) x = static_cast<float>(static_cast<int64_t>(rng() % 2001) - 1000) * 1e-3f;
      ASSERT_TRUE(full->Apply(rows, g, 0.5f).ok());
      ASSERT_TRUE(budget->Apply(rows, g, 0.5f).ok());
      ASSERT_TRUE(unread->Apply(rows, g, 0.5f).ok());
      ASSERT_LE(budget->resident_rows(), 200);
    }
    const SpillStats& s = budget->spill_stats();
    EXPECT_GT(s.evicted, 1000);
    EXPECT_GT(s.written, 0);
    EXPECT_GT(s.read_back, 1000);
    EXPECT_EQ(s.write_errors, 0);
    // Checkpoints see the same rows and records, whether in memory or evicted.
    const std::vector<uint64_t> changed = full->TakeChanged();
    ASSERT_EQ(budget->TakeChanged(), changed);
    std::vector<float> ra, rb;
    std::vector<uint32_t> sa, sb;
    ASSERT_TRUE(full->Export(changed, &ra, &sa).ok());
    ASSERT_TRUE(budget->Export(changed, &rb, &sb).ok());
    EXPECT_EQ(sa, sb);
    ASSERT_EQ(ra.size(), rb.size());
    EXPECT_EQ(std::memcmp(ra.data(), rb.data(), ra.size() * sizeof(float)), 0);
    EXPECT_LE(budget->resident_rows(), 200) << "a checkpoint brought evicted rows back";
    ASSERT_EQ(unread->TakeChanged(), changed);
    std::vector<float> ru;
    std::vector<uint32_t> su;
    ASSERT_TRUE(unread->Export(changed, &ru, &su).ok());
    EXPECT_EQ(sa, su);
    ASSERT_EQ(ra.size(), ru.size());
    EXPECT_EQ(std::memcmp(ra.data(), ru.data(), ra.size() * sizeof(float)), 0) << "pushes after pulls of their rows";
  }
}

TEST(ColdRows, AnImportLargerThanTheBudgetGoesThroughMemoryAPartAtATime) {
  TempDir dir;
  auto source = Table(Options(RowOptimizerKind::kLazyAdam));
  std::vector<uint64_t> rows;
  for (uint64_t r = 0; r < 2000; ++r) rows.push_back(r * 31);
  std::vector<float> g(rows.size() * 4, 0.25f);
  ASSERT_TRUE(source->Apply(rows, g).ok());
  std::vector<float> records;
  std::vector<uint32_t> steps;
  ASSERT_TRUE(source->Export(rows, &records, &steps).ok());

  auto restored = Table(Options(RowOptimizerKind::kLazyAdam));
  auto cold = std::move(RocksColdRows::Create(dir.path(), {restored->record_floats()})).value();
  restored->Spill(cold.get(), 0, 100);
  ASSERT_TRUE(restored->Import(rows, records, steps).ok());
  EXPECT_LE(restored->resident_rows(), 100);
  std::vector<float> back;
  std::vector<uint32_t> back_steps;
  ASSERT_TRUE(restored->Export(rows, &back, &back_steps).ok());
  EXPECT_EQ(back, records);
  EXPECT_EQ(back_steps, steps);
}

// A store whose writes or reads fail on demand.
class FailingColdRows : public ColdRows {
 public:
  explicit FailingColdRows(ColdRows* inner) : inner_(inner) {}
  Status Put(uint16_t t, std::span<const uint64_t> rows, std::span<const float> records,
             std::span<const uint32_t> steps) override {
    return fail_put ? Unavailable("disk full") : inner_->Put(t, rows, records, steps);
  }
  Status Get(uint16_t t, std::span<const uint64_t> rows, std::span<float> records, std::span<uint32_t> steps,
             std::vector<uint8_t>* found) override {
    return fail_get ? Unavailable("I/O error") : inner_->Get(t, rows, records, steps, found);
  }
  const std::string& where() const override { return inner_->where(); }
  bool fail_put = false, fail_get = false;

 private:
  ColdRows* inner_;
};

TEST(ColdRows, AFailedWriteKeepsTheRowsInMemoryAndAFailedReadChangesNothing) {
  TempDir dir;
  auto inner = std::move(RocksColdRows::Create(dir.path(), {5})).value();
  FailingColdRows cold(inner.get());
  auto full = Table(Options(RowOptimizerKind::kAdaGrad));
  auto budget = Table(Options(RowOptimizerKind::kAdaGrad));
  budget->Spill(&cold, 0, 50);
  std::vector<uint64_t> rows(120);
  std::iota(rows.begin(), rows.end(), 0);
  std::vector<float> g(rows.size() * 4, 0.5f);
  cold.fail_put = true;
  ASSERT_TRUE(budget->Apply(rows, g).ok());
  ASSERT_TRUE(full->Apply(rows, g).ok());
  EXPECT_EQ(budget->resident_rows(), 120) << "rows that could not be written were dropped";
  EXPECT_GE(budget->spill_stats().write_errors, 1);
  cold.fail_put = false;
  ASSERT_TRUE(budget->Apply(std::vector<uint64_t>{0}, std::vector<float>(4, 0.1f)).ok());
  ASSERT_TRUE(full->Apply(std::vector<uint64_t>{0}, std::vector<float>(4, 0.1f)).ok());
  EXPECT_LE(budget->resident_rows(), 50);

  // A read that fails: an error naming the store, and no row changes.
  cold.fail_get = true;
  std::vector<float> out(rows.size() * 4);
  Status refused = budget->Apply(rows, g);
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.message().find(dir.path()), std::string::npos) << refused.message();
  EXPECT_FALSE(budget->Read(rows, out).ok());
  cold.fail_get = false;
  std::vector<float> a(out.size()), b(out.size());
  ASSERT_TRUE(full->Read(rows, a).ok());
  ASSERT_TRUE(budget->Read(rows, b).ok());
  EXPECT_EQ(a, b);
}

TEST(ColdRows, TheStoreIsRemovedWithItsTableShard) {
  TempDir dir;
  TableOptions o = Options(RowOptimizerKind::kAdaGrad, 16);
  TableMemory memory{64 << 20, dir.File("spill")};
  {
    auto shard = std::move(TableShard::Create({o}, 0, 2, memory)).value();
    EXPECT_FALSE(std::filesystem::is_empty(dir.File("spill")));
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.File("spill")));
}

TEST(ColdRows, ABudgetTooSmallOrAnUnwritableFolderIsRefusedUpFront) {
  TempDir dir;
  TableOptions o = Options(RowOptimizerKind::kAdaGrad, 64);
  auto small = TableShard::Create({o}, 0, 1, TableMemory{2 << 20, dir.path()});
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("cluster.memory_budget_mb: 2 MiB"), std::string::npos)
      << small.status().message();
  EXPECT_NE(small.status().message().find("a budget of at least"), std::string::npos);

  if (::geteuid() != 0) {  // root writes anywhere
    ASSERT_EQ(::chmod(dir.path().c_str(), 0500), 0);
    auto unwritable = TableShard::Create({o}, 0, 1, TableMemory{256 << 20, dir.File("spill")});
    ::chmod(dir.path().c_str(), 0700);
    ASSERT_FALSE(unwritable.ok());
    EXPECT_NE(unwritable.status().message().find(dir.File("spill")), std::string::npos);
  }
  auto file = dir.File("a-file");
  std::FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fclose(f);
  auto not_a_folder = TableShard::Create({o}, 0, 1, TableMemory{256 << 20, file});
  ASSERT_FALSE(not_a_folder.ok());
  EXPECT_NE(not_a_folder.status().message().find(file), std::string::npos) << not_a_folder.status().message();
}

// A table shard with a budget: the server-side path (checked rows, BSP
// sums, reads), against the same shard without one.
TEST(ColdRows, ATableShardWithinItsBudgetServesTheSameRowsAsOneWithout) {
  TempDir dir;
  TableOptions o = Options(RowOptimizerKind::kAdaGrad, 8);
  o.rows = 1 << 22;
  const int64_t budget = EmbeddingTable::MemoryFor(9, TableShard::kMinResidentRows);
  auto with = std::move(TableShard::Create({o}, 1, 2, TableMemory{budget + (1 << 16), dir.path()})).value();
  auto without = std::move(TableShard::Create({o}, 1, 2)).value();
  std::mt19937_64 rng(9);
  std::vector<float> a, b;
  for (int step = 0; step < 40; ++step) {
    std::vector<uint64_t> rows;
    for (int i = 0; i < 20000; ++i) {
      const uint64_t r = rng() % (1 << 22);
      if (ServerOfRow(r, 2) == 1) rows.push_back(r);
    }
    rows = SortedUnique(rows);
    a.clear(), b.clear();
    ASSERT_TRUE(with->Read(0, rows, &a).ok());
    ASSERT_TRUE(without->Read(0, rows, &b).ok());
    ASSERT_EQ(a, b) << "step " << step;
    std::vector<float> g(rows.size() * 8);
    for (float& x : g) x = static_cast<float>(rng() % 100) * 1e-3f;
    std::vector<std::byte> values(g.size() * sizeof(float));
    std::memcpy(values.data(), g.data(), values.size());
    SparseSection s{0, rows, values};
    with->Accumulate({&s, 1}, 2.0f);
    without->Accumulate({&s, 1}, 2.0f);
    with->ApplyAccumulated(0.5f);
    without->ApplyAccumulated(0.5f);
    EXPECT_LE(with->resident_rows(), EmbeddingTable::RowsWithin(9, budget + (1 << 16)));
  }
  EXPECT_GT(with->spill_stats().read_back, 0);
  EXPECT_GT(with->spill_disk_bytes(), 0);
}

}  // namespace
}  // namespace psforge
