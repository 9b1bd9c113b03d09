#include "paramserver/param_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "tests/support/subprocess.h"

namespace psforge {
namespace {

// More weights than one chunk holds (2^20 floats), so chunking is exercised.
ServerCheckpoint Sample(int64_t id, int64_t size = (int64_t{1} << 20) + 1234) {
  ServerCheckpoint c;
  c.id = id;
  c.version = 100 * id;
  c.range = {5000, 5000 + size};
  c.optimizer_steps = 99 * id;
  std::mt19937 rng(static_cast<uint32_t>(id));
  std::uniform_real_distribution<float> u(-1, 1);
  c.weights.resize(size);
  for (float& w : c.weights) w = u(rng);
  c.optimizer_state.resize(2 * size);
  for (float& s : c.optimizer_state) s = u(rng);
  c.positions = {{0, 4097, 640}, {1, 4100, 0}, {2, 0, 0}};
  return c;
}

void ExpectSame(const ServerCheckpoint& a, const ServerCheckpoint& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.range.begin, b.range.begin);
  EXPECT_EQ(a.range.end, b.range.end);
  EXPECT_EQ(a.optimizer_steps, b.optimizer_steps);
  EXPECT_EQ(a.weights, b.weights);
  EXPECT_EQ(a.optimizer_state, b.optimizer_state);
  EXPECT_EQ(a.positions, b.positions);
}

class ParamStoreTest : public ::testing::TestWithParam<bool> {
 protected:
  std::unique_ptr<ParamStore> Open() {
    if (!GetParam()) return ParamStore::CreateInMemory();
    auto store = ParamStore::OpenRocksDb(dir_.File("store"));
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(*store) : nullptr;
  }
  testing::TempDir dir_;
};

TEST_P(ParamStoreTest, WritesReadsListsAndRemoves) {
  auto store = Open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->Read(1).status().code(), StatusCode::kNotFound);
  for (int64_t id : {1, 2, 3}) ASSERT_TRUE(store->Write(Sample(id)).ok());
  EXPECT_EQ(*store->List(), (std::vector<int64_t>{1, 2, 3}));
  for (int64_t id : {1, 2, 3}) {
    auto c = store->Read(id);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ExpectSame(*c, Sample(id));
  }
  ASSERT_TRUE(store->Remove(1).ok());
  ASSERT_TRUE(store->Remove(7).ok());  // absent: fine
  EXPECT_EQ(*store->List(), (std::vector<int64_t>{2, 3}));
  // Rewriting an id with fewer chunks leaves nothing of the old one behind.
  ServerCheckpoint small = Sample(2, 10);
  ASSERT_TRUE(store->Write(small).ok());
  auto c = store->Read(2);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ExpectSame(*c, small);
  // Going back to checkpoint 2 forgets every later one.
  ASSERT_TRUE(store->Write(Sample(5)).ok());
  ASSERT_TRUE(store->Write(Sample(6)).ok());
  ASSERT_TRUE(store->RemoveNewerThan(2).ok());
  EXPECT_EQ(*store->List(), (std::vector<int64_t>{2}));
  ASSERT_TRUE(store->Write(Sample(3)).ok());
  EXPECT_EQ(*store->List(), (std::vector<int64_t>{2, 3}));
}

INSTANTIATE_TEST_SUITE_P(Stores, ParamStoreTest, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "RocksDb" : "InMemory"; });

