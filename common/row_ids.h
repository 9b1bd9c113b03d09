// Row ids of sparse embedding tables: where a feature's row is, which
// server holds it, and how a batch's rows travel.
//
// A table has `rows` rows (up to kMaxTableRows); a raw feature id (a
// hashed categorical value, any 64-bit number) maps to row
// RowOfFeature(id, table seed, rows), and row r lives on server
// ServerOfRow(r, servers). Both are pure functions of their arguments, so
// every worker and server agrees without a directory.
//
// On the wire a batch's rows are sorted, unique and delta + varint coded:
// the first row as a LEB128 varint, then each difference from the previous
// one (>= 1). A batch of nearby rows costs one or two bytes a row instead of
// eight, and a batch has exactly one coding. DecodeRowIds checks everything
// a peer could get wrong (truncation, overlong varints, rows out of order,
// repeated or out of range, trailing bytes) and names it. Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"

namespace psforge {

// 2^40 rows: enough that ids hashed into a table rarely collide, small
// enough that a row id and its server fit easily in 64 bits.
inline constexpr uint64_t kMaxTableRows = uint64_t{1} << 40;
// The most sparse tables a model may have (a message names each once).
inline constexpr std::size_t kMaxSparseTables = 64;
// The most rows one message may carry.
inline constexpr int64_t kMaxRowsPerMessage = int64_t{1} << 22;

// The row of raw feature id `feature` in a table of `rows` rows seeded `seed`.
uint64_t RowOfFeature(uint64_t feature, uint64_t seed, uint64_t rows);

// The server (of `servers`) that holds row `row`.
int64_t ServerOfRow(uint64_t row, int64_t servers);

// Sorts `rows` and removes repeats, in place.
void SortUnique(std::vector<uint64_t>* rows);

// Appends the delta + varint coding of `rows` (sorted, unique: the caller's
// contract) to `out`.
void EncodeRowIds(std::span<const uint64_t> rows, std::vector<std::byte>* out);

// Decodes exactly `count` rows from all of `bytes` into `out` (replaced).
// InvalidArgument, naming the fault, unless every row is < `table_rows`,
// they are strictly increasing and the bytes hold nothing else.
Status DecodeRowIds(std::span<const std::byte> bytes, int64_t count, uint64_t table_rows,
                    std::vector<uint64_t>* out);

}  // namespace psforge
