#include "paramserver/table_shard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/row_ids.h"

namespace psforge {
namespace {

TableOptions Sgd(const std::string& name, int64_t dim) {
  TableOptions o;
  o.name = name;
  o.rows = 1 << 20;
  o.dim = dim;
  o.optimizer = RowOptimizerKind::kSgd;
  o.learning_rate = 0.5;
  o.seed = 3;
  return o;
}

// The first `n` rows (from `from` on) that server `index` of 2 holds.
std::vector<uint64_t> RowsOf(int64_t index, std::size_t n, uint64_t from = 0) {
  std::vector<uint64_t> rows;
  for (uint64_t r = from; rows.size() < n; ++r)
    if (ServerOfRow(r, 2) == index) rows.push_back(r);
  return rows;
}

struct Section {
  SparseSection s;
  std::vector<float> values;
  Section(uint16_t table, std::vector<uint64_t> rows, std::vector<float> v) : values(std::move(v)) {
    s.table = table;
    s.rows = std::move(rows);
    s.values = std::as_bytes(std::span(values));
  }
  Section(const Section&) = delete;  // s.values points into this one's values
};

TEST(TableShard, ABspStepAppliesTheRecordWeightedMeanOfEachRowOnce) {
  const std::vector<TableOptions> tables{Sgd("a", 2), Sgd("b", 1)};
  auto shard = std::move(TableShard::Create(tables, 0, 2)).value();
  const auto rows = RowsOf(0, 3);
  // Worker 0 (3 records) touches rows 0 and 1; worker 1 (1 record) rows 1 and 2.
  Section w0(0, {rows[0], rows[1]}, {1, 2, 3, 4}), w1(0, {rows[1], rows[2]}, {5, 6, 7, 8});
  Section other(1, {rows[2]}, {2});
  std::vector<float> before;
  ASSERT_TRUE(shard->Read(0, rows, &before).ok());
  ASSERT_TRUE(shard->Check(std::vector<SparseSection>{w0.s}).ok());
  shard->Accumulate(std::vector<SparseSection>{w0.s}, 3.0f);
  shard->Accumulate(std::vector<SparseSection>{w1.s, other.s}, 1.0f);
  shard->ApplyAccumulated(1.0f / 4);
  std::vector<float> after;
  ASSERT_TRUE(shard->Read(0, rows, &after).ok());
  const float mean[6] = {3 * 1 / 4.f, 3 * 2 / 4.f, (3 * 3 + 5) / 4.f, (3 * 4 + 6) / 4.f, 7 / 4.f, 8 / 4.f};
  for (int k = 0; k < 6; ++k) EXPECT_NEAR(after[k], before[k] - 0.5f * mean[k], 1e-6) << k;
  EXPECT_EQ(shard->table(0).resident_rows(), 3);
  // The next step starts from an empty sum: applying it again changes nothing.
  shard->ApplyAccumulated(1.0f);
  std::vector<float> again;
  ASSERT_TRUE(shard->Read(0, rows, &again).ok());
  EXPECT_EQ(again, after);
}

TEST(TableShard, SspAppliesEachPushOnItsOwnFromUnalignedBytes) {
  auto shard = std::move(TableShard::Create({Sgd("a", 2)}, 1, 2)).value();
  const auto rows = RowsOf(1, 1);
  std::vector<float> g{0.5f, -1.0f};
  std::vector<std::byte> unaligned(1 + sizeof(float) * 2);
  std::memcpy(unaligned.data() + 1, g.data(), sizeof(float) * 2);
  SparseSection s;
  s.table = 0;
  s.rows = rows;
  s.values = std::span(unaligned).subspan(1);
  std::vector<float> before, after;
  ASSERT_TRUE(shard->Read(0, rows, &before).ok());
  ASSERT_TRUE(shard->Check(std::vector<SparseSection>{s}).ok());
  shard->ApplyNow(std::vector<SparseSection>{s});
  ASSERT_TRUE(shard->Read(0, rows, &after).ok());
  EXPECT_NEAR(after[0], before[0] - 0.25f, 1e-6);
  EXPECT_NEAR(after[1], before[1] + 0.5f, 1e-6);
}

TEST(TableShard, RowsOfAnotherServerOrTableAndBadValuesAreRefusedByName) {
  auto shard = std::move(TableShard::Create({Sgd("clicks", 1)}, 0, 2)).value();
  const uint64_t theirs = RowsOf(1, 1)[0], ours = RowsOf(0, 1)[0];
  auto refusal = [&](const Section& s) { return shard->Check(std::vector<SparseSection>{s.s}).message(); };
  EXPECT_NE(refusal(Section(0, {theirs}, {1})).find("belongs to server 1, not to server 0"), std::string::npos);
  EXPECT_NE(refusal(Section(1, {ours}, {1})).find("the model has 1 sparse tables"), std::string::npos);
  EXPECT_NE(refusal(Section(0, {uint64_t{1} << 21}, {1})).find("outside table 'clicks'"), std::string::npos);
  EXPECT_NE(refusal(Section(0, {ours}, {NAN})).find("non-finite gradient for row"), std::string::npos);
  EXPECT_NE(refusal(Section(0, {ours}, {1, 2})).find("8 bytes of gradients for 1 rows of 1"), std::string::npos);
  std::vector<float> out;
  EXPECT_NE(shard->Read(0, std::vector<uint64_t>{theirs}, &out).message().find("belongs to server 1"),
            std::string::npos);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(shard->table(0).resident_rows(), 0) << "a refused pull creates no row";
}

}  // namespace
}  // namespace psforge
