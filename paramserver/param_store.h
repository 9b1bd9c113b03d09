// ParamStore: a server's durable copy of its key range.
//
// A checkpoint holds what the server needs to continue exactly where it was:
// the weights of its range at one version, the optimizer's state and step
// count, every worker's data position and the records applied per epoch
// (the exactly-once audit) at that version. Write() stores a
// checkpoint as one atomic unit, so it is either wholly there or not at all,
// and durable when Write() returns. (RocksDB: one table file, written and
// synced once, then ingested; that is atomic like a WriteBatch, without
// copying the values through the memtable, the log and a flush.) Each
// part carries a CRC-32 that Read() verifies: a torn, truncated or altered
// checkpoint is a DataLoss naming it and what is wrong, never loaded.
// Sparse table rows are stored only where they changed since the previous
// checkpoint (ServerCheckpoint::rows_base): Read returns one checkpoint's
// rows; CheckpointWriter folds a chain of them together.
// The in-memory store (tests) keeps the same contract except durability.
// Not thread-safe: a server's one checkpoint writer owns it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/model_spec.h"
#include "common/status.h"
#include "common/wire.h"

namespace psforge {

// The rows of one sparse table in a checkpoint: their ids (sorted, unique),
// whole records (record_floats each: the weights, then the row optimizer's
// state) and update counts (lazy_adam's per-row step).
struct TableRowsCheckpoint {
  uint16_t table = 0;
  int64_t record_floats = 0;
  std::vector<uint64_t> rows;
  std::vector<float> records;
  std::vector<uint32_t> steps;
  bool operator==(const TableRowsCheckpoint&) const = default;
};

// Lays the rows of `older` under `newer` (same tables, in order): a row in
// both keeps newer's record. The result, in `newer`, is what a restore
// applies for the later of two consecutive incremental checkpoints.
// DataLoss when a table's records differ in size between the two.
Status MergeTableRows(const std::vector<TableRowsCheckpoint>& older, std::vector<TableRowsCheckpoint>* newer);

struct ServerCheckpoint {
  int64_t id = 0;               // the coordinator's checkpoint number
  int64_t version = 0;          // the step the weights are at
  KeyRange range;               // the server's keys
  int64_t optimizer_steps = 0;  // updates the optimizer has applied
  std::vector<float> weights;          // range.size() values
  std::vector<float> optimizer_state;  // the optimizer's moments, sums or buffers
  std::vector<DataPosition> positions;  // per worker, at `version`
  std::vector<EpochAudit> audit;        // records applied in the latest epochs, at `version`
  // Sparse tables, incremental: -1 when the model has none; otherwise the
  // tables at `version` are those of checkpoint `rows_base` (0: the tables'
  // initial state, rows made on touch) with the rows in `tables` replaced.
  // A checkpoint's cost grows with the rows changed since its base.
  int64_t rows_base = -1;
  std::vector<TableRowsCheckpoint> tables;
};

class ParamStore {
 public:
  virtual ~ParamStore() = default;

  static std::unique_ptr<ParamStore> CreateInMemory();
  // An in-memory store holding `entries` as its raw keys and values
  // (checkpoint_format.h): whatever a damaged or hostile disk may hold.
  static std::unique_ptr<ParamStore> CreateInMemoryFrom(std::map<std::string, std::string> entries);
  // Opens (creating it if missing) the store in directory `path`. (A
  // write killed midway leaves a partial table file that the next write
  // replaces: it is ingested only once finished.)
  static Result<std::unique_ptr<ParamStore>> OpenRocksDb(const std::string& path);

  // Stores `c` under c.id, atomically; replaces a checkpoint of the same id.
  virtual Status Write(const ServerCheckpoint& c) = 0;
  // The checkpoint `id`, verified; NotFound when absent, DataLoss when damaged.
  virtual Result<ServerCheckpoint> Read(int64_t id) const = 0;
  // Checkpoint `id`'s rows_base, reading only its rows header (-1: it
  // holds no table rows, or is absent).
  virtual Result<int64_t> RowsBase(int64_t id) const = 0;
  // The ids stored, ascending (damaged ones included: Read tells).
  virtual Result<std::vector<int64_t>> List() const = 0;
  // Deletes checkpoint `id` (pruning); absent ids are fine.
  virtual Status Remove(int64_t id) = 0;
  // Deletes every checkpoint newer than `id` without reading them (damaged
  // ones included): a job that goes back to `id` forgets what came after.
  virtual Status RemoveNewerThan(int64_t id) = 0;
  // Opens an existing store to read, also while its server runs (it sees
  // the checkpoints written before it opened).
  static Result<std::unique_ptr<ParamStore>> OpenRocksDbReadOnly(const std::string& path);

  // Where it is, for messages.
  virtual const std::string& where() const = 0;
};

}  // namespace psforge
