#include "common/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace psforge {
namespace {

float RoundTrip(DType d, float v) {
  std::byte wire[4];
  EncodeValues(d, &v, 1, wire);
  float out = 0;
  DecodeValues(d, wire, 1, &out);
  return out;
}

TEST(DType, NamesRoundTrip) {
  for (DType d : {DType::kF32, DType::kBf16, DType::kF16}) EXPECT_EQ(DTypeFromName(DTypeName(d)), d);
  EXPECT_FALSE(DTypeFromName("int8").has_value());
  EXPECT_EQ(DTypeBytes(DType::kF32), 4u);
  EXPECT_EQ(DTypeBytes(DType::kBf16), 2u);
  EXPECT_EQ(DTypeBytes(DType::kF16), 2u);
}

TEST(DType, Bf16RoundsToNearestTiesToEven) {
  EXPECT_EQ(RoundTrip(DType::kBf16, 1.0f), 1.0f);
  // bf16 keeps 7 stored mantissa bits: 1 + 2^-8 lies halfway between 1 and
  // 1 + 2^-7 and goes to the even one (1); just above it goes up.
  EXPECT_EQ(RoundTrip(DType::kBf16, 1.0f + std::ldexp(1.0f, -8)), 1.0f);
  EXPECT_EQ(RoundTrip(DType::kBf16, 1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 1.0f + std::ldexp(1.0f, -7));
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
  EXPECT_EQ(RoundTrip(DType::kBf16, 1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(RoundTrip(DType::kBf16, -2.5f), -2.5f);
  EXPECT_NEAR(RoundTrip(DType::kBf16, 3e38f), 3e38f, 3e38f * 0x1p-8f);  // float32's range
  EXPECT_TRUE(std::isinf(RoundTrip(DType::kBf16, std::numeric_limits<float>::infinity())));
  EXPECT_TRUE(std::isnan(RoundTrip(DType::kBf16, std::numeric_limits<float>::quiet_NaN())));
  // A NaN whose payload sits in the low bits only must not become infinity.
  uint32_t bits = 0x7f800001u;
  float nan;
  std::memcpy(&nan, &bits, sizeof nan);
  EXPECT_TRUE(std::isnan(RoundTrip(DType::kBf16, nan)));
}

TEST(DType, HalfRoundsAndSaturates) {
  EXPECT_EQ(RoundTrip(DType::kF16, 1.0f), 1.0f);
  EXPECT_EQ(RoundTrip(DType::kF16, 0.1f), 0.0999755859375f);
  EXPECT_EQ(RoundTrip(DType::kF16, 1.0f + std::ldexp(1.0f, -11)), 1.0f);  // halfway: to even
  EXPECT_EQ(RoundTrip(DType::kF16, 1e6f), 65504.0f);
  EXPECT_EQ(RoundTrip(DType::kF16, -1e30f), -65504.0f);
  EXPECT_EQ(RoundTrip(DType::kF16, 1e-9f), 0.0f);  // below the smallest subnormal
  EXPECT_TRUE(std::isnan(RoundTrip(DType::kF16, std::numeric_limits<float>::quiet_NaN())));
}

TEST(DType, ManyValuesAtOnceMatchOneAtATime) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> v(1037);  // not a multiple of any vector width
  for (float& x : v) x = normal(rng);
  for (DType d : {DType::kF32, DType::kBf16, DType::kF16}) {
    std::vector<std::byte> wire(v.size() * DTypeBytes(d) + 1);
    EncodeValues(d, v.data(), static_cast<int64_t>(v.size()), wire.data() + 1);  // unaligned
    std::vector<float> back(v.size());
    DecodeValues(d, wire.data() + 1, static_cast<int64_t>(v.size()), back.data());
    for (std::size_t i = 0; i < v.size(); ++i) {
      ASSERT_EQ(back[i], RoundTrip(d, v[i])) << DTypeName(d) << " value " << i;
      // Half an ulp: at most 2^-8 of the value for bf16, 2^-11 for fp16 (normal values).
      const float bound = d == DType::kF32 ? 0.0f : std::abs(v[i]) * (d == DType::kBf16 ? 0x1p-8f : 0x1p-11f);
      ASSERT_LE(std::abs(back[i] - v[i]), bound) << DTypeName(d) << " value " << i;
    }
  }
}

// The half conversions run eight at a time with F16C where the CPU has it
// and value by value (the loops' tails, and CPUs without it) in portable
// bit arithmetic: both agree on every half, and on every tie between two
// neighbouring halves (rounded to the even one), subnormals included.
TEST(DType, HalfConversionsAgreeOnEveryValueAndEveryTie) {
  std::vector<std::byte> all(2 * 65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    const auto bits = static_cast<uint16_t>(h);
    std::memcpy(all.data() + 2 * h, &bits, 2);
  }
  std::vector<float> decoded(65536);
  DecodeValues(DType::kF16, all.data(), 65536, decoded.data());
  std::vector<float> probes;
  for (uint32_t h = 0; h < 65536; ++h) {
    float one;
    DecodeValues(DType::kF16, all.data() + 2 * h, 1, &one);
    if (std::isnan(decoded[h])) {
      ASSERT_TRUE(std::isnan(one)) << h;
      continue;
    }
    ASSERT_EQ(std::memcmp(&one, &decoded[h], sizeof one), 0) << "half " << h;
    probes.push_back(decoded[h]);
    if ((h & 0x7fffu) < 0x7bffu) {  // a finite neighbour above: their tie, and just either side of it
      const double next = decoded[h + 1];
      const double tie = (static_cast<double>(decoded[h]) + next) / 2;
      probes.push_back(static_cast<float>(tie));
      probes.push_back(std::nextafter(static_cast<float>(tie), 0.0f));
      probes.push_back(std::nextafter(static_cast<float>(tie), static_cast<float>(2 * tie)));
    }
  }
  std::vector<std::byte> batch(2 * probes.size());
  EncodeValues(DType::kF16, probes.data(), static_cast<int64_t>(probes.size()), batch.data());
  for (std::size_t i = 0; i < probes.size(); ++i) {
    std::byte one[2];
    EncodeValues(DType::kF16, &probes[i], 1, one);
    ASSERT_EQ(std::memcmp(one, batch.data() + 2 * i, 2), 0) << "value " << probes[i];
  }
  // Ties go to the even neighbour: halfway between 1 and 1 + 2^-10 is 1.
  EXPECT_EQ(RoundTrip(DType::kF16, 1.0f + std::ldexp(1.0f, -11)), 1.0f);
  // The smallest subnormal (2^-24) and half of it (a tie with 0: to 0).
  EXPECT_EQ(RoundTrip(DType::kF16, std::ldexp(1.0f, -24)), std::ldexp(1.0f, -24));
  EXPECT_EQ(RoundTrip(DType::kF16, std::ldexp(1.0f, -25)), 0.0f);
  EXPECT_EQ(RoundTrip(DType::kF16, std::ldexp(1.5f, -25)), std::ldexp(1.0f, -24));
}

// Error feedback: what a worker sends over many steps sums to what it
// computed, to within the one rounding still held back; without the
// feedback a constant gradient below half an ulp of its sum is lost.
TEST(DType, ErrorFeedbackKeepsTheSumOfWhatWasSent) {
  for (DType d : {DType::kBf16, DType::kF16}) {
    const int64_t n = 64;
    std::vector<float> g(n), residual(n, 0.0f), sent(n);
    std::vector<double> sum_g(n, 0.0), sum_sent(n, 0.0);
    std::vector<std::byte> wire(n * 2);
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (int step = 0; step < 1000; ++step) {
      for (float& x : g) x = 1e-3f * (1.0f + 0.01f * u(rng));  // 1e-3 is 0x1.06p-10: inexact in both
      EncodeWithFeedback(d, g.data(), residual.data(), n, wire.data());
      DecodeValues(d, wire.data(), n, sent.data());
      for (int64_t i = 0; i < n; ++i) sum_g[i] += g[i], sum_sent[i] += sent[i];
    }
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(sum_sent[i] + residual[i], sum_g[i], 1e-6) << DTypeName(d) << " value " << i;
      EXPECT_LE(std::abs(residual[i]), 1e-3 * (d == DType::kBf16 ? 0x1p-8 : 0x1p-11) * 1.02)
          << DTypeName(d) << ": the residual is at most one rounding of a gradient";
    }
    // The same gradients each rounded alone drift by a whole rounding a step.
    std::vector<float> alone(n);
    EncodeValues(d, g.data(), n, wire.data());
    DecodeValues(d, wire.data(), n, alone.data());
    double drift = 0;
    for (int64_t i = 0; i < n; ++i) drift = std::max(drift, std::abs(static_cast<double>(alone[i]) - g[i]));
    EXPECT_GT(drift * 1000, 1e-4) << "rounding alone loses something a step";
  }
  std::vector<float> g{1.5f, -2.0f}, residual{0.0f, 0.0f};
  std::byte wire[8];
  EncodeWithFeedback(DType::kF32, g.data(), residual.data(), 2, wire);
  float back[2];
  std::memcpy(back, wire, sizeof back);
  EXPECT_EQ(back[0], 1.5f);
  EXPECT_EQ(back[1], -2.0f);
  EXPECT_EQ(residual[0], 0.0f);
}

}  // namespace
}  // namespace psforge
