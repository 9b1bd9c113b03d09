#include "worker/trainer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include <nlohmann/json.hpp>

#include "worker/train_job.h"

namespace psforge {
namespace {

TEST(SeededPermutation, IsADeterministicPermutation) {
  std::vector<int64_t> a(1000), b(1000), c(1000);
  SeededPermutation(7, &a);
  SeededPermutation(7, &b);
  SeededPermutation(8, &c);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
}

TEST(LocalShardSource, BatchesCoverEveryRecordOnceAnEpochAndEvaluateBetween) {
  ShardPlan plan(1000, 96, 3, true);
  LocalShardSource source(&plan, 2, 0);
  std::vector<int64_t> rows;
  std::vector<int> seen(1000, 0);
  int64_t step = 0, evaluations = 0;
  while (true) {
    auto b = source.Next(step++, 128, &rows);
    ASSERT_TRUE(b.ok());
    if (b->evaluate_epoch > 0) {
      EXPECT_EQ(b->evaluate_epoch, 1);
      ++evaluations;
      for (int s : seen) ASSERT_EQ(s, 1);
    }
    if (b->stop) break;
    EXPECT_EQ(b->rows, static_cast<int64_t>(rows.size()));
    for (int64_t r : rows) ++seen[r];
  }
  EXPECT_EQ(evaluations, 1);
  EXPECT_EQ(step - 1, 2 * 8);  // ceil(1000 / 128) steps an epoch; the last batch short
  for (int s : seen) EXPECT_EQ(s, 2);
}

// A run resumed at step k gets, from step k on, what the whole run got.
TEST(LocalShardSource, ResumedAtAStepPlansWhatTheWholeRunPlannedFromThere) {
  ShardPlan plan(1000, 96, 3, true);
  struct Planned {
    int64_t rows, evaluate_epoch, epoch;
    bool stop;
    std::vector<int64_t> ids;
  };
  auto run = [&](int64_t first) {
    LocalShardSource source(&plan, 3, 0, first, 128);
    EXPECT_EQ(source.first_step(), first);
    std::vector<Planned> out;
    std::vector<int64_t> rows;
    for (int64_t step = first;; ++step) {
      auto b = source.Next(step, 128, &rows);
      EXPECT_TRUE(b.ok());
      out.push_back({b->rows, b->evaluate_epoch, b->epoch, b->stop, rows});
      if (b->stop) break;
    }
    return out;
  };
  const auto whole = run(0);
  ASSERT_EQ(whole.size(), 3u * 8 + 1);
  for (int64_t first : {1, 7, 8, 9, 16, 23}) {
    const auto part = run(first);
    ASSERT_EQ(part.size(), whole.size() - static_cast<std::size_t>(first)) << first;
    for (std::size_t i = 0; i < part.size(); ++i) {
      const Planned& a = part[i];
      const Planned& b = whole[i + static_cast<std::size_t>(first)];
      EXPECT_EQ(a.rows, b.rows) << first << " " << i;
      EXPECT_EQ(a.evaluate_epoch, b.evaluate_epoch) << first << " " << i;
      EXPECT_EQ(a.epoch, b.epoch) << first << " " << i;
      EXPECT_EQ(a.stop, b.stop) << first << " " << i;
      EXPECT_EQ(a.ids, b.ids) << first << " " << i;
    }
  }
}

// Solves A x = b (n x n, row-major) by Gaussian elimination with pivoting.
std::vector<double> Solve(std::vector<double> a, std::vector<double> b) {
  const std::size_t n = b.size();
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t p = c;
    for (std::size_t r = c + 1; r < n; ++r)
      if (std::abs(a[r * n + c]) > std::abs(a[p * n + c])) p = r;
    for (std::size_t k = 0; k < n; ++k) std::swap(a[c * n + k], a[p * n + k]);
    std::swap(b[c], b[p]);
    for (std::size_t r = 0; r < n; ++r) {
      if (r == c) continue;
      double f = a[r * n + c] / a[c * n + c];
      for (std::size_t k = 0; k < n; ++k) a[r * n + k] -= f * a[c * n + k];
      b[r] -= f * b[c];
    }
  }
  for (std::size_t c = 0; c < n; ++c) b[c] /= a[c * n + c];
  return b;
}

// The exact optimum of the training loss: least squares, or the logistic
// maximum-likelihood estimate by Newton's method. Returns (w..., b).
std::vector<double> Optimum(const Dataset& d, bool logistic) {
  const int64_t p = d.features + 1;
  std::vector<double> theta(p, 0.0);
  for (int iter = 0; iter < (logistic ? 25 : 1); ++iter) {
    std::vector<double> h(p * p, 0.0), g(p, 0.0);
    for (int64_t i = 0; i < d.rows; ++i) {
      std::vector<double> x(d.Row(i).begin(), d.Row(i).end());
      x.push_back(1.0);
      double z = 0;
      for (int64_t k = 0; k < p; ++k) z += theta[k] * x[k];
      double r = logistic ? 1 / (1 + std::exp(-z)) - d.targets[i] : z - d.targets[i];
      double wgt = logistic ? (1 / (1 + std::exp(-z))) * (1 - 1 / (1 + std::exp(-z))) : 1.0;
      for (int64_t k = 0; k < p; ++k) {
        g[k] += r * x[k];
        for (int64_t l = 0; l < p; ++l) h[k * p + l] += wgt * x[k] * x[l];
      }
    }
    std::vector<double> step = Solve(h, g);
    for (int64_t k = 0; k < p; ++k) theta[k] -= step[k];
  }
  return theta;
}

// A shipped config's job in one process: its data, model and in-process
// parameters, and its seeded shard plan.
struct LocalJob {
  JobConfig config;
  TrainTestData data;
  std::unique_ptr<Model> model;
  std::unique_ptr<LocalParameterClient> client;
  std::unique_ptr<ShardPlan> plan;

