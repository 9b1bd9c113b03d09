#include "common/dtype.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/vector_clones.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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
  // Saturate; a NaN passes both (std::max and std::min return their first
  // argument when a comparison is false) and stays NaN.
  return static_cast<_Float16>(std::min(std::max(v, -kHalfMax), kHalfMax));
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

// Half precision: GCC does not vectorise _Float16 conversions, so where
// the CPU has F16C (every x86-64 since 2012) eight values at a time with
// it, the same rounding (to nearest even) as the scalar loops' elsewhere.
#if defined(__x86_64__)
#define PSF_F16C __attribute__((target("avx2,f16c")))
PSF_F16C inline __m256 SaturateHalf(__m256 v) {
  // max/min return their second operand when either is NaN: a NaN stays NaN.
  return _mm256_min_ps(_mm256_set1_ps(kHalfMax), _mm256_max_ps(_mm256_set1_ps(-kHalfMax), v));
}

PSF_F16C void EncodeHalfF16c(const float* src, int64_t n, std::byte* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(SaturateHalf(_mm256_loadu_ps(src + i)), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), h);
  }
  for (; i < n; ++i) {
    const _Float16 h = ToHalf(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

PSF_F16C void DecodeHalfF16c(const std::byte* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
  for (; i < n; ++i) {
    _Float16 h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = static_cast<float>(h);
  }
}

PSF_F16C void FeedbackHalfF16c(const float* g, float* residual, int64_t n, std::byte* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_add_ps(_mm256_loadu_ps(g + i), _mm256_loadu_ps(residual + i));
    const __m128i h = _mm256_cvtps_ph(SaturateHalf(v), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_ps(residual + i, _mm256_sub_ps(v, _mm256_cvtph_ps(h)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), h);
  }
  for (; i < n; ++i) {
    const float v = g[i] + residual[i];
    const _Float16 h = ToHalf(v);
    residual[i] = v - static_cast<float>(h);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

bool HasF16c() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  return has;
}
#else
bool HasF16c() { return false; }
#endif

void EncodeHalf(const float* src, int64_t n, std::byte* dst) {
#if defined(__x86_64__)
  if (HasF16c()) return EncodeHalfF16c(src, n, dst);
#endif
  for (int64_t i = 0; i < n; ++i) {
    const _Float16 h = ToHalf(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

void DecodeHalf(const std::byte* src, int64_t n, float* dst) {
#if defined(__x86_64__)
  if (HasF16c()) return DecodeHalfF16c(src, n, dst);
#endif
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

void FeedbackHalf(const float* g, float* residual, int64_t n, std::byte* dst) {
#if defined(__x86_64__)
  if (HasF16c()) return FeedbackHalfF16c(g, residual, n, dst);
#endif
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
