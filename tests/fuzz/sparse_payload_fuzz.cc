// Fuzz target: the sparse part of push, pull and pull-reply payloads. The
// input's first bytes are the header's view (the layout and up to four
// blocks: table, rows, id bytes), the rest the frame. What splits has
// exactly the header's rows and values, and appends back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/sparse_payload.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace psforge;
  if (size < 2) return 0;
  static const std::vector<int64_t> dims{4, 2, 1};
  static const std::vector<uint64_t> table_rows{1000, uint64_t{1} << 40, 7};
  const auto layout = static_cast<SparseLayout>(data[0] % 3);
  const std::size_t count = data[1] % 5;
  std::size_t at = 2;
  std::vector<SparseBlock> blocks;
  for (std::size_t i = 0; i < count; ++i, at += 4) {
    if (at + 4 > size) return 0;
    blocks.push_back({static_cast<uint16_t>(data[at] % 4), static_cast<uint32_t>(data[at + 1]) + 1,
                      static_cast<uint32_t>(data[at + 2] | data[at + 3] << 8)});
    if (layout == SparseLayout::kPullReply) blocks.back().key_bytes = 0;
  }
  const int64_t dense = layout == SparseLayout::kPull ? 0 : 2;
  const std::span<const std::byte> frame(reinterpret_cast<const std::byte*>(data + at), size - at);
  auto split = SplitSparsePayload(layout, frame, dense, blocks, dims, table_rows);
  if (!split.ok()) {
    if (split.status().message().empty()) std::abort();
    return 0;
  }
  if (split->size() != blocks.size()) std::abort();
  std::vector<std::byte> again(frame.begin(), frame.begin() + dense * 4);
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const SparseSection& s = (*split)[i];
    const std::size_t want_values = layout == SparseLayout::kPull ? 0 : blocks[i].rows * dims[blocks[i].table] * 4;
    if (s.values.size() != want_values) std::abort();
    if (layout != SparseLayout::kPullReply && s.rows.size() != blocks[i].rows) std::abort();
    std::vector<float> values(s.values.size() / 4);
    if (!values.empty()) std::memcpy(values.data(), s.values.data(), s.values.size());
    std::vector<uint64_t> rows = s.rows;
    if (layout == SparseLayout::kPullReply) rows.resize(blocks[i].rows);
    if (AppendSparseSection(layout, s.table, rows, values, &again) != blocks[i]) std::abort();
  }
  if (again.size() != frame.size() || (!frame.empty() && std::memcmp(again.data(), frame.data(), frame.size()) != 0))
    std::abort();
  return 0;
}
