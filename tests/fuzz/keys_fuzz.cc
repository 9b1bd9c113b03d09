// Fuzz target: the CURVE key files (a member's key pair, the cluster's
// public keys). The input is read as both kinds of file.
#include <cstdint>
#include <cstdlib>

#include "common/curve.h"
#include "tests/fuzz/fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& scratch = psforge::fuzz::Scratch();
  const auto pair = psforge::ReadCurveKeyPair(scratch.Write("member.key", data, size, 0600));
  if (!pair.ok() && pair.status().message().empty()) std::abort();
  const auto cluster = psforge::ReadClusterKeys(scratch.Write("cluster.keys", data, size));
  if (!cluster.ok() && cluster.status().message().empty()) std::abort();
  if (cluster.ok())
    for (const auto& [name, key] : *cluster)
      if (!psforge::IsCurveKey(key)) std::abort();  // every key is checked
  return 0;
}
