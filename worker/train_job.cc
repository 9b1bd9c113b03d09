#include "worker/train_job.h"

namespace psforge {

Result<TrainResult> RunLocalTraining(const JobConfig& config, std::FILE* progress_out) {
  PSF_ASSIGN_OR_RETURN(TrainTestData data, LoadTrainTest(config));
  const Dataset& train = data.train;
  const Dataset& test = data.test;
  PSF_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpec::FromConfig(config.model, train.features));
  PSF_ASSIGN_OR_RETURN(auto model, Model::Create(spec, config.training.batch_size));
  PSF_ASSIGN_OR_RETURN(auto client,
                       LocalParameterClient::Create(spec, config.optimizer, model->weights()));
  ProgressPrinter progress(progress_out, config.training.progress_interval_s);
  progress.Line("training " + std::string(ModelKindName(config.model.kind)) + " (" +
                std::to_string(spec.num_params()) + " parameters) on " +
                std::to_string(train.rows) + " samples, testing on " + std::to_string(test.rows));
  Trainer trainer(config, model.get(), client.get(), &progress);
  return trainer.Run(train, test);
}

}  // namespace psforge
