// The payload of a push, pull or pull reply that carries rows of sparse
// tables (WireHeader's SparseBlock list).
//
//   push:       one frame: [dense f32 x values] then per block: [row ids][pad][rows x dim f32 gradient]
//               (with the dense part in a shared-memory slot, the frame starts at the blocks)
//   pull:       one frame: per block: [row ids][pad]   (a pull sends no dense values)
//   pull reply: the dense weights in one frame (sent in place where they can be), then a
//               second frame: per block: [rows x dim f32 weights], SplitSparsePayload with
//               dense_values 0
//
// Row ids are delta + varint coded (common/row_ids.h); each id run is padded
// with zeros to a multiple of 4 bytes, so that floats start 4-byte aligned
// within the frame (the frame itself may be unaligned: readers copy). The
// blocks come in the header's order. SplitSparsePayload checks that the
// frame is exactly as long as the header says and decodes the ids,
// refusing by name whatever does not fit; nothing is applied before the
// whole frame has been checked. Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "common/wire.h"

namespace psforge {

enum class SparseLayout { kPush, kPull, kPullReply };

// One block's part of a frame.
struct SparseSection {
  uint16_t table = 0;
  std::vector<uint64_t> rows;         // decoded ids (pull reply: empty; its rows are the pull's)
  std::span<const std::byte> values;  // rows x dim floats, any alignment (pull: empty)
};

// The padded size of `key_bytes` bytes of ids.
inline std::size_t PaddedKeyBytes(std::size_t key_bytes) { return (key_bytes + 3) & ~std::size_t{3}; }

// The bytes of a frame with `dense_values` dense floats and `blocks` in
// `layout`, tables of dims `dims` (by table index).
Result<std::size_t> SparsePayloadBytes(SparseLayout layout, int64_t dense_values,
                                       std::span<const SparseBlock> blocks, std::span<const int64_t> dims);

// Splits `frame` (starting with `dense_values` floats, which it skips) into
// one section per block. `dims[t]` and `table_rows[t]`: table t's dimension
// and number of rows; a block naming another table is refused. A pull
// reply's `rows_asked[i]` is the row count of block i of its pull.
Result<std::vector<SparseSection>> SplitSparsePayload(SparseLayout layout, std::span<const std::byte> frame,
                                                      int64_t dense_values, std::span<const SparseBlock> blocks,
                                                      std::span<const int64_t> dims,
                                                      std::span<const uint64_t> table_rows);

// Appends one block's part to `frame` (push: ids and values; pull: ids;
// pull reply: values) and returns its SparseBlock.
SparseBlock AppendSparseSection(SparseLayout layout, uint16_t table, std::span<const uint64_t> rows,
                                std::span<const float> values, std::vector<std::byte>* frame);

}  // namespace psforge
