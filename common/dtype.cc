#include "common/dtype.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/vector_clones.h"

#if defined(__x86_64__)
#include <cpuid.h>
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

// IEEE half in bits, portable (GCC and clang builds, any CPU): rounded to
// nearest even as F16C's vcvtps2ph rounds, after saturating to +-65504; a
// NaN (which passes std::max and std::min: they return their first
// argument when a comparison is false) stays NaN.
inline uint16_t ToHalf(float v) {
  v = std::min(std::max(v, -kHalfMax), kHalfMax);
  uint32_t x;
  std::memcpy(&x, &v, sizeof x);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (x >= 0x38800000u) {  // a normal half (>= 2^-14): rebias the exponent, keep 10 mantissa bits
    uint32_t h = (x - 0x38000000u) >> 13;
    const uint32_t rest = x & 0x1fffu;
    h += (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ? 1u : 0u;
    return static_cast<uint16_t>(sign | h);
  }
  if (x < 0x33000000u) return sign;  // below 2^-25: rounds to zero
  // A subnormal half: units of 2^-24.
  const uint32_t shift = 126u - (x >> 23);
  const uint32_t m = (x & 0x7fffffu) | 0x800000u;
  uint32_t h = m >> shift;
  const uint32_t rest = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  h += (rest > half || (rest == half && (h & 1u))) ? 1u : 0u;
  return static_cast<uint16_t>(sign | h);
}

inline float FromHalf(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
  if (e == 0x1fu) {
    x = sign | 0x7f800000u | (m << 13);  // infinity, NaN
  } else if (e != 0) {
    x = sign | ((e + 112u) << 23) | (m << 13);
  } else if (m == 0) {
    x = sign;
  } else {  // subnormal: normalise
    e = 113;
    while (!(m & 0x400u)) m <<= 1, --e;
    x = sign | (e << 23) | ((m & 0x3ffu) << 13);
  }
  float v;
  std::memcpy(&v, &x, sizeof v);
  return v;
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

// Half precision: where the CPU has F16C (every x86-64 since 2012), eight
// values at a time with it (compilers do not vectorise the bit-level
// conversion), the same rounding (to nearest even) as the scalar loops'.
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
    const uint16_t h = ToHalf(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

PSF_F16C void DecodeHalfF16c(const std::byte* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = FromHalf(h);
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
    const uint16_t h = ToHalf(v);
    residual[i] = v - FromHalf(h);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

bool HasF16c() {
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    // AVX2 (with the OS's support for its registers), and F16C: CPUID leaf 1, ECX bit 29.
    return __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
  }();
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
    const uint16_t h = ToHalf(src[i]);
    std::memcpy(dst + 2 * i, &h, 2);
  }
}

void DecodeHalf(const std::byte* src, int64_t n, float* dst) {
#if defined(__x86_64__)
  if (HasF16c()) return DecodeHalfF16c(src, n, dst);
#endif
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = FromHalf(h);
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
    const uint16_t h = ToHalf(v);
    residual[i] = v - FromHalf(h);
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
