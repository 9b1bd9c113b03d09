#include "common/row_ids.h"

#include "common/radix_sort.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace psforge {
namespace {

std::vector<std::byte> Bytes(std::initializer_list<int> values) {
  std::vector<std::byte> b;
  for (int v : values) b.push_back(static_cast<std::byte>(v));
  return b;
}

TEST(RowIds, SortedRowsRoundTripInAboutOneByteEachWhenDense) {
  std::mt19937_64 rng(3);
  std::vector<uint64_t> rows;
  for (int i = 0; i < 5000; ++i) rows.push_back(rng() % 20000);
  rows.push_back(0);
  rows.push_back(kMaxTableRows - 1);
  SortUnique(&rows);
  std::vector<std::byte> bytes;
  EncodeRowIds(rows, &bytes);
  EXPECT_LT(bytes.size(), rows.size() * 2) << "nearby rows cost a byte or two each";
  std::vector<uint64_t> back;
  Status s = DecodeRowIds(bytes, static_cast<int64_t>(rows.size()), kMaxTableRows, &back);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(back, rows);
}

TEST(RowIds, TheLargestRowsAndAnEmptyBatchRoundTrip) {
  for (std::vector<uint64_t> rows : {std::vector<uint64_t>{}, std::vector<uint64_t>{UINT64_MAX - 2, UINT64_MAX - 1}}) {
    std::vector<std::byte> bytes;
    EncodeRowIds(rows, &bytes);
    std::vector<uint64_t> back{42};
    ASSERT_TRUE(DecodeRowIds(bytes, static_cast<int64_t>(rows.size()), UINT64_MAX, &back).ok());
    EXPECT_EQ(back, rows);
  }
}

TEST(RowIds, EveryMalformedBatchIsRefusedByName) {
  std::vector<uint64_t> out;
  auto refusal = [&](const std::vector<std::byte>& bytes, int64_t count, uint64_t table = 1000) {
    Status s = DecodeRowIds(bytes, count, table, &out);
    EXPECT_FALSE(s.ok());
    return s.message();
  };
  EXPECT_NE(refusal(Bytes({5, 0}), 2).find("repeated"), std::string::npos);
  EXPECT_NE(refusal(Bytes({0x80}), 1).find("end inside row 0"), std::string::npos);
  EXPECT_NE(refusal(Bytes({5}), 2).find("cannot fit"), std::string::npos);
  EXPECT_NE(refusal(Bytes({5, 1, 9}), 2).find("1 bytes after"), std::string::npos);
  EXPECT_NE(refusal(Bytes({0xe8, 0x07}), 1).find("row 1000 outside the table's 1000 rows"), std::string::npos);
  EXPECT_NE(refusal(Bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}), 1, UINT64_MAX)
                .find("overflows 64 bits"),
            std::string::npos);
  EXPECT_NE(refusal(Bytes({0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x05}), 2, UINT64_MAX)
                .find("row 1 overflows"),
            std::string::npos);
  EXPECT_NE(refusal(Bytes({0x85, 0x00}), 1).find("overlong"), std::string::npos);
  EXPECT_NE(refusal({}, -1).find("row count -1"), std::string::npos);
  EXPECT_NE(refusal({}, kMaxRowsPerMessage + 1).find("row count"), std::string::npos);
  EXPECT_TRUE(out.empty()) << "nothing half-decoded is left behind for a caller to use";
}

TEST(RowIds, FeaturesSpreadOverTheTableAndRowsOverTheServers) {
  const uint64_t rows = 1 << 16;
  std::vector<int> per_server(3), per_quarter(4);
  for (uint64_t f = 0; f < 30000; ++f) {
    const uint64_t row = RowOfFeature(f, /*seed=*/0, rows);
    ASSERT_LT(row, rows);
    ++per_quarter[row / (rows / 4)];
    ++per_server[ServerOfRow(row, 3)];
  }
  for (int n : per_quarter) EXPECT_NEAR(n, 7500, 400);
  for (int n : per_server) EXPECT_NEAR(n, 10000, 400);
  EXPECT_NE(RowOfFeature(7, 1, rows), RowOfFeature(7, 2, rows)) << "the seed picks another mapping";
  EXPECT_EQ(RowOfFeature(7, 1, rows), RowOfFeature(7, 1, rows));
}

// RadixSort against std::sort: random keys of several widths, keys whose
// bytes are all alike in some positions (the skipped passes), and duplicates.
TEST(RadixSort, SortsAsStdSortDoes) {
  std::mt19937_64 rng(7);
  for (int bits : {1, 8, 13, 24, 48, 64}) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{5}, std::size_t{9000}}) {
      std::vector<uint64_t> keys(n);
      for (auto& k : keys) k = bits == 64 ? rng() : rng() & ((uint64_t{1} << bits) - 1);
      if (n > 2) keys[1] = keys[0];
      for (std::size_t i = 0; bits == 48 && i < n; ++i) keys[i] = (keys[i] & ~uint64_t{0xFF00}) | 0x4200;
      std::vector<uint64_t> expected = keys, scratch;
      std::sort(expected.begin(), expected.end());
      RadixSort(&keys, &scratch, bits);
      EXPECT_EQ(keys, expected) << bits << " bits, " << n << " keys";
    }
  }
}

}  // namespace
}  // namespace psforge
