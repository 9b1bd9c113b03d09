#include "common/criteo.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "common/ctr_metrics.h"
#include "common/dataset.h"
#include "common/record_blocks.h"

namespace psforge {
namespace {

// A line with label `label`, integer features 0..12 (I3 empty) and
// categorical ids 0xa0..0xb9 (C5 empty).
std::string Line(int label = 1) {
  std::string s = std::to_string(label);
  for (int i = 0; i < kCriteoDense; ++i) {
    s.push_back('\t');
    if (i != 2) s.append(std::to_string(i - 1));
  }
  for (int i = 0; i < kCriteoCategorical; ++i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%x", 0xa0 + i);
    s.push_back('\t');
    if (i != 4) s.append(buf);
  }
  return s;
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            (name + "." + std::to_string(::getpid()))).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(Criteo, ALineWithMissingValuesParses) {
  CtrRecord r;
  Status s = ParseCriteoLine(Line() + "\r", &r);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(r.label, 1.0f);
  EXPECT_EQ(r.dense[0], -1) << "negative counts occur in the real logs (I2)";
  EXPECT_EQ(r.dense[12], 11);
  EXPECT_EQ(r.dense_missing, 1u << 2);
  EXPECT_EQ(r.categorical[0], 0xa0u);
  EXPECT_EQ(r.categorical[25], 0xb9u);
  EXPECT_EQ(r.categorical_missing, 1u << 4);
}

TEST(Criteo, EveryMalformedLineIsNamed) {
  CtrRecord r;
  auto refusal = [&](const std::string& line) { return ParseCriteoLine(line, &r).message(); };
  std::string bad_label = Line();
  bad_label[0] = '2';
  EXPECT_NE(refusal(bad_label).find("the label is '2'"), std::string::npos);
  std::string bad_int = Line();
  bad_int.replace(bad_int.find("\t-1\t"), 4, "\t1x\t");
  EXPECT_NE(refusal(bad_int).find("integer feature I1 is '1x'"), std::string::npos);
  std::string bad_hex = Line();
  bad_hex.replace(bad_hex.find("\ta0"), 3, "\tzz");
  EXPECT_NE(refusal(bad_hex).find("categorical feature C1 is 'zz'"), std::string::npos);
  EXPECT_NE(refusal(Line() + "\tff").find("more than 40"), std::string::npos);
  EXPECT_NE(refusal(Line().substr(0, Line().rfind('\t'))).find("39 tab-separated columns, expected 40"),
            std::string::npos);
  EXPECT_NE(refusal(Line() + std::string(15, '0')).find("categorical feature C26"), std::string::npos)
      << "17 hexadecimal digits do not fit 64 bits";
}

TEST(Criteo, TheReaderNamesTheFileAndLineOrCountsAndSkips) {
  const std::string path = WriteFile("criteo_bad.tsv", Line(1) + "\n" + Line(0) + "\n\n" + "1\tnot a line\n" +
                                                         std::string(5000, '1') + "\n" + Line(1));
  {
    auto reader = CriteoReader::Open(path);
    ASSERT_TRUE(reader.ok());
    CtrRecord r;
    EXPECT_TRUE(*(*reader)->Next(&r));
    EXPECT_TRUE(*(*reader)->Next(&r));
    EXPECT_EQ(r.label, 0.0f);
    auto third = (*reader)->Next(&r);
    ASSERT_FALSE(third.ok());
    EXPECT_NE(third.status().message().find(path + " line 3: empty line"), std::string::npos)
        << third.status().message();
  }
  auto reader = CriteoReader::Open(path, /*skip_malformed=*/true);
  ASSERT_TRUE(reader.ok());
  CtrRecord r;
  int records = 0;
  while (true) {
    auto more = (*reader)->Next(&r);
    ASSERT_TRUE(more.ok()) << more.status().ToString();
    if (!*more) break;
    ++records;
  }
  EXPECT_EQ(records, 3) << "the last line has no newline and still counts";
  EXPECT_EQ((*reader)->malformed_lines(), 3) << "the empty line, the short one and the 5000-byte one";
  EXPECT_EQ((*reader)->line_number(), 6);
  std::filesystem::remove(path);
  EXPECT_EQ(CriteoReader::Open("/nonexistent/day_0.tsv").status().code(), StatusCode::kNotFound);
}

TEST(Criteo, ANulByteIsContentNotTheEndOfTheLine) {
  std::string text = Line(1) + "\n";
  text[2] = '\0';
  const std::string path = WriteFile("criteo_nul.tsv", text + Line(0) + "\n");
  auto reader = CriteoReader::Open(path);
  ASSERT_TRUE(reader.ok());
  CtrRecord r;
  auto first = (*reader)->Next(&r);
  ASSERT_FALSE(first.ok());
  EXPECT_NE(first.status().message().find("line 1: integer feature I1"), std::string::npos) << first.status().message();
  std::filesystem::remove(path);
}

// A log of `n` records whose record i has label i % 2 and I1 = i, with a
// malformed line after every 97th.
std::string NumberedLog(int n) {
  std::string text;
  for (int i = 0; i < n; ++i) {
    std::string line = Line(i % 2);
    line.replace(2, 2, std::to_string(i));  // I1 was "-1"
    text += line + "\n";
    if (i % 97 == 0) text += "not a record\n";
  }
  return text;
}

TEST(Criteo, AStreamedLogHoldsOnlyItsIndexAndReadsBackEveryRecordAsReadCriteo) {
  const std::string path = WriteFile("streamed.tsv", NumberedLog(3000));
  int64_t skipped_read = 0, skipped_index = 0;
  auto whole = ReadCriteo(path, true, &skipped_read);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  auto streamed = IndexCriteo(path, true, &skipped_index);
  ASSERT_TRUE(streamed.ok()) << streamed.status().ToString();
  ASSERT_EQ(streamed->rows, 3000);
  EXPECT_EQ(skipped_index, skipped_read);
  EXPECT_EQ(skipped_index, 31);
  EXPECT_TRUE(streamed->x.empty() && streamed->keys.empty() && streamed->targets.empty());
  ASSERT_TRUE(streamed->stream);
  EXPECT_EQ(streamed->stream->offsets.size(), (3000 + kStreamBlock - 1) / kStreamBlock);

  auto blocks = RecordBlocks::Open(*streamed, 3);
  ASSERT_TRUE(blocks.ok()) << blocks.status().ToString();
  // Records in an order that jumps between blocks, more blocks than are held.
  for (int64_t k = 0; k < 3000; ++k) {
    const int64_t i = (k * 1237) % 3000;
    auto b = (*blocks)->BlockOf(i);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    const int64_t j = i - (*b)->first;
    ASSERT_EQ((*b)->targets[j], whole->targets[i]) << i;
    ASSERT_EQ(std::memcmp(&(*b)->x[j * kCriteoDense], &whole->x[i * kCriteoDense], kCriteoDense * sizeof(float)), 0) << i;
    ASSERT_EQ(std::memcmp(&(*b)->keys[j * kCriteoCategorical], &whole->keys[i * kCriteoCategorical],
                          kCriteoCategorical * sizeof(uint64_t)), 0) << i;
  }
  EXPECT_EQ(whole->x[100 * kCriteoDense], std::log1p(100.0f));
  EXPECT_GT((*blocks)->blocks_read(), 12);
  std::filesystem::remove(path);
}

TEST(Criteo, AStreamedLogChangedAfterItWasIndexedIsADataLossNamingIt) {
  const std::string path = WriteFile("changed.tsv", NumberedLog(1000));
  auto streamed = IndexCriteo(path, false);
  ASSERT_FALSE(streamed.ok()) << "malformed lines must be an error without skip_malformed";
  EXPECT_NE(streamed.status().message().find(path + " line 2"), std::string::npos) << streamed.status().message();
  streamed = IndexCriteo(path, true);
  ASSERT_TRUE(streamed.ok());
  // Shorter than it was.
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  auto blocks = RecordBlocks::Open(*streamed, 4);
  ASSERT_TRUE(blocks.ok());
  auto last = (*blocks)->BlockOf(999);
  ASSERT_FALSE(last.ok());
  EXPECT_EQ(last.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(last.status().message().find(path), std::string::npos) << last.status().message();
  EXPECT_NE(last.status().message().find("shorter"), std::string::npos) << last.status().message();
  EXPECT_TRUE((*blocks)->BlockOf(10).ok()) << "the part still there reads";
  EXPECT_FALSE((*blocks)->BlockOf(1000).ok());
  std::filesystem::remove(path);
}

TEST(CtrMetrics, AucCountsOrderedPairsAndHalfTheTies) {
  EXPECT_DOUBLE_EQ(Auc(std::vector<float>{0.1f, 0.4f, 0.35f, 0.8f}, std::vector<float>{0, 0, 1, 1}), 0.75);
  EXPECT_DOUBLE_EQ(Auc(std::vector<float>{0.5f, 0.5f}, std::vector<float>{0, 1}), 0.5);
  EXPECT_DOUBLE_EQ(Auc(std::vector<float>{0.2f, 0.9f}, std::vector<float>{0, 1}), 1.0);
  EXPECT_DOUBLE_EQ(Auc(std::vector<float>{0.2f, 0.9f}, std::vector<float>{1, 1}), 0.5) << "one class only";
  EXPECT_NEAR(LogLoss(std::vector<float>{0.9f, 0.2f}, std::vector<float>{1, 0}),
              -(std::log(0.9) + std::log(0.8)) / 2, 1e-7);
  EXPECT_NEAR(LogLoss(std::vector<float>{0.0f}, std::vector<float>{1}), -std::log(1e-7), 1e-6) << "clamped";
}

}  // namespace
}  // namespace psforge
