#include "common/row_ids.h"

#include <algorithm>
#include <string>

#include "common/split_mix.h"

namespace psforge {
namespace {

void PutVarint(uint64_t v, std::vector<std::byte>* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<std::byte>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<std::byte>(v));
}

}  // namespace

uint64_t RowOfFeature(uint64_t feature, uint64_t seed, uint64_t rows) {
  // Two rounds: a seed of 0 and feature ids that are small counters still
  // spread over the whole table.
  return SplitMix64(SplitMix64(feature) ^ seed) % rows;
}

int64_t ServerOfRow(uint64_t row, int64_t servers) {
  // Independent of RowOfFeature's hash (another constant), so that rows
  // adjacent in a table do not cluster on one server.
  return static_cast<int64_t>(SplitMix64(row ^ 0x5bd1e9955bd1e995ULL) % static_cast<uint64_t>(servers));
}

void SortUnique(std::vector<uint64_t>* rows) {
  std::sort(rows->begin(), rows->end());
  rows->erase(std::unique(rows->begin(), rows->end()), rows->end());
}

void EncodeRowIds(std::span<const uint64_t> rows, std::vector<std::byte>* out) {
  uint64_t previous = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    PutVarint(i == 0 ? rows[0] : rows[i] - previous, out);
    previous = rows[i];
  }
}

Status DecodeRowIds(std::span<const std::byte> bytes, int64_t count, uint64_t table_rows,
                    std::vector<uint64_t>* out) {
  out->clear();
  if (count < 0 || count > kMaxRowsPerMessage)
    return InvalidArgument("row count " + std::to_string(count) + " outside [0, " +
                           std::to_string(kMaxRowsPerMessage) + "]");
  // Every row takes at least one byte: a count the bytes cannot hold is
  // refused before anything is reserved for it.
  if (static_cast<uint64_t>(count) > bytes.size())
    return InvalidArgument(std::to_string(count) + " rows cannot fit in " + std::to_string(bytes.size()) +
                           " bytes of row ids");
  out->reserve(static_cast<std::size_t>(count));
  std::size_t at = 0;
  uint64_t previous = 0;
  for (int64_t i = 0; i < count; ++i) {
    uint64_t v = 0;
    int shift = 0;
    while (true) {
      if (at == bytes.size())
        return InvalidArgument("row ids end inside row " + std::to_string(i) + " of " + std::to_string(count));
      const auto b = static_cast<uint8_t>(bytes[at++]);
      if (shift == 63 && b > 1)
        return InvalidArgument("row " + std::to_string(i) + "'s varint overflows 64 bits");
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        // One coding per row: a zero last byte would make two (the
        // encoder never writes one), and a message its bytes.
        if (b == 0 && shift > 0)
          return InvalidArgument("row " + std::to_string(i) + "'s varint ends in a zero byte (overlong)");
        break;
      }
      shift += 7;  // at most 63: a tenth byte above 1 was refused
    }
    if (i > 0 && v == 0)
      return InvalidArgument("row " + std::to_string(previous) + " is repeated (row ids must be unique)");
    if (i > 0 && v > UINT64_MAX - previous)
      return InvalidArgument("row " + std::to_string(i) + " overflows 64 bits");
    const uint64_t row = i == 0 ? v : previous + v;
    if (row >= table_rows)
      return InvalidArgument("row " + std::to_string(row) + " outside the table's " + std::to_string(table_rows) +
                             " rows");
    out->push_back(row);
    previous = row;
  }
  if (at != bytes.size())
    return InvalidArgument(std::to_string(bytes.size() - at) + " bytes after the last of " + std::to_string(count) +
                           " row ids");
  return Status::Ok();
}

}  // namespace psforge
