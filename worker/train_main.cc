// ps-train: one process, no network; the trainer with the optimizer in-process.
#include <omp.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "worker/train_job.h"

int main(int argc, char** argv) {
  CLI::App app{"ps-train: train a model in one process (the baseline for distributed runs)"};
  std::string config_path, summary_path;
  int64_t epochs = 0, threads = 0;
  std::vector<std::string> sets;
  app.add_option("--config", config_path, "job config (YAML)")->required();
  app.add_option("--epochs", epochs, "override training.epochs")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "override training.threads")->check(CLI::PositiveNumber);
  app.add_option("--summary", summary_path, "write a JSON summary of the run to this file");
  app.add_option("--set", sets, "override any field: --set optimizer.learning_rate=0.01");
  CLI11_PARSE(app, argc, argv);

  std::vector<psforge::ConfigOverride> overrides;
  if (epochs > 0) overrides.emplace_back("training.epochs", std::to_string(epochs));
  if (threads > 0) overrides.emplace_back("training.threads", std::to_string(threads));
  for (const auto& s : sets) {
    auto o = psforge::ParseOverride(s);
    if (!o.ok()) {
      std::fprintf(stderr, "ps-train: %s\n", o.status().message().c_str());
      return 2;
    }
    overrides.push_back(*o);
  }
  auto config = psforge::LoadJobConfig(config_path, overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "ps-train: %s\n", config.status().message().c_str());
    return 2;
  }
  omp_set_num_threads(static_cast<int>(config->training.threads));

  auto result = psforge::RunLocalTraining(*config, stderr);
  if (!result.ok()) {
    std::fprintf(stderr, "ps-train: %s\n", result.status().ToString().c_str());
    return 1;
  }
  std::printf("final %s: %.4f (%lld epochs, %lld steps, %.0f samples/s, %.1f s)\n",
              result->metric_name.c_str(), result->test_metric, (long long)result->epochs,
              (long long)result->steps, result->samples_per_s, result->wall_s);
  if (!summary_path.empty()) {
    std::ofstream out(summary_path);
    out << psforge::SummaryJson(*result, *config).dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "ps-train: cannot write summary to %s\n", summary_path.c_str());
      return 1;
    }
  }
  return 0;
}
