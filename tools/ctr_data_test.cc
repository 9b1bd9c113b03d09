// The synthetic click log: its layout reads back through CriteoReader, it is
// the same for the same seed, ids follow a skewed law, and the planted
// model's AUC is what it says and above what a simple learner reaches.
#include "tools/ctr_data.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/criteo.h"
#include "common/ctr_metrics.h"

namespace psforge {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<CtrRecord> ReadAll(const std::string& path) {
  auto reader = CriteoReader::Open(path);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  std::vector<CtrRecord> records;
  CtrRecord r;
  while (true) {
    auto more = (*reader)->Next(&r);
    EXPECT_TRUE(more.ok()) << more.status().ToString();
    if (!more.ok() || !*more) break;
    records.push_back(r);
  }
  return records;
}

TEST(CtrData, APlantedLogReadsBackAndNoSimpleLearnerBeatsItsModel) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("ctr." + std::to_string(::getpid()))).string();
  CtrDataOptions o;
  o.train_rows = 40000;
  o.test_rows = 10000;
  o.ids_per_field = 500;
  auto result = WriteCtrData(o, dir);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_GT(result->test_ctr, 0.15);
  EXPECT_LT(result->test_ctr, 0.4);
  EXPECT_GT(result->planted_auc, 0.7);
  auto planted = nlohmann::json::parse(Slurp(dir + "/planted.json"));
  EXPECT_DOUBLE_EQ(planted["planted_auc"].get<double>(), result->planted_auc);

  const auto train = ReadAll(dir + "/train.tsv"), test = ReadAll(dir + "/test.tsv");
  ASSERT_EQ(train.size(), 40000u);
  ASSERT_EQ(test.size(), 10000u);
  // Skewed ids: the most frequent value of field 0 is far above the mean share.
  std::map<uint64_t, int> counts;
  int missing = 0;
  for (const CtrRecord& r : train) {
    if (r.categorical_missing & 1) ++missing;
    else ++counts[r.categorical[0]];
  }
  int top = 0;
  for (const auto& [id, n] : counts) top = std::max(top, n);
  EXPECT_GT(top, 20 * 40000 / 500) << "the commonest value is over 20 times its uniform share";
  EXPECT_NEAR(missing, 0.05 * 40000, 300);

  // A naive-Bayes-style learner: per field and value, the training log-odds
  // of a click (smoothed), summed. It learns something, and stays below the
  // planted model on the same test set.
  std::vector<std::map<uint64_t, std::pair<double, double>>> seen(kCriteoCategorical);
  for (const CtrRecord& r : train)
    for (int f = 0; f < kCriteoCategorical; ++f)
      if (!(r.categorical_missing >> f & 1)) {
        auto& [clicks, views] = seen[f][r.categorical[f]];
        clicks += r.label, views += 1;
      }
  std::vector<float> scores, labels;
  for (const CtrRecord& r : test) {
    double s = 0;
    for (int f = 0; f < kCriteoCategorical; ++f) {
      if (r.categorical_missing >> f & 1) continue;
      auto it = seen[f].find(r.categorical[f]);
      const double clicks = it == seen[f].end() ? 0 : it->second.first;
      const double views = it == seen[f].end() ? 0 : it->second.second;
      s += std::log((clicks + 2.5) / (views - clicks + 7.5));
    }
    scores.push_back(static_cast<float>(s));
    labels.push_back(r.label);
  }
  const double learned = Auc(scores, labels);
  EXPECT_GT(learned, 0.6) << "the ids carry the planted signal";
  EXPECT_LT(learned, result->planted_auc) << "nothing learned beats the model that drew the labels";

  // The same seed writes the same bytes.
  const std::string again = dir + "/again";
  ASSERT_TRUE(WriteCtrData(o, again).ok());
  EXPECT_EQ(Slurp(dir + "/test.tsv"), Slurp(again + "/test.tsv"));
  std::filesystem::remove_all(dir);
}

TEST(CtrData, BadOptionsAndUnwritablePlacesAreNamed) {
  CtrDataOptions o;
  o.zipf = 0;
  EXPECT_NE(WriteCtrData(o, "/tmp/unused").status().message().find("Zipf"), std::string::npos);
  o = CtrDataOptions{};
  o.train_rows = o.test_rows = 10;
  auto s = WriteCtrData(o, "/proc/psforge-ctr");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("/proc/psforge-ctr"), std::string::npos) << s.status().message();
}

}  // namespace
}  // namespace psforge
