#include "worker/job_setup.h"

namespace psforge {

Result<PreparedJob> PrepareJob(const JobConfig& config, int64_t max_batch) {
  PSF_ASSIGN_OR_RETURN(TrainTestData data, LoadTrainTest(config));
  PSF_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpec::FromConfig(config.model, ShapeOf(config, data.train)));
  PSF_ASSIGN_OR_RETURN(auto model, Model::Create(spec, max_batch, DropoutSeed(config)));
  return PreparedJob{std::move(data), std::move(spec), std::move(model)};
}

void AnnounceJob(ProgressPrinter& progress, const JobConfig& config, const PreparedJob& p, const std::string& where) {
  progress.Line("training " + std::string(ModelKindName(config.model.kind)) + " (" +
                std::to_string(p.spec.num_params()) + " parameters) on " +
                std::to_string(p.data.train.rows) + " samples, testing on " +
                std::to_string(p.data.test.rows) + where);
  if (!p.data.report.empty()) progress.Line(p.data.report);
}

}  // namespace psforge
