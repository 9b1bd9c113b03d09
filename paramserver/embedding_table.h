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
// resident).
//
// With a memory budget (Spill: at most max_resident rows in memory) rows
// go to a ColdRows store when the budget is exceeded, chosen by CLOCK (a
// reference bit per slot, set on every touch, cleared by the sweeping
// hand: a row untouched for a whole sweep is evicted), and are read back
// when an operation names them. Every operation first makes all its rows
// resident (one batched read), so a failed read changes nothing; then
// works in memory; then evicts down to the budget (a row is written only
// when it differs from what the store holds: a row created on touch and
// never updated is recreated, bit for bit, from its initialiser). A failed
// write keeps the rows in memory (over budget) and is counted. Not
// thread-safe: one server loop owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/row_map.h"
#include "common/status.h"

namespace psforge {

// Where a table's evicted rows go (paramserver/cold_rows.h: RocksDB). A
// record is record_floats floats and its update count.
class ColdRows {
 public:
  virtual ~ColdRows() = default;
  // Stores the records of `rows` of table `table` (record_floats floats each in `records`).
  virtual Status Put(uint16_t table, std::span<const uint64_t> rows, std::span<const float> records,
                     std::span<const uint32_t> steps) = 0;
  // Reads `rows` of table `table`: found[i] says whether row i is stored,
  // and then its record and step are in records[i * record_floats...] and steps[i].
  virtual Status Get(uint16_t table, std::span<const uint64_t> rows, std::span<float> records,
                     std::span<uint32_t> steps, std::vector<uint8_t>* found) = 0;
  // Where it is, for messages.
  virtual const std::string& where() const = 0;
};

// What a table with a memory budget did (counters since its creation).
struct SpillStats {
  int64_t evicted = 0;       // rows moved out of memory
  int64_t written = 0;       // of those, rows written to the store (the others were unchanged there)
  int64_t read_back = 0;     // rows read back from the store
  int64_t created = 0;       // rows created on first touch
  int64_t write_errors = 0;  // failed writes (their rows stayed in memory)
};

class EmbeddingTable {
 public:
  static Result<std::unique_ptr<EmbeddingTable>> Create(const TableOptions& options);

  // Keeps at most `max_resident` rows in memory (>= 1), the others in
  // `cold` (not owned; it outlives the table) under table number `table`.
  void Spill(ColdRows* cold, uint16_t table, int64_t max_resident);
  const SpillStats& spill_stats() const { return spill_stats_; }
  // The memory `rows` resident rows of records of `record_floats` floats
  // take with a budget (records, bookkeeping, the index sized for them),
  // and the most rows that fit in `bytes`.
  static int64_t MemoryFor(int64_t record_floats, int64_t rows);
  static int64_t RowsWithin(int64_t record_floats, int64_t bytes);
  // Rows an operation may bring in beyond the budget before it trims.
  static constexpr std::size_t kOvershootRows = 8192;

  const TableOptions& options() const { return options_; }
  int64_t dim() const { return options_.dim; }
  // Floats per row record: the weights, then the optimizer's state.
  int64_t record_floats() const { return record_floats_; }
  int64_t resident_rows() const { return static_cast<int64_t>(index_.size()); }

  // Copies the weights of `rows` (each < rows of the table: the caller has
  // decoded them with DecodeRowIds) into `out`, dim() floats a row, creating
  // the rows not yet there. An error only when evicted rows cannot be read back.
  Status Read(std::span<const uint64_t> rows, std::span<float> out);

  // One update of each of `rows` by its gradient (dim() floats a row in
  // `grad`, multiplied by `grad_scale`). InvalidArgument, and no change to
  // any row, when the sizes disagree or a gradient is not finite; the
  // store's error, and no change, when evicted rows cannot be read back.
  Status Apply(std::span<const uint64_t> rows, std::span<const float> grad, float grad_scale = 1.0f);

