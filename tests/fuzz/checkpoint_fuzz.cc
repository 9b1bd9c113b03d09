// Fuzz target: reading a server's checkpoint back from its store, as a
// damaged or hostile disk may hold it. The input is the header's fields and
// the parts' bytes; the checksums are made to match where its flags say so,
// so that the checks behind them are reached too.
// Input: flags (bit 0-3: fix the header's, weights', state's, positions'
// checksum; bit 4: a second weights chunk), 8 little-endian int64 header
// fields (id is replaced by 1), then the weights, state and positions bytes,
// each after its 2-byte length.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "paramserver/checkpoint_format.h"
#include "paramserver/param_store.h"

namespace {

struct Input {
  const uint8_t* data;
  size_t size;
  std::string Take(size_t n) {
    n = std::min(n, size);
    std::string out(reinterpret_cast<const char*>(data), n);
    data += n;
    size -= n;
    return out;
  }
  std::string Part() {
    const std::string len = Take(2);
    return Take(len.size() == 2 ? static_cast<uint8_t>(len[0]) | static_cast<size_t>(static_cast<uint8_t>(len[1])) << 8
                                : 0);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace psforge;
  using namespace psforge::checkpoint_format;
  if (size < 1) return 0;
  Input in{data + 1, size - 1};
  const uint8_t flags = data[0];
  Meta meta{};
  std::memcpy(meta.magic, kMagic, sizeof kMagic);
  const std::string fields = in.Take(64);
  std::memcpy(&meta.id, fields.data(), fields.size());
  meta.id = 1;
  const std::string weights = in.Part(), weights2 = flags & 16 ? in.Part() : std::string(), state = in.Part(),
                    positions = in.Part();
  std::map<std::string, std::string> entries;
  entries[ChunkKey(1, 'w', 0)] = weights;
  if (flags & 16) entries[ChunkKey(1, 'w', 1)] = weights2;
  entries[ChunkKey(1, 's', 0)] = state;
  entries[Prefix(1) + "p"] = positions;
  if (flags & 2) meta.weights_crc = Crc(Crc(0, weights.data(), weights.size()), weights2.data(), weights2.size());
  if (flags & 4) meta.state_crc = Crc(0, state.data(), state.size());
  if (flags & 8) meta.positions_crc = Crc(0, positions.data(), positions.size());
  if (flags & 1) meta.meta_crc = Crc(0, &meta, offsetof(Meta, meta_crc));
  entries[Prefix(1) + "meta"] = std::string(reinterpret_cast<const char*>(&meta), sizeof meta);
  auto store = ParamStore::CreateInMemoryFrom(std::move(entries));
  auto c = store->Read(1);
  if (!c.ok() && c.status().message().empty()) std::abort();
  if (c.ok() && (c->weights.size() != static_cast<size_t>(c->range.end - c->range.begin))) std::abort();
  return 0;
}
