// ps-export: writes a job's trained model, from its newest committed
// checkpoint (or --step), to a NumPy .npz file (worker/model_export.h).
#include <cstdio>

#include "common/cli_flags.h"
#include "common/dataset.h"
#include "common/run_dir.h"
#include "tools/checkpoint_reader.h"
#include "worker/model_export.h"
#include "worker/trainer.h"

namespace psforge {

Status Export(const JobConfig& config, int64_t step, const std::string& out) {
  PSF_ASSIGN_OR_RETURN(const DataShape shape, ReadDataShape(config));
  PSF_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpec::FromConfig(config.model, shape));
  PSF_ASSIGN_OR_RETURN(CommittedWeights committed, ReadCommittedWeights(config, spec, step));
  PSF_ASSIGN_OR_RETURN(auto model, Model::Create(spec, config.training.batch_size));
  std::copy(committed.weights.begin(), committed.weights.end(), model->weights().begin());
  // The inputs' statistics (psforge.json) and batchnorm's come from the
  // training set, as in evaluation.
  PSF_ASSIGN_OR_RETURN(TrainTestData data, LoadTrainTest(config));
  if (spec.has_batch_statistics()) {
    ProgressPrinter quiet(nullptr, 0);
    Trainer trainer(config, model.get(), nullptr, &quiet);
    trainer.EstimateStatistics(data.train);
  }
  PSF_RETURN_IF_ERROR(ExportModel(config, data, *model, committed.step, out));
  std::printf("ps-export: wrote %s: %lld parameters in %zu tensors at step %lld\n", out.c_str(),
              static_cast<long long>(spec.num_params()), spec.tensors().size(),
              static_cast<long long>(committed.step));
  return Status::Ok();
}

}  // namespace psforge

int main(int argc, char** argv) {
  CLI::App app{"ps-export: write a job's trained model (its newest committed checkpoint) to a NumPy .npz file"};
  psforge::CommonFlags flags;
  psforge::AddCommonFlags(&app, &flags, /*with_training=*/false);
  std::string out;
  int64_t step = -1;
  app.add_option("--out", out, "the .npz file to write")->required();
  app.add_option("--step", step, "the committed checkpoint to read (default: the newest)");
  std::string run_dir;
  app.add_option("--run-dir", run_dir,
                 "the run whose checkpoints to read (default: checkpoint.dir if the config sets it, else the "
                 "newest run of this config under runs/)");
  PSF_PARSE_FLAGS(app, argc, argv);
  auto config = psforge::LoadConfigFromFlags(flags);
  if (!config.ok()) return std::fprintf(stderr, "ps-export: %s\n", config.status().message().c_str()), 2;
  if (auto s = psforge::CheckOutputFile(out, "--out"); !s.ok())
    return std::fprintf(stderr, "ps-export: %s\n", s.message().c_str()), 2;
  if (auto found = psforge::FindCheckpoints("ps-export", flags.config_path, run_dir, &*config); !found.ok())
    return std::fprintf(stderr, "ps-export: %s\n", found.message().c_str()), 1;
  psforge::Status s = psforge::Export(*config, step, out);
  if (!s.ok()) return std::fprintf(stderr, "ps-export: %s\n", s.message().c_str()), 1;
  return 0;
}
