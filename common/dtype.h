// The element types values travel in between workers and servers
// (cluster.wire_dtype): float32, bfloat16 (float32's range, 8 bits of
// mantissa) or IEEE half (5 exponent bits, 11 of mantissa; finite up to
// 65504), and the conversions between them.
//
// Rounding is to nearest, ties to even, as the hardware converts. Half
// precision saturates: a value beyond its range is sent as +-65504 (the
// error feedback of EncodeWithFeedback carries the rest to the next step)
// rather than as an infinity that a server would refuse. NaN stays NaN.
// The loops are compiled for AVX-512, AVX2 and the baseline (vector_clones.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace psforge {

enum class DType { kF32, kBf16, kF16 };

inline constexpr std::size_t DTypeBytes(DType d) { return d == DType::kF32 ? 4 : 2; }
const char* DTypeName(DType d);  // "f32", "bf16", "fp16"
std::optional<DType> DTypeFromName(std::string_view name);

// Writes n values of `src` as `d` into `dst` (n * DTypeBytes(d) bytes; any alignment).
void EncodeValues(DType d, const float* src, int64_t n, std::byte* dst);
// Reads n values of type `d` from `src` (any alignment) into `dst`.
void DecodeValues(DType d, const std::byte* src, int64_t n, float* dst);
// Error feedback: sends v = g + residual rounded to `d` and keeps what the
// rounding lost, residual = v - rounded(v), for the next call. Over many
// steps the sum of what was sent tracks the sum of the g to within one
// rounding. For kF32 it copies g (the residual stays 0).
void EncodeWithFeedback(DType d, const float* g, float* residual, int64_t n, std::byte* dst);

}  // namespace psforge
