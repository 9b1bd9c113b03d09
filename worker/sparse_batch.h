// The sparse part of a ctr model's step (model.kind ctr).
//
// A batch's categorical feature keys become each table's rows, sorted and
// unique: a row the batch uses many times is pulled once and pushed once,
// with the sum of its gradients. The pulled rows are sum-pooled per field
// into the network's input after the dense features (a missing value adds
// nothing: its field's embedding is zero), and the gradient of that input
// is summed back into one gradient per row.
//
// Every buffer is sized once for max_batch records; Plan, Pool and
// Gradients allocate nothing after the first batches. Not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/model_spec.h"
#include "common/row_map.h"
#include "worker/parameter_client.h"

namespace psforge {

class SparseBatch {
 public:
  SparseBatch(const ModelSpec& spec, int64_t max_batch);

  // Plans a batch of n records from their keys ([n, categorical],
  // FeatureKey or kNoFeature).
  void Plan(const uint64_t* keys, int64_t n);
  // The planned rows, each table's with room for its weights (PullRows fills it).
  std::span<const SparseRows> weights() const { return weight_rows_; }
  // Writes each field's pooled embedding into x ([n, inputs]), after the
  // dense features, which are already there.
  void Pool(float* x) const;
  // The rows' gradients from the gradient of the input ([n, inputs]), to push.
  std::span<const SparseRows> Gradients(std::span<const float> input_gradient);
  // Rows the batch touches, over all tables.
  int64_t unique_rows() const;

 private:
  struct Table {
    std::vector<uint64_t> rows;
    std::vector<float> weights, grads;
    RowMap seen;                 // row -> its number in order of first appearance
    std::vector<uint32_t> rank;  // by that number: the row's place in the sorted rows
    int row_bits = 0;            // rows < 2^row_bits
  };
  const ModelSpec& spec_;
  const int64_t fields_, inputs_;
  int64_t n_ = 0;
  std::vector<Table> tables_;
  std::vector<int32_t> place_;    // [n, fields]: its row's index in its table's rows; -1: missing
  std::vector<uint32_t> order_;   // Plan's scratch
  std::vector<uint64_t> sorted_, radix_scratch_;
  std::vector<SparseRows> weight_rows_, grad_rows_;
};

}  // namespace psforge
