// ps-train: one process, no network; the trainer with the optimizer in-process.
#include <omp.h>

#include <cstdio>

#include "common/cli_flags.h"
#include "common/run_dir.h"
#include "worker/train_job.h"

int main(int argc, char** argv) {
  CLI::App app{"ps-train: train a model in one process (the baseline for distributed runs)"};
  psforge::CommonFlags flags;
  psforge::AddCommonFlags(&app, &flags, /*with_training=*/true);
  std::string export_path;
  app.add_option("--export", export_path,
                 "after training, write the model to this NumPy .npz file (tensors by name; see README)");
  PSF_PARSE_FLAGS(app, argc, argv);

  auto config = psforge::LoadConfigFromFlags(flags);
  if (!config.ok()) return std::fprintf(stderr, "ps-train: %s\n", config.status().message().c_str()), 2;
  // Outputs that cannot be written are refused before anything trains.
  for (const auto& [path, flag] : {std::pair{export_path, "--export"}, std::pair{flags.summary_path, "--summary"}})
    if (auto s = psforge::CheckOutputFile(path, flag); !s.ok())
      return std::fprintf(stderr, "ps-train: %s\n", s.message().c_str()), 2;
  omp_set_num_threads(static_cast<int>(config->training.threads));
  auto result = psforge::RunLocalTraining(*config, stderr, export_path);
  return psforge::ReportResult("ps-train", result, *config, flags.summary_path);
}
