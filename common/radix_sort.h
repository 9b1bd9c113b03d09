// RadixSort: sorts 64-bit keys below 2^bits in place, least significant
// byte first (a counting pass per byte, skipped where every key has the same
// byte), through `scratch` of the same size. For the few thousand keys of a
// batch it is several times faster than std::sort's comparisons.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace psforge {

inline void RadixSort(std::vector<uint64_t>* keys, std::vector<uint64_t>* scratch, int bits) {
  const std::size_t n = keys->size();
  scratch->resize(n);
  uint64_t* from = keys->data();
  uint64_t* to = scratch->data();
  for (int shift = 0; shift < bits; shift += 8) {
    std::size_t count[257] = {};
    for (std::size_t i = 0; i < n; ++i) ++count[((from[i] >> shift) & 0xFF) + 1];
    if (n == 0 || count[((from[0] >> shift) & 0xFF) + 1] == n) continue;  // one bucket: already in order
    for (int b = 0; b < 256; ++b) count[b + 1] += count[b];
    for (std::size_t i = 0; i < n; ++i) to[count[(from[i] >> shift) & 0xFF]++] = from[i];
    std::swap(from, to);
  }
  if (from != keys->data()) std::memcpy(keys->data(), from, n * sizeof(uint64_t));
}

}  // namespace psforge