  // Trains from `first_step` (a resumed run replays the plan to it) to the end.
  Result<TrainResult> Run(int64_t first_step = 0) {
    std::FILE* quiet = std::fopen("/dev/null", "w");
    ProgressPrinter progress(quiet, 1e9);
    Trainer trainer(config, model.get(), client.get(), &progress);
    LocalShardSource source(plan.get(), config.training.epochs, config.training.max_steps, first_step,
                            config.training.batch_size);
    auto result = trainer.Run(data.train, data.test, &source);
    std::fclose(quiet);
    return result;
  }
};

void MakeLocalJob(const std::string& config_name, LocalJob* job) {
  auto config = LoadJobConfig(std::string(PSFORGE_SOURCE_DIR) + "/configs/" + config_name);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  job->config = *config;
  auto data = LoadTrainTest(job->config);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  job->data = std::move(*data);
  auto spec = ModelSpec::FromConfig(job->config.model, job->data.train.features);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto model = Model::Create(*spec, job->config.training.batch_size);
  ASSERT_TRUE(model.ok());
  job->model = std::move(*model);
  auto client = LocalParameterClient::Create(*spec, job->config.optimizer, job->model->weights());
  ASSERT_TRUE(client.ok());
  job->client = std::move(*client);
  job->plan = std::make_unique<ShardPlan>(job->data.train.rows, job->config.data.shard_size, job->config.training.seed,
                                          job->config.training.shuffle);
}

void ExpectReachesOptimum(const std::string& config_name, bool logistic, double tol) {
  LocalJob job;
  ASSERT_NO_FATAL_FAILURE(MakeLocalJob(config_name, &job));
  auto result = job.Run();
  ASSERT_TRUE(result.ok()) << result.status().ToString();

  std::vector<double> best = Optimum(job.data.train, logistic);
  auto w = job.model->weights();  // linear.weight then linear.bias: the same order
  for (std::size_t k = 0; k < best.size(); ++k)
    EXPECT_NEAR(w[k], best[k], tol) << config_name << " parameter " << k;
}

// A run resumed from its end-of-job checkpoint trains no step: its last
// epoch's train loss is unknown (null in the summary), not a perfect 0.
TEST(Trainer, ARunResumedWithNoStepLeftReportsItsLastEpochsTrainLossAsUnknown) {
  LocalJob job;
  ASSERT_NO_FATAL_FAILURE(MakeLocalJob("logistic_regression.yaml", &job));
  int64_t steps = 0;  // the whole run's
  {
    LocalShardSource whole(job.plan.get(), job.config.training.epochs, job.config.training.max_steps);
    std::vector<int64_t> rows;
    while (true) {
      auto next = whole.Next(steps, job.config.training.batch_size, &rows);
      ASSERT_TRUE(next.ok());
      if (next->stop) break;
      ++steps;
    }
  }
  ASSERT_GT(steps, 0);
  job.client->set_version(steps);  // as a restore of the end-of-job checkpoint leaves it
  auto result = job.Run(steps);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_FALSE(result->history.empty());
  EXPECT_TRUE(std::isnan(result->history.back().train_loss)) << result->history.back().train_loss;
  // As written to summary.json (nlohmann writes a NaN as null).
  const nlohmann::json summary = nlohmann::json::parse(SummaryJson(*result, job.config).dump());
  EXPECT_TRUE(summary["history"].back()["train_loss"].is_null()) << summary["history"].dump();
}

TEST(Trainer, LinearRegressionReachesTheLeastSquaresOptimum) {
  ExpectReachesOptimum("linear_regression.yaml", false, 0.01);
}

TEST(Trainer, LogisticRegressionReachesTheMaximumLikelihoodOptimum) {
  ExpectReachesOptimum("logistic_regression.yaml", true, 0.05);
}

}  // namespace
}  // namespace psforge
