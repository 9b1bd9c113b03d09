// Fuzz target: the wire decoder, every byte a peer can send us. A header
// frame is decoded as ZeroMQ may hand it over (at an aligned and at an odd
// address); what decodes must encode again to a frame that decodes to the
// same message, whose encoding is the same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace psforge;
  static std::vector<uint64_t> scratch;
  static std::vector<uint64_t> storage;  // 8-byte aligned
  static std::vector<std::byte> again, twice;
  storage.assign(size / 8 + 2, 0);
  for (std::size_t shift : {0, 1}) {
    auto* at = reinterpret_cast<std::byte*>(storage.data()) + shift;
    if (size > 0) std::memcpy(at, data, size);
    auto h = DecodeHeader({at, size}, &scratch);
    if (!h.ok()) {
      if (h.status().message().empty()) std::abort();  // every refusal says why
      continue;
    }
    EncodeHeader(*h, &again);
    auto back = DecodeHeader(again, &scratch);
    if (!back.ok() || back->kind() != h->kind() || back->request_id != h->request_id ||
        back->sender != h->sender || back->generation != h->generation)
      std::abort();
    // The same message: it encodes to the same bytes (compared as bytes, so
    // that a NaN loss, unequal to itself, still counts as the same).
    EncodeHeader(*back, &twice);
    if (twice != again) std::abort();
  }
  return 0;
}
