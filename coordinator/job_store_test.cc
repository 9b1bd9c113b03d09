// The job store's records as a damaged store may hold them: each is a
// DataLoss naming the record, never an exception that ends the coordinator
// (before tests/fuzz/job_store_fuzz.cc, a commit holding "x" threw from
// std::stoul, and an evaluation with a string epoch from nlohmann::json).
#include "coordinator/job_store.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace psforge {
namespace {

void ExpectDamaged(const Status& s, const std::string& name) {
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find(name + " is damaged"), std::string::npos) << s.ToString();
}

TEST(JobStoreRecords, DamagedOnesAreDataLossNamingThem) {
  ExpectDamaged(DecodeCommitGeneration("x", "commit 5").status(), "commit 5");
  ExpectDamaged(DecodeCommitGeneration("99999999999", "commit 5").status(), "commit 5");
  ExpectDamaged(DecodeEvaluation(R"({"epoch":"one"})", "evaluation 1").status(), "evaluation 1");
  ExpectDamaged(DecodeEvaluation("[1]", "evaluation 1").status(), "evaluation 1");
  ExpectDamaged(DecodeGrant("1 2", "grant 3").status(), "grant 3");
  ExpectDamaged(DecodeGrant("1 2 -3", "grant 3").status(), "grant 3");
  ExpectDamaged(DecodeGrant("1 2 3x", "grant 3").status(), "grant 3");
  ExpectDamaged(DecodeGeneration(R"({"epoch":1,"done":"all","partial":[]})", "generation 2").status(), "generation 2");
}

TEST(JobStoreRecords, WrittenOnesReadBack) {
  const auto dir = std::filesystem::temp_directory_path() / ("psforge_job_store_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    auto store = JobStore::Open(dir.string());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    JobStore& s = **store;
    ASSERT_TRUE(s.Reset("{}").ok());
    ASSERT_TRUE(s.BeginGeneration(1, LeaseState{2, {1, 5}, {{3, 40}}, {{3, 1}}}).ok());
    ASSERT_TRUE(s.AddGrant(1, GrantRecord{1, uint64_t{1} << 33, 64}).ok());
    ASSERT_TRUE(s.Commit(100, 1, 3).ok());
    ASSERT_TRUE(s.PutEvaluation(EvaluationRecord{1, 469, 0.85, 1.5, false}).ok());
    auto base = s.Base(1);
    ASSERT_TRUE(base.ok()) << base.status().ToString();
    EXPECT_EQ(base->epoch, 2);
    EXPECT_EQ(base->partial, (std::vector<std::pair<int64_t, int64_t>>{{3, 40}}));
    auto grants = s.Grants(1);
    ASSERT_TRUE(grants.ok());
    ASSERT_EQ(grants->size(), 1u);
    EXPECT_EQ((*grants)[0].lease, uint64_t{1} << 33);
    EXPECT_EQ((*grants)[0].offset, 64);
    auto commits = s.Committed();
    ASSERT_TRUE(commits.ok());
    ASSERT_EQ(commits->size(), 1u);
    EXPECT_EQ((*commits)[0].step, 100);
    EXPECT_EQ((*commits)[0].generation, 1u);
    auto evaluations = s.Evaluations();
    ASSERT_TRUE(evaluations.ok());
    ASSERT_EQ(evaluations->size(), 1u);
    EXPECT_DOUBLE_EQ((*evaluations)[0].metric, 0.85);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace psforge
