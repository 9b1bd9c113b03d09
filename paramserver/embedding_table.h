// EmbeddingTable: the rows of one sparse table that a server holds, with
// their row-wise optimizer state.
//
// A row exists once a batch has touched it: reading a row that is not
// there creates it with the initialiser of its row id (a pure function of
// the table's seed and the row id, so any server, and a server restarted
// from a checkpoint, creates the same row). Only Apply changes a row, and
// only the rows it names; it marks them changed, so a checkpoint writes
// the rows changed since the last one (TakeChanged), not the table.
//
// Row-wise optimizers, each applied only to the rows a push touches:
//  - sgd:       w -= lr * g
//  - adagrad:   one accumulator per row (FBGEMM's row-wise AdaGrad):
//               a += mean_j(g_j^2); w -= lr * g / (sqrt(a) + eps)
//  - lazy_adam: moments per element and a step count per row, advanced
//               only when the row is touched: t += 1; m = b1 m + (1-b1) g;
//               v = b2 v + (1-b2) g^2;
//               w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
// A row's weights and state sit together in one record of record_floats()
// floats, in blocks that never move (a row's address is stable while it is
// resident). Not thread-safe: one server loop owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/config.h"
#include "common/row_map.h"
#include "common/status.h"

namespace psforge {

class EmbeddingTable {
 public:
  static Result<std::unique_ptr<EmbeddingTable>> Create(const TableOptions& options);

  const TableOptions& options() const { return options_; }
  int64_t dim() const { return options_.dim; }
  // Floats per row record: the weights, then the optimizer's state.
  int64_t record_floats() const { return record_floats_; }
  int64_t resident_rows() const { return static_cast<int64_t>(index_.size()); }

  // Copies the weights of `rows` (each < rows of the table: the caller has
  // decoded them with DecodeRowIds) into `out`, dim() floats a row, creating
  // the rows not yet there.
  void Read(std::span<const uint64_t> rows, std::span<float> out);

  // One update of each of `rows` by its gradient (dim() floats a row in
  // `grad`, multiplied by `grad_scale`). InvalidArgument, and no change to
  // any row, when the sizes disagree or a gradient is not finite.
  Status Apply(std::span<const uint64_t> rows, std::span<const float> grad, float grad_scale = 1.0f);

  // The rows changed by Apply since the last call, sorted; they count as
  // unchanged from now on.
  std::vector<uint64_t> TakeChanged();

  // Checkpoints: the whole records (record_floats() each) and update
  // counts of `rows`, appended (rows not yet there are created); and
  // records put back as they were (not marked changed).
  void Export(std::span<const uint64_t> rows, std::vector<float>* records, std::vector<uint32_t>* steps);
  void Import(std::span<const uint64_t> rows, std::span<const float> records, std::span<const uint32_t> steps);

  // The initial weights of `row` (dim() floats), as a row is created.
  void InitialWeights(uint64_t row, std::span<float> out) const;

 private:
  explicit EmbeddingTable(const TableOptions& options);
  // The record of `row`, created if absent.
  float* Record(uint64_t row);
  std::size_t SlotOf(uint64_t row);

  static constexpr std::size_t kRowsPerBlock = 4096;

  const TableOptions options_;
  const int64_t record_floats_;
  RowMap index_;  // row -> slot
  std::vector<std::unique_ptr<float[]>> blocks_;  // slot s: blocks_[s / kRowsPerBlock]
  std::vector<uint32_t> steps_;                   // lazy_adam: updates per slot
  std::vector<uint8_t> changed_;                  // per slot: applied since TakeChanged
  std::vector<uint64_t> changed_rows_;
};

}  // namespace psforge
