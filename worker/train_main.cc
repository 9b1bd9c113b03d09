// ps-train: one process, no network; the trainer with the optimizer in-process.
//
//   ps-train --config FILE [--epochs N] [--threads N] [--set key=value]... [--summary FILE]
//            [--run-dir DIR | --no-run-dir] [--resume [RUN_DIR]] [--export FILE.npz]
//
// Like ps-launch, a run gets a run directory (runs/<config>-<time> unless
// --run-dir says) with launch.json, its checkpoints (every
// checkpoint.interval_s, and at the end) and summary.json once it is done.
// --resume continues the newest unfinished run of the config from its last
// checkpoint (or the run directory given), step for step as if it had not
// stopped; ps-export and ps-generate read the run as they read a cluster's.
#include <omp.h>

#include <cstdio>

#include "common/cli_flags.h"
#include "common/run_dir.h"
#include "worker/local_training.h"
#include "worker/train_job.h"

int main(int argc, char** argv) {
  CLI::App app{"ps-train: train a model in one process (the baseline for distributed runs)"};
  psforge::CommonFlags flags;
  psforge::AddCommonFlags(&app, &flags, /*with_training=*/true);
  psforge::LocalTrainingOptions options;
  std::string resume_dir;
  bool no_run_dir = false;
  app.add_option("--export", options.export_path,
                 "after training, write the model to this NumPy .npz file (tensors by name; see README)");
  app.add_option("--run-dir", options.run_dir, "checkpoints and summary go here (default runs/<config>-<time>)");
  app.add_flag("--no-run-dir", no_run_dir, "write no run directory (and so no checkpoints unless checkpoint.dir is set)");
  auto* resume_flag =
      app.add_option("--resume", resume_dir,
                     "continue from the last committed checkpoint: the newest unfinished run of this config "
                     "under runs/, or the run directory given")
          ->expected(0, 1);
  PSF_PARSE_FLAGS(app, argc, argv);

  auto config = psforge::LoadConfigFromFlags(flags);
  if (!config.ok()) return std::fprintf(stderr, "ps-train: %s\n", config.status().message().c_str()), 2;
  // Outputs that cannot be written are refused before anything trains.
  for (const auto& [path, flag] :
       {std::pair{options.export_path, "--export"}, std::pair{flags.summary_path, "--summary"}})
    if (auto s = psforge::CheckOutputFile(path, flag); !s.ok())
      return std::fprintf(stderr, "ps-train: %s\n", s.message().c_str()), 2;
  if (no_run_dir && (!options.run_dir.empty() || !resume_dir.empty()))
    return std::fprintf(stderr, "ps-train: --no-run-dir and %s contradict each other; give one\n",
                        options.run_dir.empty() ? "--resume RUN_DIR" : "--run-dir"), 2;
  options.resume = resume_flag->count() > 0;
  if (options.resume && !no_run_dir) {
    auto dir = psforge::ResumeRunDir("ps-train", resume_dir, options.run_dir, flags.config_path,
                                     !config->checkpoint.dir.empty());
    if (!dir.ok()) return std::fprintf(stderr, "ps-train: %s\n", dir.status().message().c_str()), 2;
    options.run_dir = *dir;
    if (!options.run_dir.empty()) std::fprintf(stderr, "ps-train: resuming %s\n", options.run_dir.c_str());
  }
  if (options.run_dir.empty() && !no_run_dir && !(options.resume && !config->checkpoint.dir.empty()))
    options.run_dir = psforge::DefaultRunDir(flags.config_path);
  if (!options.run_dir.empty()) {
    if (auto s = psforge::PrepareOutputDir(options.run_dir, "--run-dir"); !s.ok())
      return std::fprintf(stderr, "ps-train: %s\n", s.message().c_str()), 2;
    if (auto s = psforge::WriteRunRecord(options.run_dir, flags.config_path, flags.sets); !s.ok())
      return std::fprintf(stderr, "ps-train: %s\n", s.message().c_str()), 1;
  }
  omp_set_num_threads(static_cast<int>(config->training.threads));
  auto result = psforge::RunLocalTraining(*config, stderr, options);
  const int code = psforge::ReportResult("ps-train", result, *config, flags.summary_path, options.run_dir);
  if (code == 0 && !options.run_dir.empty()) std::printf("run: %s\n", options.run_dir.c_str());
  return code;
}
