// Fuzz target: the row-id decoder of sparse pushes and pulls. The input's
// first byte picks the row count and the table's size; the rest are the
// row-id bytes. What decodes is sorted, unique, inside the table, and
// encodes back to the very same bytes (the coding is unique).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "common/row_ids.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace psforge;
  if (size == 0) return 0;
  static std::vector<uint64_t> rows;
  static std::vector<std::byte> again;
  const int64_t count = data[0] & 0x3f;
  const uint64_t table = (data[0] & 0x40) ? kMaxTableRows : 1000;
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  Status s = DecodeRowIds(bytes, (data[0] & 0x80) ? -count : count, table, &rows);
  if (!s.ok()) {
    if (s.message().empty()) std::abort();  // every refusal says why
    return 0;
  }
  if (static_cast<int64_t>(rows.size()) != count) std::abort();
  for (std::size_t i = 0; i < rows.size(); ++i)
    if (rows[i] >= table || (i > 0 && rows[i] <= rows[i - 1])) std::abort();
  again.clear();
  EncodeRowIds(rows, &again);
  if (again.size() != bytes.size() || !std::equal(again.begin(), again.end(), bytes.begin())) std::abort();
  return 0;
}
