#include "common/sparse_payload.h"

#include <cstring>
#include <string>

#include "common/row_ids.h"

namespace psforge {
namespace {

Status CheckTable(const SparseBlock& b, std::span<const int64_t> dims) {
  if (b.table >= dims.size())
    return InvalidArgument("sparse block names table " + std::to_string(b.table) + "; the model has " +
                           std::to_string(dims.size()) + " sparse tables");
  return Status::Ok();
}

}  // namespace

Result<std::size_t> SparsePayloadBytes(SparseLayout layout, int64_t dense_values,
                                       std::span<const SparseBlock> blocks, std::span<const int64_t> dims) {
  // A key range from a peer: bounded before it is multiplied.
  if (dense_values < 0 || dense_values > (int64_t{1} << 40))
    return InvalidArgument("a payload of " + std::to_string(dense_values) + " dense values");
  std::size_t bytes = layout == SparseLayout::kPull ? 0 : static_cast<std::size_t>(dense_values) * sizeof(float);
  for (const SparseBlock& b : blocks) {
    PSF_RETURN_IF_ERROR(CheckTable(b, dims));
    if (layout != SparseLayout::kPullReply) bytes += PaddedKeyBytes(b.key_bytes);
    // rows <= 2^22 and dim <= 1024: at most 16 GiB a block, no overflow.
    if (layout != SparseLayout::kPull) bytes += static_cast<std::size_t>(b.rows) * dims[b.table] * sizeof(float);
  }
  return bytes;
}

Result<std::vector<SparseSection>> SplitSparsePayload(SparseLayout layout, std::span<const std::byte> frame,
                                                      int64_t dense_values, std::span<const SparseBlock> blocks,
                                                      std::span<const int64_t> dims,
                                                      std::span<const uint64_t> table_rows) {
  if (table_rows.size() != dims.size()) return Internal("tables' dims and row counts disagree");
  PSF_ASSIGN_OR_RETURN(std::size_t expected, SparsePayloadBytes(layout, dense_values, blocks, dims));
  if (frame.size() != expected)
    return InvalidArgument("payload of " + std::to_string(frame.size()) + " bytes; its " +
                           (layout == SparseLayout::kPull ? std::string() : std::to_string(dense_values) +
                                                                                " dense values and ") +
                           std::to_string(blocks.size()) + " sparse blocks take " + std::to_string(expected));
  std::vector<SparseSection> sections(blocks.size());
  std::size_t at = layout == SparseLayout::kPull ? 0 : static_cast<std::size_t>(dense_values) * sizeof(float);
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const SparseBlock& b = blocks[i];
    SparseSection& s = sections[i];
    s.table = b.table;
    if (layout != SparseLayout::kPullReply) {
      Status ids = DecodeRowIds(frame.subspan(at, b.key_bytes), b.rows, table_rows[b.table], &s.rows);
      if (!ids.ok()) return ids.WithContext("sparse block of table " + std::to_string(b.table));
      for (std::size_t pad = b.key_bytes; pad < PaddedKeyBytes(b.key_bytes); ++pad)
        if (frame[at + pad] != std::byte{0})
          return InvalidArgument("sparse block of table " + std::to_string(b.table) + ": padding is not zero");
      at += PaddedKeyBytes(b.key_bytes);
    }
    if (layout != SparseLayout::kPull) {
      const std::size_t n = static_cast<std::size_t>(b.rows) * dims[b.table] * sizeof(float);
      s.values = frame.subspan(at, n);
      at += n;
    }
  }
  return sections;
}

SparseBlock AppendSparseSection(SparseLayout layout, uint16_t table, std::span<const uint64_t> rows,
                                std::span<const float> values, std::vector<std::byte>* frame) {
  SparseBlock b{table, static_cast<uint32_t>(rows.size()), 0};
  if (layout != SparseLayout::kPullReply) {
    const std::size_t start = frame->size();
    EncodeRowIds(rows, frame);
    b.key_bytes = static_cast<uint32_t>(frame->size() - start);
    frame->resize(start + PaddedKeyBytes(b.key_bytes), std::byte{0});
  }
  if (layout != SparseLayout::kPull) {
    const auto bytes = std::as_bytes(values);
    frame->insert(frame->end(), bytes.begin(), bytes.end());
  }
  return b;
}

}  // namespace psforge
