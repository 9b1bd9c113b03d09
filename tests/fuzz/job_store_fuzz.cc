// Fuzz target: the coordinator's job store records (generations, grants,
// commits, evaluations), as a damaged store may hold them. The first byte
// picks the record kind; the rest is its value.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "coordinator/job_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace psforge;
  if (size < 1) return 0;
  const std::string value(reinterpret_cast<const char*>(data + 1), size - 1);
  Status s;
  switch (data[0] % 4) {
    case 0: s = DecodeGeneration(value, "generation").status(); break;
    case 1: s = DecodeGrant(value, "grant").status(); break;
    case 2: s = DecodeCommitGeneration(value, "commit").status(); break;
    default: s = DecodeEvaluation(value, "evaluation").status(); break;
  }
  if (!s.ok() && s.message().empty()) std::abort();
  return 0;
}
