// Reads the arrays of a NumPy .npz file: what numpy.savez (and our
// NpzWriter) write, a ZIP archive of stored (uncompressed) NPY members.
//
// Members are found through the ZIP central directory (ZIP64 sizes and
// offsets included, as numpy writes them); each "<name>.npy" must hold a
// little-endian float32 or float64 array in C order, which is read as
// float32. Other members (text such as "psforge.json") are skipped. Every
// malformed or unsupported part is an error naming the file and the member:
// a compressed archive (numpy.savez_compressed), another dtype, a truncated
// file. The whole file is read into memory once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace psforge {

struct NpzArray {
  std::string name;            // the member's name without ".npy"
  std::vector<int64_t> shape;  // () for a scalar
  std::vector<float> values;   // row-major
};

Result<std::vector<NpzArray>> ReadNpz(const std::string& path);

}  // namespace psforge
