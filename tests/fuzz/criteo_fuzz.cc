// Fuzz target: the Criteo TSV reader, every byte of a click log on disk.
// The input is read as a file, whole lines through CriteoReader, once
// stopping at the first bad line and once counting and skipping them.
#include <cstdint>
#include <cstdlib>

#include "common/criteo.h"
#include "tests/fuzz/fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace psforge;
  const std::string path = fuzz::Scratch().Write("day_0.tsv", data, size);
  for (bool skip : {false, true}) {
    auto reader = CriteoReader::Open(path, skip);
    if (!reader.ok()) std::abort();  // the file was just written
    CtrRecord r;
    int64_t records = 0;
    while (true) {
      auto more = (*reader)->Next(&r);
      if (!more.ok()) {
        if (skip || more.status().message().empty()) std::abort();  // skipping never fails on content
        break;
      }
      if (!*more) break;
      if (r.label != 0.0f && r.label != 1.0f) std::abort();
      ++records;
    }
    if (skip && records + (*reader)->malformed_lines() != (*reader)->line_number()) std::abort();
  }
  return 0;
}
