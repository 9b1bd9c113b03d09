// Fuzz target: the CSV reader. Input: a byte choosing the label column
// (as a signed number: -1 is the last), a byte saying whether there is a
// header line, then the file.
#include <cstdint>
#include <cstdlib>

#include "common/dataset.h"
#include "tests/fuzz/fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int64_t label_column = static_cast<int8_t>(data[0]);
  const bool header = data[1] & 1;
  const auto path = psforge::fuzz::Scratch().Write("data.csv", data + 2, size - 2);
  auto d = psforge::ReadCsv(path, label_column, header);
  if (!d.ok() && d.status().message().empty()) std::abort();
  if (d.ok() && (d->x.size() != static_cast<size_t>(d->rows * d->features) ||
                 d->targets.size() != static_cast<size_t>(d->rows)))
    std::abort();
  return 0;
}