  // The rows changed by Apply since the last call, sorted; they count as
  // unchanged from now on.
  std::vector<uint64_t> TakeChanged();

  // Checkpoints: the whole records (record_floats() each) and update
  // counts of `rows`, appended (rows not yet there are created); and
  // records put back as they were (not marked changed).
  // Export reads evicted rows from the store without bringing them back;
  // Import evicts as it goes. Errors are the store's.
  Status Export(std::span<const uint64_t> rows, std::vector<float>* records, std::vector<uint32_t>* steps);
  Status Import(std::span<const uint64_t> rows, std::span<const float> records, std::span<const uint32_t> steps);

  // The initial weights of `row` (dim() floats), as a row is created.
  void InitialWeights(uint64_t row, std::span<float> out) const;

 private:
  explicit EmbeddingTable(const TableOptions& options);
  float* RecordAt(std::size_t slot) {
    return blocks_[slot / kRowsPerBlock].get() + (slot % kRowsPerBlock) * static_cast<std::size_t>(record_floats_);
  }
  // The slot of `row`, created (from its initialiser) if absent.
  std::size_t SlotOf(uint64_t row);
  // slots_[i] = SlotOf(rows[i]), each lookup's entry prefetched ahead of it
  // (a batch's rows are scattered over a table much larger than the cache).
  void ResolveSlots(std::span<const uint64_t> rows);
  // Starts loading slot's record.
  void PrefetchRecord(std::size_t slot) {
    const float* r = RecordAt(slot);
    __builtin_prefetch(r, 1);
    __builtin_prefetch(r + record_floats_ - 1, 1);
  }
  static constexpr std::size_t kPrefetchAhead = 16;
  void InitRecord(uint64_t row, float* record) const;
  // A new slot for `row` (a free one, or a new one), its bookkeeping reset.
  std::size_t NewSlot(uint64_t row);
  // With a budget: makes every row of `rows` resident, reading the evicted
  // ones back in one batch; nothing changes when the read fails.
  Status Prepare(std::span<const uint64_t> rows);
  // With a budget: evicts down to it (a little below, so that the next
  // operations do not evict a row each).
  void Trim();

  static constexpr std::size_t kRowsPerBlock = 4096;

  const TableOptions options_;
  const int64_t record_floats_;
  RowMap index_;  // row -> slot
  std::vector<std::unique_ptr<float[]>> blocks_;  // slot s: blocks_[s / kRowsPerBlock]
  std::vector<uint32_t> steps_;                   // lazy_adam: updates per slot
  std::vector<uint8_t> changed_;                  // per slot: applied since TakeChanged
  std::vector<uint64_t> changed_rows_;            // may repeat a row that was evicted and read back

  // Memory budget (cold_ null: none).
  ColdRows* cold_ = nullptr;
  uint16_t cold_table_ = 0;
  std::size_t max_resident_ = 0;
  std::vector<uint64_t> slot_rows_;  // slot -> its row (kFreeSlot when free)
  std::vector<uint8_t> referenced_;  // CLOCK bit per slot
  std::vector<uint8_t> dirty_;       // per slot: differs from the store (or from its initialiser)
  std::vector<uint32_t> free_slots_;
  std::size_t hand_ = 0;
  SpillStats spill_stats_;
  bool warned_ = false;
  // The rows of the last Read and their slots. One worker's step pulls its
  // batch's rows and then pushes one gradient for each of the same rows, in
  // the same order: Apply takes their slots from here instead of looking
  // each up again. Forgotten whenever a slot is freed or the index rebuilt.
  std::vector<uint64_t> read_rows_;
  std::vector<uint32_t> read_slots_;
  // Scratch of Read, Apply, Prepare, Trim and Export, reused.
  std::vector<uint32_t> slots_;
  std::vector<uint64_t> missing_;
  std::vector<float> cold_records_;
  std::vector<uint32_t> cold_steps_;
  std::vector<uint8_t> found_;
  std::vector<uint32_t> victims_;
};

}  // namespace psforge
