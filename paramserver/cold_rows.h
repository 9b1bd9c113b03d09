// RocksDB-backed ColdRows: the rows a server's sparse tables evicted to
// stay within cluster.memory_budget_mb.
//
// The store is a cache of the server's own memory, not a durable copy (the
// checkpoints are): it lives in a directory of its own under the server's
// spill folder, is created empty, written without a log, and removed with
// the object. Keys are the table number and the row id, big-endian (rows of
// a table sort together, in id order); values a row's record and its
// update count. Not thread-safe: its table shard's loop owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "paramserver/embedding_table.h"

namespace rocksdb {
class DB;
}

namespace psforge {

class RocksColdRows : public ColdRows {
 public:
  // A new, empty store in a fresh folder under `parent` (created if
  // missing), for records of `record_floats[t]` floats for table t. An
  // error names the folder when it cannot be created or written.
  static Result<std::unique_ptr<RocksColdRows>> Create(const std::string& parent,
                                                       std::vector<int64_t> record_floats);
  ~RocksColdRows() override;

  Status Put(uint16_t table, std::span<const uint64_t> rows, std::span<const float> records,
             std::span<const uint32_t> steps) override;
  Status Get(uint16_t table, std::span<const uint64_t> rows, std::span<float> records, std::span<uint32_t> steps,
             std::vector<uint8_t>* found) override;
  const std::string& where() const override { return path_; }

  // Bytes of the store's files on disk (live table files and the memtables' data).
  int64_t disk_bytes() const;

 private:
  RocksColdRows(std::string path, std::vector<int64_t> record_floats);

  const std::string path_;
  const std::vector<int64_t> record_floats_;
  std::unique_ptr<rocksdb::DB> db_;
  std::string value_;  // Put's scratch
};

}  // namespace psforge
