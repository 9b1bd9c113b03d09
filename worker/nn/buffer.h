// Float buffers for weights, gradients and activations: aligned for vector
// loads and zeroed (so that the padding of blocked layouts is defined).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>

namespace psforge::nn {

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], FreeDeleter>;
Buffer AllocateFloats(int64_t floats);

}  // namespace psforge::nn
