// Writes float32 arrays to a NumPy .npz file (our own code, no NumPy).
//
// The layout, which numpy.load reads: a ZIP archive, stored (not
// compressed), holding one NPY version 1.0 file per array, "<name>.npy",
// little-endian float32 in C (row-major) order, with its shape in the NPY
// header; and any number of plain text members (e.g. "psforge.json"),
// which numpy.load returns as bytes. Arrays above 4 GiB would need ZIP64
// and are refused with an error. The file is written to a temporary name
// and renamed into place, so a reader never sees half of it.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace psforge {

class NpzWriter {
 public:
  // An array `name` ([A-Za-z0-9_.-], as PyTorch's state_dict keys) of `shape`
  // (values.size() == product of shape). The values are copied.
  Status AddArray(const std::string& name, const std::vector<int64_t>& shape, std::span<const float> values);
  // A text member stored as it is.
  Status AddText(const std::string& file_name, const std::string& text);

  Status Write(const std::string& path) const;

 private:
  struct Member {
    std::string file_name;
    std::string bytes;
  };
  std::vector<Member> members_;
};

// The NPY 1.0 encoding of one float32 array (header and data).
std::string EncodeNpy(const std::vector<int64_t>& shape, std::span<const float> values);

}  // namespace psforge
