#include "coordinator/run_records.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace psforge {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class RunRecordsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() / ("psforge_run_records_" + std::to_string(::getpid()))).string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // A PNG drawn, and gnuplot said nothing (no warning reaches anyone).
  void ExpectPlotted(RunRecords& r) {
    EXPECT_EQ(r.Plot(), "plot: " + dir_ + "/curves.png");
    EXPECT_GT(std::filesystem::file_size(dir_ + "/curves.png"), 1000u);
    EXPECT_EQ(Read(dir_ + "/curves.png").substr(1, 3), "PNG");
    EXPECT_EQ(Read(dir_ + "/curves.log"), "") << "gnuplot's messages:\n" << Read(dir_ + "/curves.log");
  }
  std::string dir_;
};

TEST(RoundTicSpacing, AFewRoundTics) {
  EXPECT_EQ(RoundTicSpacing(4690, 6), 1000);
  EXPECT_EQ(RoundTicSpacing(1, 6), 1);
  EXPECT_EQ(RoundTicSpacing(12, 6), 2);
  EXPECT_EQ(RoundTicSpacing(30000, 6), 5000);
}

// Ten epochs of 469 steps: round step tics (not one every few hundred steps
// run together), a dashed line at each epoch's end, the title.
TEST_F(RunRecordsTest, TenEpochsPlotWithRoundTicsAndEpochMarks) {
  RunRecords r(dir_, "test_accuracy");
  r.set_title("fashion_mnist_mlp.yaml, 2 servers, 2 workers, bsp  (runs/x)");
  for (int64_t step = 1; step <= 4690; step += 10) r.LossPoint(step, 2.0 / (1 + step / 500.0));
  for (int64_t e = 1; e <= 10; ++e) r.Evaluation({e, 469 * e, 0.8 + 0.009 * e, 1.7 * e, e == 10});
  ExpectPlotted(r);
  const std::string gp = Read(dir_ + "/curves.gp");
  EXPECT_NE(gp.find("set xtics 1000\n"), std::string::npos) << gp;
  EXPECT_NE(gp.find("title 'fashion_mnist_mlp.yaml, 2 servers, 2 workers, bsp  (runs/x)'"), std::string::npos);
  EXPECT_NE(gp.find("set arrow 9 from 4221, graph 0"), std::string::npos) << gp;  // the 9th epoch's end
  EXPECT_EQ(gp.find("set arrow 10 "), std::string::npos) << "the final evaluation is not an epoch mark";
  EXPECT_NE(gp.find("set ylabel 'loss"), std::string::npos);
}

// One step, one evaluation: a point on each panel, no empty panel, no warning.
TEST_F(RunRecordsTest, AOneStepRunStillPlotsWithoutWarnings) {
  RunRecords r(dir_, "test_accuracy");
  r.LossPoint(1, 2.3);
  r.Evaluation({1, 1, 0.42, 0.1, true});
  ExpectPlotted(r);
  EXPECT_NE(Read(dir_ + "/curves.gp").find("with points"), std::string::npos);
}

// Evaluations but no loss recorded yet: the loss panel says so.
TEST_F(RunRecordsTest, AMissingCurveIsSaidNotWarnedAbout) {
  RunRecords r(dir_, "test_accuracy");
  r.Evaluation({1, 5, 0.5, 0.1, true});
  ExpectPlotted(r);
  EXPECT_NE(Read(dir_ + "/curves.gp").find("not recorded"), std::string::npos);
}

}  // namespace
}  // namespace psforge
