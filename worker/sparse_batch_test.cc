#include "worker/sparse_batch.h"

#include <gtest/gtest.h>

#include "common/criteo.h"
#include "common/row_ids.h"

namespace psforge {
namespace {

ModelSpec CtrSpec(int64_t dense, int64_t fields, int64_t dim, int64_t rows) {
  ModelOptions o;
  o.kind = ModelKind::kCtr;
  o.hidden = {};
  TableOptions t;
  t.name = "ids";
  t.dim = dim;
  t.rows = rows;
  t.optimizer = RowOptimizerKind::kSgd;
  t.learning_rate = 1;
  o.tables = {t};
  return std::move(ModelSpec::FromConfig(o, dense, 0, fields)).value();
}

// Three records of three fields sharing one table: a value used twice is
// one row (pulled once, its gradients summed), a missing one none.
TEST(SparseBatch, OneRowPerDistinctFeatureItsEmbeddingPooledAndItsGradientsSummed) {
  const ModelSpec spec = CtrSpec(2, 3, 2, 1 << 20);
  SparseBatch batch(spec, 4);
  const uint64_t a = FeatureKey(0, 5), b = FeatureKey(1, 5), c = FeatureKey(2, 9);
  const uint64_t keys[] = {a, b, c,  //
                           a, kNoFeature, c,  //
                           a, b, kNoFeature};
  batch.Plan(keys, 3);
  ASSERT_EQ(batch.weights().size(), 1u);
  const SparseRows& r = batch.weights()[0];
  ASSERT_EQ(r.rows.size(), 3u) << "a, b and c: the same value in two fields is two features";
  EXPECT_TRUE(std::is_sorted(r.rows.begin(), r.rows.end()));
  EXPECT_EQ(batch.unique_rows(), 3);
  const auto row_a = RowOfFeature(a, spec.tables()[0].seed, 1 << 20);
  const std::size_t at_a = std::lower_bound(r.rows.begin(), r.rows.end(), row_a) - r.rows.begin();
  ASSERT_LT(at_a, r.rows.size());
  ASSERT_EQ(r.rows[at_a], row_a);
  // The rows' weights, as a pull would fill them: row k is (k + 1, -(k + 1)).
  for (std::size_t k = 0; k < r.rows.size(); ++k) {
    r.values[2 * k] = static_cast<float>(k + 1);
    r.values[2 * k + 1] = -static_cast<float>(k + 1);
  }
  std::vector<float> x(3 * spec.inputs(), 7.0f);  // the dense features stay
  batch.Pool(x.data());
  EXPECT_EQ(x[0], 7.0f);
  EXPECT_EQ(x[1], 7.0f);
  EXPECT_EQ(x[2], static_cast<float>(at_a + 1)) << "record 0, field 0: row a";
  EXPECT_EQ(x[1 * spec.inputs() + 4], 0.0f) << "record 1, field 1 is missing: a zero embedding";
  EXPECT_EQ(x[2 * spec.inputs() + 6], 0.0f);
  EXPECT_EQ(x[2 * spec.inputs() + 7], 0.0f);

  std::vector<float> dx(3 * spec.inputs(), 0.0f);
  for (int i = 0; i < 3; ++i) dx[i * spec.inputs() + 2] = static_cast<float>(i + 1);  // field 0: row a, 3 times
  dx[spec.inputs() + 6] = 10.0f;                                                    // record 1, field 2: row c
  auto grads = batch.Gradients(dx);
  ASSERT_EQ(grads.size(), 1u);
  EXPECT_EQ(grads[0].rows.size(), 3u);
  EXPECT_EQ(grads[0].values[2 * at_a], 1.0f + 2.0f + 3.0f) << "one gradient per row: the sum of its uses";
  EXPECT_EQ(grads[0].values[2 * at_a + 1], 0.0f);
  float total = 0;
  for (float g : grads[0].values) total += g;
  EXPECT_EQ(total, 16.0f);
}

// ps-train's tables: rows created on first touch, updated by a push,
// and rows that are not sorted, unique and inside the table refused.
TEST(LocalParameterClient, ServesTheModelsTablesAndRefusesBadRows) {
  const ModelSpec spec = CtrSpec(2, 3, 2, 100);
  std::vector<float> dense(spec.num_params());
  auto client = std::move(LocalParameterClient::Create(spec, OptimizerOptions{}, dense)).value();
  const std::vector<uint64_t> rows{3, 50};
  std::vector<float> w(4), g{1, 2, 3, 4};
  const SparseRows pull[] = {{0, 2, rows, w}};
  ASSERT_TRUE(client->PullRows(0, pull).ok());
  const std::vector<float> w0 = w;
  const SparseRows push[] = {{0, 2, rows, g}};
  std::vector<float> dense_grad(spec.num_params(), 0.0f);
  ASSERT_TRUE(client->Push(0, dense_grad, 4, DataMark{}, push).ok());
  ASSERT_TRUE(client->PullRows(1, pull).ok());
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(w[i], w0[i] - g[i]) << i;  // sgd, rate 1
  EXPECT_EQ(client->PullRows(0, pull).code(), StatusCode::kFailedPrecondition) << "version 0 is gone";
  const std::vector<uint64_t> unsorted{50, 3}, outside{3, 100};
  const SparseRows bad_order[] = {{0, 2, unsorted, w}}, bad_row[] = {{0, 2, outside, w}};
  const SparseRows bad_table[] = {{1, 2, rows, w}}, bad_size[] = {{0, 2, rows, std::span(w).first(3)}};
  for (auto bad : {std::span<const SparseRows>(bad_order), std::span<const SparseRows>(bad_row),
                   std::span<const SparseRows>(bad_table), std::span<const SparseRows>(bad_size)}) {
    EXPECT_EQ(client->PullRows(1, bad).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(client->Push(1, dense_grad, 4, DataMark{}, bad).code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(client->applied_steps(), 1) << "a refused push is no step";
}

}  // namespace
}  // namespace psforge
