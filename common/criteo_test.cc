#include "common/criteo.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "common/ctr_metrics.h"

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
