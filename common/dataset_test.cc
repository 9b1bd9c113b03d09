#include "common/dataset.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace psforge {
namespace {

namespace fs = std::filesystem;

std::vector<unsigned char> IdxBytes(uint32_t magic, std::vector<uint32_t> dims,
                                    std::vector<unsigned char> body) {
  std::vector<unsigned char> out;
  auto put = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<unsigned char>(v >> s));
  };
  put(magic);
  for (uint32_t d : dims) put(d);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("psforge_dataset_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::vector<unsigned char>& bytes, bool gz = false) {
    std::string path = (dir_ / name).string();
    if (gz) {
      gzFile f = gzopen(path.c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    return path;
  }
  std::string WriteText(const std::string& name, const std::string& text) {
    return Write(name, std::vector<unsigned char>(text.begin(), text.end()));
  }

  // Two 2x3 images and their labels.
  std::string Images(bool gz = false) {
    return Write(gz ? "img.gz" : "img", IdxBytes(0x803, {2, 2, 3}, {0, 255, 51, 1, 2, 3, 4, 5, 6, 7, 8, 9}), gz);
  }
  std::string Labels(bool gz = false) { return Write(gz ? "lab.gz" : "lab", IdxBytes(0x801, {2}, {7, 3}), gz); }

  fs::path dir_;
};

TEST_F(DatasetTest, ReadsPlainAndGzipIdx) {
  for (bool gz : {false, true}) {
    auto d = ReadIdx(Images(gz), Labels(gz), 1.0f / 255);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    EXPECT_EQ(d->rows, 2);
    EXPECT_EQ(d->features, 6);
    EXPECT_FLOAT_EQ(d->x[1], 1.0f);
    EXPECT_FLOAT_EQ(d->x[2], 0.2f);
    EXPECT_EQ(d->targets, (std::vector<float>{7, 3}));
  }
}

TEST_F(DatasetTest, WrongMagicIsNamed) {
  auto bad = Write("bad", IdxBytes(0x801, {2, 2, 3}, std::vector<unsigned char>(12)));
  auto d = ReadIdx(bad, Labels(), 1);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(d.status().message().find("wrong magic 0x00000801"), std::string::npos) << d.status().message();
}

TEST_F(DatasetTest, TruncatedFileIsDataLoss) {
  for (bool gz : {false, true}) {
    auto t = Write(gz ? "t.gz" : "t", IdxBytes(0x803, {2, 2, 3}, std::vector<unsigned char>(11)), gz);
    auto d = ReadIdx(t, Labels(), 1);
    ASSERT_FALSE(d.ok());
    EXPECT_NE(d.status().message().find("truncated"), std::string::npos) << d.status().message();
  }
  auto header_only = Write("h", {0, 0, 8});
  EXPECT_FALSE(ReadIdx(header_only, Labels(), 1).ok());
}

TEST_F(DatasetTest, CorruptGzipIsDataLoss) {
  std::string path = Images(true);
  std::vector<unsigned char> bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  for (std::size_t i = 12; i < bytes.size() - 8; ++i) bytes[i] ^= 0x5a;
  auto d = ReadIdx(Write("corrupt.gz", bytes), Labels(), 1);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kDataLoss);
}

TEST_F(DatasetTest, TrailingDataIsDataLoss) {
  auto extra = Write("extra", IdxBytes(0x801, {2}, {1, 2, 3}));
  auto d = ReadIdx(Images(), extra, 1);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("after the last record"), std::string::npos);
}

TEST_F(DatasetTest, CountMismatchIsNamed) {
  auto three = Write("three", IdxBytes(0x801, {3}, {1, 2, 3}));
  auto d = ReadIdx(Images(), three, 1);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("2 images"), std::string::npos);
  EXPECT_NE(d.status().message().find("3 labels"), std::string::npos);
}

TEST_F(DatasetTest, MissingFileIsNotFound) {
  auto d = ReadIdx((dir_ / "nope").string(), Labels(), 1);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
}

TEST_F(DatasetTest, ReadsCsvWithHeaderAndLabelColumn) {
  auto d = ReadCsv(WriteText("a.csv", "x,label,y\n1, 0 ,2.5\r\n-3,1,4e-1\n\n"), 1, true);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->rows, 2);
  EXPECT_EQ(d->features, 2);
  EXPECT_EQ(d->x, (std::vector<float>{1, 2.5f, -3, 0.4f}));
  EXPECT_EQ(d->targets, (std::vector<float>{0, 1}));
}

TEST_F(DatasetTest, CsvBadNumberNamesLineAndColumn) {
  auto d = ReadCsv(WriteText("b.csv", "a,b\n1,2\n3,abc\n"), -1, true);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("b.csv:3: column 2: 'abc'"), std::string::npos) << d.status().message();
  EXPECT_FALSE(ReadCsv(WriteText("c.csv", "1,nan\n"), -1, false).ok());
  EXPECT_FALSE(ReadCsv(WriteText("e.csv", "1,,2\n"), -1, false).ok());
}

TEST_F(DatasetTest, CsvRaggedRowsAndEmptyFilesAreErrors) {
  auto ragged = ReadCsv(WriteText("r.csv", "1,2,3\n4,5\n"), -1, false);
  ASSERT_FALSE(ragged.ok());
  EXPECT_NE(ragged.status().message().find("r.csv:2"), std::string::npos);
  EXPECT_FALSE(ReadCsv(WriteText("empty.csv", "a,b\n"), -1, true).ok());
  EXPECT_FALSE(ReadCsv(WriteText("one.csv", "1\n2\n"), -1, false).ok());
  EXPECT_FALSE(ReadCsv(WriteText("lc.csv", "1,2\n"), 5, false).ok());
}

TEST_F(DatasetTest, StandardizeUsesTrainingStatistics) {
  Dataset train{2, 2, {0, 2, 4, 6}, {0, 1}}, test{1, 2, {3, 3}, {0}};
  FeatureStats s = ComputeFeatureStats(train);
  EXPECT_DOUBLE_EQ(s.mean, 3);
  EXPECT_DOUBLE_EQ(s.stddev, std::sqrt(5.0));
  Standardize(s, &train);
  Standardize(s, &test);
  EXPECT_FLOAT_EQ(train.x[0], static_cast<float>(-3 / std::sqrt(5.0)));
  EXPECT_FLOAT_EQ(test.x[0], 0.0f);
}

TEST(LoadDataset, RejectsLabelsTheModelCannotUse) {
  auto dir = fs::temp_directory_path() / ("psforge_load_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tr.csv") << "1,0\n2,1\n3,2\n";
  std::ofstream(dir / "te.csv") << "1,0\n";
  JobConfig c;
  c.data.format = DataFormat::kCsv;
  c.data.csv_header = false;
  c.data.train_csv = (dir / "tr.csv").string();
  c.data.test_csv = (dir / "te.csv").string();
  c.model.kind = ModelKind::kLogisticRegression;
  auto d = LoadDataset(c, true);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("must be 0 or 1"), std::string::npos);
  c.model.kind = ModelKind::kMlp;
  c.model.classes = 2;
  EXPECT_FALSE(LoadDataset(c, true).ok());
  c.model.classes = 3;
  EXPECT_TRUE(LoadDataset(c, true).ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace psforge