// Sparse table rows round-trip, more than one chunk (4 MiB) of them.
TEST_P(ParamStoreTest, TableRowsRoundTrip) {
  auto store = Open();
  ASSERT_TRUE(store);
  ServerCheckpoint c = Sample(7, 100);
  c.rows_base = 3;
  TableRowsCheckpoint a;
  a.table = 0;
  a.record_floats = 3;
  for (uint64_t r = 0; r < 600000; ++r) a.rows.push_back(r * 5 + 1);
  a.records.resize(a.rows.size() * 3);
  for (std::size_t i = 0; i < a.records.size(); ++i) a.records[i] = static_cast<float>(i) * 0.5f;
  a.steps.assign(a.rows.size(), 4);
  TableRowsCheckpoint b;
  b.table = 2;
  b.record_floats = 1;
  c.tables = {a, b};  // b: a table none of whose rows changed
  ASSERT_TRUE(store->Write(c).ok());
  auto back = store->Read(7);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSame(c, *back);
  EXPECT_EQ(back->rows_base, 3);
  EXPECT_EQ(back->tables, c.tables);
  EXPECT_EQ(*store->RowsBase(7), 3);
  ASSERT_TRUE(store->Write(Sample(8, 100)).ok());
  EXPECT_EQ(*store->RowsBase(8), -1) << "a dense model's checkpoint has no rows";
  EXPECT_EQ(store->Read(8)->rows_base, -1);
}

TEST(RocksDbParamStore, SurvivesReopening) {
  testing::TempDir dir;
  {
    auto store = ParamStore::OpenRocksDb(dir.File("store"));
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Write(Sample(4)).ok());
  }
  auto store = ParamStore::OpenRocksDb(dir.File("store"));
  ASSERT_TRUE(store.ok());
  auto c = (*store)->Read(4);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ExpectSame(*c, Sample(4));
}

// A write killed midway leaves a partial table file (<store>.incoming.sst,
// never ingested): the store still opens, the next write replaces it, and
// the checkpoints written before are intact.
TEST(RocksDbParamStore, APartialTableFileOfAKilledWriteIsReplaced) {
  testing::TempDir dir;
  const std::string path = dir.File("store");
  {
    auto store = ParamStore::OpenRocksDb(path);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Write(Sample(1, 1000)).ok());
  }
  std::ofstream(path + ".incoming.sst", std::ios::binary) << std::string(5000, '\x7f');
  auto store = ParamStore::OpenRocksDb(path);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  ASSERT_TRUE((*store)->Write(Sample(2, 1000)).ok());
  for (int64_t id : {1, 2}) {
    auto c = (*store)->Read(id);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ExpectSame(*c, Sample(id, 1000));
  }
  EXPECT_EQ(*(*store)->List(), (std::vector<int64_t>{1, 2}));
}

// Damage on disk is found and named, never loaded: bytes flipped in the
// files that hold the values, or the files cut short.
TEST(RocksDbParamStore, DamagedFilesAreReportedNotLoaded) {
  for (bool truncate : {false, true}) {
    SCOPED_TRACE(truncate ? "truncated" : "flipped");
    testing::TempDir dir;
    const std::string path = dir.File("store");
    {
      auto store = ParamStore::OpenRocksDb(path);
      ASSERT_TRUE(store.ok());
      ASSERT_TRUE((*store)->Write(Sample(5)).ok());
    }
    int damaged = 0;
    for (const auto& f : std::filesystem::directory_iterator(path)) {
      const std::string ext = f.path().extension();
      if (ext != ".blob" && ext != ".sst" && ext != ".log") continue;
      const auto size = std::filesystem::file_size(f.path());
      if (size < 4096) continue;
      if (truncate) {
        std::filesystem::resize_file(f.path(), size / 2);
      } else {
        std::fstream file(f.path(), std::ios::in | std::ios::out | std::ios::binary);
        for (std::uintmax_t off = size / 3; off < size / 3 + 64; ++off) {
          file.seekp(static_cast<std::streamoff>(off));
          file.put('\x5a');
        }
      }
      ++damaged;
    }
    ASSERT_GT(damaged, 0) << "no value file found to damage";
    auto store = ParamStore::OpenRocksDb(path);
    if (!store.ok()) {  // refusing to open a damaged store is a clear report too
      EXPECT_EQ(store.status().code(), StatusCode::kDataLoss) << store.status().ToString();
      EXPECT_NE(store.status().message().find(path), std::string::npos);
      continue;
    }
    auto c = (*store)->Read(5);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kDataLoss) << "[" << c.status().ToString() << "]";
    EXPECT_NE(c.status().message().find("checkpoint 5"), std::string::npos) << c.status().ToString();
  }
}

}  // namespace
}  // namespace psforge
