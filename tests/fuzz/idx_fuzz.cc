// Fuzz target: the IDX reader (Fashion-MNIST's format, plain or gzip).
// Input: a byte of flags (bit 0: gzip the images, bit 1: the labels), 4
// bytes (little-endian) of image file length, the image file, the label file.
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/dataset.h"
#include "tests/fuzz/fuzz_files.h"

namespace {

std::string WriteMaybeGzip(const std::string& name, const uint8_t* data, size_t size, bool gzip) {
  const auto& scratch = psforge::fuzz::Scratch();
  if (!gzip) return scratch.Write(name, data, size);
  const std::string path = scratch.Write(name, nullptr, 0);
  gzFile f = gzopen(path.c_str(), "wb1");
  if (!f || (size > 0 && gzwrite(f, data, static_cast<unsigned>(size)) != static_cast<int>(size)) ||
      gzclose(f) != Z_OK)
    std::abort();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  const uint8_t flags = data[0];
  uint32_t images_size;
  std::memcpy(&images_size, data + 1, 4);
  data += 5;
  size -= 5;
  images_size = static_cast<uint32_t>(std::min<size_t>(images_size, size));
  const std::string images = WriteMaybeGzip("images", data, images_size, flags & 1);
  const std::string labels = WriteMaybeGzip("labels", data + images_size, size - images_size, flags & 2);
  auto d = psforge::ReadIdx(images, labels, 1.0f / 255);
  if (!d.ok() && d.status().message().empty()) std::abort();
  if (d.ok() && (d->x.size() != static_cast<size_t>(d->rows * d->features) ||
                 d->targets.size() != static_cast<size_t>(d->rows)))
    std::abort();
  return 0;
}
