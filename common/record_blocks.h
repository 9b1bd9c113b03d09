// RecordBlocks: the records of a streamed data set (Dataset::stream), read
// from its file a block (kStreamBlock records) at a time and decoded into a
// few blocks held in memory, the least recently used one replaced. A shard
// of a contiguous plan is a run of consecutive records, so a batch touches
// one or two blocks and a lease reads its part of the file once. The
// blocks' buffers are allocated once. A file changed since it was indexed
// (shorter, or a line no longer valid) is a DataLoss naming it and the
// line. Not thread-safe: one trainer owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/criteo.h"
#include "common/dataset.h"
#include "common/status.h"

namespace psforge {

class RecordBlocks {
 public:
  struct Block {
    int64_t first = -1;  // its first record (-1: empty)
    int64_t rows = 0;
    std::vector<float> x;         // rows x kCriteoDense
    std::vector<float> targets;   // rows
    std::vector<uint64_t> keys;   // rows x kCriteoCategorical
    uint64_t used = 0;            // when it was last asked for
  };

  // For `data` (streamed, with data.rows records), holding at most
  // `max_blocks` blocks.
  static Result<std::unique_ptr<RecordBlocks>> Open(const Dataset& data, std::size_t max_blocks);

  const RecordIndex* index() const { return index_.get(); }
  // The block that holds record `row` (< rows), read if not held.
  Result<const Block*> BlockOf(int64_t row);
  int64_t blocks_read() const { return blocks_read_; }

 private:
  RecordBlocks(std::shared_ptr<const RecordIndex> index, int64_t rows, std::unique_ptr<CriteoReader> reader,
               std::size_t max_blocks);

  std::shared_ptr<const RecordIndex> index_;
  const int64_t rows_;
  std::unique_ptr<CriteoReader> reader_;
  std::vector<Block> blocks_;
  uint64_t clock_ = 0;
  int64_t blocks_read_ = 0;
  CtrRecord record_;
};

}  // namespace psforge
