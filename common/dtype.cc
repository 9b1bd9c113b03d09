#include "common/dtype.h"

#include <cmath>
#include <cstring>

#include "common/vector_clones.h"

namespace psforge {
namespace {

constexpr float kHalfMax = 65504.0f;

inline uint16_t ToBf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN stays NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);  // to nearest, ties to even
  return static_cast<uint16_t>(bits >> 16);
}

inline float FromBf16(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

inline _Float16 ToHalf(float v) {
  // Saturate (a NaN fails both comparisons and stays NaN).
  return static_cast<_Float16>(v > kHalfMax ? kHalfMax : v < -kHalfMax ? -kHalfMax : v);
}

PSF_VECTOR_CLONES void EncodeBf16(const float* src, int64_t n, std::byte* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = ToBf16(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

PSF_VECTOR_CLONES void DecodeBf16(const std::byte* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = FromBf16(h);
  }
}

PSF_VECTOR_CLONES void EncodeHalf(const float* src, int64_t n, std::byte* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const _Float16 h = ToHalf(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

PSF_VECTOR_CLONES void DecodeHalf(const std::byte* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    _Float16 h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = static_cast<float>(h);
  }
}

PSF_VECTOR_CLONES void FeedbackBf16(const float* g, float* residual, int64_t n, std::byte* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = g[i] + residual[i];
    const uint16_t h = ToBf16(v);
    residual[i] = v - FromBf16(h);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

PSF_VECTOR_CLONES void FeedbackHalf(const float* g, float* residual, int64_t n, std::byte* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = g[i] + residual[i];
    const _Float16 h = ToHalf(v);
    residual[i] = v - static_cast<float>(h);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

}  // namespace

const char* DTypeName(DType d) {
  switch (d) {
    case DType::kF32: return "f32";
    case DType::kBf16: return "bf16";
    case DType::kF16: return "fp16";
  }
  return "?";
}

std::optional<DType> DTypeFromName(std::string_view name) {
  for (DType d : {DType::kF32, DType::kBf16, DType::kF16})
    if (name == DTypeName(d)) return d;
  return std::nullopt;
}

void EncodeValues(DType d, const float* src, int64_t n, std::byte* dst) {
  switch (d) {
    case DType::kF32: std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float)); return;
    case DType::kBf16: return EncodeBf16(src, n, dst);
    case DType::kF16: return EncodeHalf(src, n, dst);
  }
}

void DecodeValues(DType d, const std::byte* src, int64_t n, float* dst) {
  switch (d) {
    case DType::kF32: std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float)); return;
    case DType::kBf16: return DecodeBf16(src, n, dst);
    case DType::kF16: return DecodeHalf(src, n, dst);
  }
}

void EncodeWithFeedback(DType d, const float* g, float* residual, int64_t n, std::byte* dst) {
  switch (d) {
    case DType::kF32: std::memcpy(dst, g, static_cast<std::size_t>(n) * sizeof(float)); return;
    case DType::kBf16: return FeedbackBf16(g, residual, n, dst);
    case DType::kF16: return FeedbackHalf(g, residual, n, dst);
  }
}

}  // namespace psforge
