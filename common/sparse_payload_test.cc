#include "common/sparse_payload.h"

#include <gtest/gtest.h>

#include <cstring>

namespace psforge {
namespace {

const std::vector<int64_t> kDims{4, 2};
const std::vector<uint64_t> kRows{1000, uint64_t{1} << 40};

std::vector<float> Floats(std::span<const std::byte> bytes) {
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

TEST(SparsePayload, APushWithDenseValuesAndTwoTablesSplitsBack) {
  std::vector<float> dense{1, 2, 3};
  std::vector<std::byte> frame(dense.size() * sizeof(float));
  std::memcpy(frame.data(), dense.data(), frame.size());
  const std::vector<uint64_t> rows0{3, 7, 999}, rows1{5, uint64_t{1} << 39};
  std::vector<float> g0(12), g1(4);
  for (std::size_t i = 0; i < g0.size(); ++i) g0[i] = 0.5f * static_cast<float>(i);
  for (std::size_t i = 0; i < g1.size(); ++i) g1[i] = -static_cast<float>(i);
  std::vector<SparseBlock> blocks{AppendSparseSection(SparseLayout::kPush, 0, rows0, g0, &frame),
                                  AppendSparseSection(SparseLayout::kPush, 1, rows1, g1, &frame)};
  EXPECT_EQ(blocks[0].key_bytes, 4u) << "3, +4, +992: one, one and two bytes";
  EXPECT_EQ(*SparsePayloadBytes(SparseLayout::kPush, 3, blocks, kDims), frame.size());
  auto split = SplitSparsePayload(SparseLayout::kPush, frame, 3, blocks, kDims, kRows);
  ASSERT_TRUE(split.ok()) << split.status().ToString();
  ASSERT_EQ(split->size(), 2u);
  EXPECT_EQ((*split)[0].rows, rows0);
  EXPECT_EQ(Floats((*split)[0].values), g0);
  EXPECT_EQ((*split)[1].table, 1);
  EXPECT_EQ((*split)[1].rows, rows1);
  EXPECT_EQ(Floats((*split)[1].values), g1);
}

TEST(SparsePayload, PullsCarryIdsAndRepliesCarryOnlyValues) {
  std::vector<std::byte> pull;
  const std::vector<uint64_t> rows{10, 11};
  SparseBlock asked = AppendSparseSection(SparseLayout::kPull, 1, rows, {}, &pull);
  EXPECT_EQ(pull.size(), 4u) << "two one-byte ids, padded to 4";
  auto split = SplitSparsePayload(SparseLayout::kPull, pull, 99, std::vector<SparseBlock>{asked}, kDims, kRows);
  ASSERT_TRUE(split.ok()) << split.status().ToString();
  EXPECT_EQ((*split)[0].rows, rows);
  EXPECT_TRUE((*split)[0].values.empty());
  std::vector<std::byte> reply;
  const std::vector<float> w{1, 2, 3, 4};
  SparseBlock answered = AppendSparseSection(SparseLayout::kPullReply, 1, rows, w, &reply);
  EXPECT_EQ(answered.key_bytes, 0u);
  auto back = SplitSparsePayload(SparseLayout::kPullReply, reply, 0, std::vector<SparseBlock>{answered}, kDims, kRows);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(Floats((*back)[0].values), w);
}

TEST(SparsePayload, FramesThatDisagreeWithTheirHeaderAreRefusedByName) {
  std::vector<std::byte> frame;
  const std::vector<uint64_t> rows{1, 2};
  const std::vector<float> g(8, 1.0f);
  std::vector<SparseBlock> blocks{AppendSparseSection(SparseLayout::kPush, 0, rows, g, &frame)};
  auto refusal = [&](std::span<const std::byte> f, std::vector<SparseBlock> b) {
    auto r = SplitSparsePayload(SparseLayout::kPush, f, 0, b, kDims, kRows);
    EXPECT_FALSE(r.ok());
    return r.status().message();
  };
  EXPECT_NE(refusal(std::span(frame).first(frame.size() - 4), blocks).find("take " + std::to_string(frame.size())),
            std::string::npos);
  EXPECT_NE(refusal(frame, {{5, 2, 2}}).find("names table 5; the model has 2"), std::string::npos);
  EXPECT_FALSE(SplitSparsePayload(SparseLayout::kPush, frame, int64_t{1} << 62, blocks, kDims, kRows).ok())
      << "a key range whose bytes would overflow";
  auto padded = frame;
  padded[3] = std::byte{9};
  EXPECT_NE(refusal(padded, blocks).find("padding is not zero"), std::string::npos);
  auto repeated = frame;
  repeated[1] = std::byte{0};  // the second id's delta: 0, a repeat
  EXPECT_NE(refusal(repeated, blocks).find("table 0: row 1 is repeated"), std::string::npos);
  auto beyond = frame;
  beyond[0] = std::byte{0xe8};  // 1000 | continuation? 0xe8 has the high bit: the ids run on
  beyond[1] = std::byte{0x07};
  blocks[0].rows = 1;
  EXPECT_FALSE(SplitSparsePayload(SparseLayout::kPush, beyond, 0, blocks, kDims, kRows).ok());
}

}  // namespace
}  // namespace psforge
