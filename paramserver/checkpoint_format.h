// The layout of a server's checkpoint in its ParamStore (param_store.h),
// the same in the RocksDB and the in-memory store. Here so that the
// checkpoint fuzzer (tests/fuzz/checkpoint_fuzz.cc) writes what a disk may
// hold, with valid checksums, and reaches the checks behind them.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace psforge::checkpoint_format {

// Layout, the same in both stores (keys sort by checkpoint id):
//   c/<id, 20 digits>/meta          the header below
//   c/<id>/w/<chunk, 8 digits>      weights, at most kChunkFloats each
//   c/<id>/s/<chunk>                optimizer state, likewise
//   c/<id>/p                        positions, 24 bytes each, then the audit, 32 bytes an epoch
// Chunks keep single values small (RocksDB holds a value whole in memory).
inline constexpr int64_t kChunkFloats = int64_t{1} << 20;  // 4 MiB
inline constexpr char kMagic[8] = {'P', 'S', 'F', 'C', 'K', 'P', 'T', '1'};

struct Meta {
  char magic[8];
  int64_t id, version, begin, end, optimizer_steps;
  int64_t weights, state, positions;  // element counts
  uint32_t weights_crc, state_crc, positions_crc, meta_crc;  // meta_crc: over everything before it
};
static_assert(sizeof(Meta) == 88, "Meta is stored as its bytes: no padding");

inline std::string Prefix(int64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "c/%020lld/", static_cast<long long>(id));
  return buf;
}

inline std::string ChunkKey(int64_t id, char part, int64_t chunk) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%c/%08lld", part, static_cast<long long>(chunk));
  return Prefix(id) + buf;
}

// Sparse table rows (ServerCheckpoint::tables), when the model has tables:
//   c/<id>/t                        RowsHeader, then a RowsEntry per table, then a CRC-32 of both
//   c/<id>/t/<table, 4 digits>/<part>/<chunk, 8 digits>
//                                   part i: row ids (8 bytes each), r: records (floats),
//                                   k: update counts (4 bytes each); at most kChunkBytes a value
inline constexpr int64_t kChunkBytes = int64_t{4} << 20;
inline constexpr char kRowsMagic[8] = {'P', 'S', 'F', 'R', 'O', 'W', 'S', '1'};
struct RowsHeader {
  char magic[8];
  int64_t base;     // ServerCheckpoint::rows_base
  uint32_t tables;  // entries that follow
  uint32_t reserved;
};
struct RowsEntry {
  uint32_t table, record_floats;
  int64_t rows;
  uint32_t crc;  // over the ids, then the records, then the counts
  uint32_t reserved;
};
static_assert(sizeof(RowsHeader) == 24 && sizeof(RowsEntry) == 24, "stored as their bytes: no padding");

inline std::string RowsChunkKey(int64_t id, uint32_t table, char part, int64_t chunk) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "t/%04u/%c/%08lld", table, part, static_cast<long long>(chunk));
  return Prefix(id) + buf;
}

inline uint32_t Crc(uint32_t crc, const void* data, std::size_t bytes) {
  // zlib takes at most 4 GiB a call.
  const auto* p = static_cast<const Bytef*>(data);
  while (bytes > 0) {
    const auto n = static_cast<uInt>(std::min<std::size_t>(bytes, 1u << 30));
    crc = static_cast<uint32_t>(crc32(crc, p, n));
    p += n;
    bytes -= n;
  }
  return crc;
}

}  // namespace psforge::checkpoint_format
