// The text tasks' readers: records split by fortune the same way in every
// task, BERT's masking rule, the classifier's records and its errors.
#include "common/text_dataset.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include <unistd.h>

namespace psforge {
namespace {

class FortuneFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) / ("fortunes_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    // Three categories of numbered "fortunes", each a few lines long.
    for (const char* name : {"apples", "birds", "clocks"}) {
      std::ofstream out(dir_ / name);
      for (int i = 0; i < 60; ++i) {
        out << name << " saying number " << i << ",\nwith a second line about " << name << ".\n%\n";
      }
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
};

std::string Decode(const TextCorpus& c, const float* ids, int64_t n) {
  std::string s;
  for (int64_t i = 0; i < n; ++i) s += static_cast<char>(c.vocabulary[static_cast<std::size_t>(ids[i])]);
  return s;
}

TEST_F(FortuneFiles, TheClassifiersTestFortunesAreNeverInThePretrainingText) {
  auto corpus = ReadTextCorpus({dir_.string()});
  ASSERT_TRUE(corpus.ok()) << corpus.status().ToString();
  auto masked = MaskedText(*corpus, 16, 5);
  ASSERT_TRUE(masked.ok()) << masked.status().ToString();
  auto classes = ClassifyText(*corpus, {"birds", "apples", "clocks"}, 40, 5);
  ASSERT_TRUE(classes.ok()) << classes.status().ToString();
  EXPECT_EQ(classes->train.classes, 3);
  EXPECT_EQ(classes->train.tokens, static_cast<int64_t>(corpus->vocabulary.size()) + 1);
  EXPECT_EQ(masked->train.tokens, classes->train.tokens);
  EXPECT_EQ(classes->train.rows + classes->test.rows, 180);
  EXPECT_GT(classes->test.rows, 10);
  EXPECT_GT(classes->train.rows, 100);
  const std::string pretraining = Decode(*corpus, masked->train.x.data(), static_cast<int64_t>(masked->train.x.size()));
  const std::string validation = Decode(*corpus, masked->test.x.data(), static_cast<int64_t>(masked->test.x.size()));
  for (int64_t r = 0; r < classes->test.rows; ++r) {
    // A test record: its fortune (up to its "%" line), then the fortune again.
    const std::string text = Decode(*corpus, classes->test.x.data() + r * 40, 40);
    const std::string fortune = text.substr(0, text.find('%'));
    ASSERT_GT(fortune.size(), 10u) << text;
    EXPECT_EQ(pretraining.find(fortune), std::string::npos) << fortune;
    // Its start is in the validation text, unless a window boundary cut it.
    EXPECT_TRUE(validation.find(fortune.substr(0, 16)) != std::string::npos ||
                validation.find(fortune.substr(fortune.size() - 12)) != std::string::npos)
        << fortune;
  }
  // The label is the position in data.classes: "birds" is class 0.
  for (int64_t r = 0; r < classes->train.rows; ++r) {
    const std::string text = Decode(*corpus, classes->train.x.data() + r * 40, 40);
    const char* want[] = {"birds", "apples", "clocks"};
    EXPECT_EQ(text.rfind(want[static_cast<int>(classes->train.targets[static_cast<std::size_t>(r)])], 0), 0u) << text;
  }
}

TEST_F(FortuneFiles, AClassNoFileHasIsNamed) {
  auto corpus = ReadTextCorpus({dir_.string()});
  ASSERT_TRUE(corpus.ok());
  auto classes = ClassifyText(*corpus, {"apples", "dogs"}, 40, 5);
  ASSERT_FALSE(classes.ok());
  EXPECT_NE(classes.status().message().find("dogs"), std::string::npos) << classes.status().message();
  EXPECT_NE(classes.status().message().find("apples, birds, clocks"), std::string::npos) << classes.status().message();
}

TEST_F(FortuneFiles, AShortRecordRepeatsToFillTheWindow) {
  auto corpus = ReadTextCorpus({dir_.string()});
  ASSERT_TRUE(corpus.ok());
  auto classes = ClassifyText(*corpus, {"apples", "birds"}, 200, 5);
  ASSERT_TRUE(classes.ok());
  const std::string text = Decode(*corpus, classes->train.x.data(), 200);
  const std::string one = text.substr(0, text.find("%\n") + 2);
  EXPECT_EQ(text.substr(one.size(), one.size()), one);
}

TEST(MaskForPretraining, FollowsBertsRuleAndDependsOnlyOnSeedEpochAndRow) {
  constexpr int64_t kPositions = 200000, kVocabulary = 50;
  std::vector<float> ids(kPositions), targets;
  for (int64_t i = 0; i < kPositions; ++i) ids[static_cast<std::size_t>(i)] = static_cast<float>(i % kVocabulary);
  const std::vector<float> original = ids;
  targets = ids;
  MaskForPretraining(7, 1, 3, kVocabulary, ids.data(), targets.data(), kPositions);
  int64_t chosen = 0, masked = 0, kept = 0, random = 0;
  for (int64_t i = 0; i < kPositions; ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (targets[k] < 0) {
      EXPECT_EQ(targets[k], -1.0f);
      ASSERT_EQ(ids[k], original[k]) << "an unchosen position changed at " << i;
      continue;
    }
    ++chosen;
    ASSERT_EQ(targets[k], original[k]);
    if (ids[k] == kVocabulary) {
      ++masked;
    } else if (ids[k] == original[k]) {
      ++kept;
    } else {
      ASSERT_GE(ids[k], 0);
      ASSERT_LT(ids[k], kVocabulary);
      ++random;
    }
  }
  // Binomial counts: 4 standard deviations either way.
  EXPECT_NEAR(static_cast<double>(chosen) / kPositions, kMaskRate, 4 * std::sqrt(kMaskRate * 0.85 / kPositions));
  const double c = static_cast<double>(chosen);
  EXPECT_NEAR(masked / c, 0.8, 4 * std::sqrt(0.16 / c));
  // A random character equals the original one time in kVocabulary.
  EXPECT_NEAR((kept + random) / c, 0.2, 4 * std::sqrt(0.16 / c));
  EXPECT_NEAR(random / c, 0.1 * (1 - 1.0 / kVocabulary), 4 * std::sqrt(0.09 / c));

  auto again = [&](uint64_t seed, int64_t epoch, int64_t row) {
    std::vector<float> x = original, t = original;
    MaskForPretraining(seed, epoch, row, kVocabulary, x.data(), t.data(), 256);
    return std::make_pair(x, t);
  };
  EXPECT_EQ(again(7, 1, 3), again(7, 1, 3));
  EXPECT_NE(again(7, 1, 3), again(7, 2, 3));
  EXPECT_NE(again(7, 1, 3), again(7, 1, 4));
  EXPECT_NE(again(7, 1, 3), again(8, 1, 3));
}

TEST(MajorityAccuracy, IsTheTestShareOfTheMostFrequentTrainingClass) {
  Dataset train, test;
  train.classes = test.classes = 3;
  train.targets = {0, 2, 2, 1, 2};
  train.rows = 5;
  test.targets = {2, 0, 2, 1};
  test.rows = 4;
  EXPECT_DOUBLE_EQ(MajorityAccuracy(train, test), 0.5);
}

}  // namespace
}  // namespace psforge
