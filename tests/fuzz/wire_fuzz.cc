// Fuzz target: the wire decoder, every byte a peer can send us. A header
// frame is decoded as ZeroMQ may hand it over (at an aligned and at an odd
// address); what decodes must encode again to a frame that decodes to the
// same message.
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
  static std::vector<std::byte> again;
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
    if (!back.ok() || back->kind != h->kind || back->request_id != h->request_id || back->step != h->step ||
        back->sender != h->sender || back->text != h->text || back->positions != h->positions ||
        back->removed != h->removed || back->done != h->done)
      std::abort();
  }
  return 0;
}
