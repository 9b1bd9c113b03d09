#include "paramserver/embedding_table.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

namespace psforge {
namespace {

TableOptions Options(RowOptimizerKind kind, int64_t dim = 2) {
  TableOptions o;
  o.name = "ids";
  o.rows = int64_t{1} << 40;
  o.dim = dim;
  o.optimizer = kind;
  o.learning_rate = 0.1;
  o.epsilon = 1e-8;
  o.seed = 11;
  return o;
}

std::unique_ptr<EmbeddingTable> Table(const TableOptions& o) { return std::move(EmbeddingTable::Create(o)).value(); }

TEST(EmbeddingTable, ARowIsCreatedOnFirstTouchWithTheInitialiserOfItsRowId) {
  TableOptions o = Options(RowOptimizerKind::kSgd, 8);
  auto a = Table(o), b = Table(o);
  const uint64_t far = (uint64_t{1} << 40) - 1;
  std::vector<float> first(16), second(16);
  EXPECT_TRUE(a->Read(std::vector<uint64_t>{3, far}, first).ok());
  EXPECT_TRUE(b->Read(std::vector<uint64_t>{far}, std::span(second).subspan(8)).ok());
  EXPECT_TRUE(b->Read(std::vector<uint64_t>{3}, std::span(second).first(8)).ok());
  EXPECT_EQ(first, second) << "the same row, whichever server and order creates it";
  EXPECT_EQ(a->resident_rows(), 2);
  for (float v : first) EXPECT_LE(std::abs(v), o.init_scale);
  EXPECT_NE(std::vector<float>(first.begin(), first.begin() + 8), std::vector<float>(first.begin() + 8, first.end()));
  o.seed = 12;
  std::vector<float> reseeded(8);
  EXPECT_TRUE(Table(o)->Read(std::vector<uint64_t>{3}, reseeded).ok());
  EXPECT_NE(reseeded, std::vector<float>(first.begin(), first.begin() + 8));
  EXPECT_TRUE(a->TakeChanged().empty()) << "reading creates rows but changes none";
}

TEST(EmbeddingTable, NormalInitialisationHasTheAskedSpread) {
  TableOptions o = Options(RowOptimizerKind::kSgd, 64);
  o.init = RowInit::kNormal;
  o.init_scale = 0.5;
  auto t = Table(o);
  std::vector<uint64_t> rows(500);
  std::iota(rows.begin(), rows.end(), 1000);
  std::vector<float> w(rows.size() * 64);
  EXPECT_TRUE(t->Read(rows, w).ok());
  double sum = 0, squares = 0;
  for (float v : w) sum += v, squares += double{v} * v;
  const double mean = sum / w.size(), sd = std::sqrt(squares / w.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(sd, 0.5, 0.01);
}

TEST(EmbeddingTable, SgdAdaGradAndLazyAdamMatchHandComputedSteps) {
  const std::vector<uint64_t> row{7};
  const std::vector<float> g{0.5f, -1.0f};
  for (RowOptimizerKind kind : {RowOptimizerKind::kSgd, RowOptimizerKind::kAdaGrad, RowOptimizerKind::kLazyAdam}) {
    auto t = Table(Options(kind));
    std::vector<double> w(2);
    std::vector<float> start(2), now(2);
    EXPECT_TRUE(t->Read(row, start).ok());
    w = {start[0], start[1]};
    double acc = 0, m[2] = {0, 0}, v[2] = {0, 0};
    for (int step = 1; step <= 3; ++step) {
      ASSERT_TRUE(t->Apply(row, g, /*grad_scale=*/0.5f).ok());
      const double gs[2] = {0.25, -0.5};
      if (kind == RowOptimizerKind::kSgd) {
        for (int j = 0; j < 2; ++j) w[j] -= 0.1 * gs[j];
      } else if (kind == RowOptimizerKind::kAdaGrad) {
        acc += (0.25 * 0.25 + 0.5 * 0.5) / 2;  // one accumulator: the mean square over the row
        for (int j = 0; j < 2; ++j) w[j] -= 0.1 * gs[j] / (std::sqrt(acc) + 1e-8);
      } else {
        for (int j = 0; j < 2; ++j) {
          m[j] = 0.9 * m[j] + 0.1 * gs[j];
          v[j] = 0.999 * v[j] + 0.001 * gs[j] * gs[j];
          w[j] -= 0.1 * (m[j] / (1 - std::pow(0.9, step))) / (std::sqrt(v[j] / (1 - std::pow(0.999, step))) + 1e-8);
        }
      }
      EXPECT_TRUE(t->Read(row, now).ok());
      for (int j = 0; j < 2; ++j) EXPECT_NEAR(now[j], w[j], 1e-6) << static_cast<int>(kind) << " step " << step;
    }
  }
}

TEST(EmbeddingTable, LazyAdamCountsStepsPerRowOnlyWhenTouched) {
  auto t = Table(Options(RowOptimizerKind::kLazyAdam));
  const std::vector<float> g{1.0f, 1.0f};
  std::vector<float> a0(2), b0(2), a1(2), b1(2);
  EXPECT_TRUE(t->Read(std::vector<uint64_t>{1}, a0).ok());
  EXPECT_TRUE(t->Read(std::vector<uint64_t>{2}, b0).ok());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(t->Apply(std::vector<uint64_t>{1}, g).ok());
  ASSERT_TRUE(t->Apply(std::vector<uint64_t>{2}, g).ok());
  EXPECT_TRUE(t->Read(std::vector<uint64_t>{2}, b1).ok());
  // Row 2's first update is a first Adam step (bias-corrected: exactly lr
  // for a constant gradient), though row 1 has had five.
  EXPECT_NEAR(b0[0] - b1[0], 0.1, 1e-5);
}

TEST(EmbeddingTable, ABadGradientChangesNoRow) {
  auto t = Table(Options(RowOptimizerKind::kAdaGrad));
  std::vector<float> before(4), after(4);
  const std::vector<uint64_t> rows{1, 9};
  EXPECT_TRUE(t->Read(rows, before).ok());
  Status s = t->Apply(rows, std::vector<float>{0.1f, 0.2f, NAN, 0.3f});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("non-finite gradient for row 9"), std::string::npos) << s.message();
  EXPECT_NE(t->Apply(rows, std::vector<float>{0.1f}).message().find("1 gradient values for 2 rows"), std::string::npos);
  EXPECT_TRUE(t->Read(rows, after).ok());
  EXPECT_EQ(before, after);
  EXPECT_TRUE(t->TakeChanged().empty());
}

TEST(EmbeddingTable, ChangedRowsAreTakenOnceForTheNextIncrementalCheckpoint) {
  auto t = Table(Options(RowOptimizerKind::kSgd));
  const std::vector<float> g(6, 0.1f);
  ASSERT_TRUE(t->Apply(std::vector<uint64_t>{50, 3, 9000}, g).ok());
  ASSERT_TRUE(t->Apply(std::vector<uint64_t>{3}, std::vector<float>(2, 0.1f)).ok());
  EXPECT_EQ(t->TakeChanged(), (std::vector<uint64_t>{3, 50, 9000}));
  EXPECT_TRUE(t->TakeChanged().empty());
  ASSERT_TRUE(t->Apply(std::vector<uint64_t>{50}, std::vector<float>(2, 0.1f)).ok());
  EXPECT_EQ(t->TakeChanged(), (std::vector<uint64_t>{50}));
}

TEST(EmbeddingTable, ManyRowsKeepTheirValuesAcrossBlocks) {
  auto t = Table(Options(RowOptimizerKind::kSgd, 4));
  std::vector<uint64_t> rows(10000);
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = i * 104729;
  std::vector<float> g(rows.size() * 4);
  for (std::size_t k = 0; k < g.size(); ++k) g[k] = static_cast<float>(k % 13);
  std::vector<float> before(g.size()), after(g.size());
  EXPECT_TRUE(t->Read(rows, before).ok());
  ASSERT_TRUE(t->Apply(rows, g).ok());
  EXPECT_TRUE(t->Read(rows, after).ok());
  for (std::size_t k = 0; k < g.size(); ++k) ASSERT_NEAR(after[k], before[k] - 0.1f * g[k], 1e-5) << k;
  EXPECT_EQ(t->resident_rows(), 10000);
}

TEST(EmbeddingTable, BadOptionsAreNamed) {
  TableOptions o = Options(RowOptimizerKind::kSgd);
  o.rows = (int64_t{1} << 40) + 1;
  EXPECT_NE(EmbeddingTable::Create(o).status().message().find("table 'ids': rows"), std::string::npos);
  o = Options(RowOptimizerKind::kSgd);
  o.dim = 0;
  EXPECT_NE(EmbeddingTable::Create(o).status().message().find("dim 0"), std::string::npos);
  o = Options(RowOptimizerKind::kLazyAdam);
  o.beta2 = 1.0;
  EXPECT_FALSE(EmbeddingTable::Create(o).ok());
}

}  // namespace
}  // namespace psforge
