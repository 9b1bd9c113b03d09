#include "worker/train_job.h"

#include <fstream>

#include "common/transport.h"
#include "worker/ps_client.h"

namespace psforge {
namespace {

struct Prepared {
  TrainTestData data;
  ModelSpec spec;
  std::unique_ptr<Model> model;
};

Result<Prepared> Prepare(const JobConfig& config, int64_t max_batch) {
  PSF_ASSIGN_OR_RETURN(TrainTestData data, LoadTrainTest(config));
  PSF_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpec::FromConfig(config.model, data.train.features));
  PSF_ASSIGN_OR_RETURN(auto model, Model::Create(spec, max_batch));
  return Prepared{std::move(data), std::move(spec), std::move(model)};
}

void Announce(ProgressPrinter& progress, const JobConfig& config, const Prepared& p,
              const std::string& where) {
  progress.Line("training " + std::string(ModelKindName(config.model.kind)) + " (" +
                std::to_string(p.spec.num_params()) + " parameters) on " +
                std::to_string(p.data.train.rows) + " samples, testing on " +
                std::to_string(p.data.test.rows) + where);
}

}  // namespace

Result<TrainResult> RunLocalTraining(const JobConfig& config, std::FILE* progress_out) {
  PSF_ASSIGN_OR_RETURN(Prepared p, Prepare(config, config.training.batch_size));
  PSF_ASSIGN_OR_RETURN(auto client, LocalParameterClient::Create(p.spec, config.optimizer, p.model->weights()));
  ProgressPrinter progress(progress_out, config.training.progress_interval_s);
  Announce(progress, config, p, "");
  Trainer trainer(config, p.model.get(), client.get(), &progress);
  return trainer.Run(p.data.train, p.data.test);
}

Result<TrainResult> RunClusterWorker(const JobConfig& config, int64_t index,
                                     const std::vector<std::string>& servers, std::FILE* progress_out) {
  const int64_t workers = config.cluster.workers;
  if (index < 0 || index >= workers)
    return InvalidArgument("worker index " + std::to_string(index) + " outside [0, " +
                           std::to_string(workers) + ") (cluster.workers)");
  const int64_t share = (config.training.batch_size + workers - 1) / workers;
  PSF_ASSIGN_OR_RETURN(Prepared p, Prepare(config, share));
  auto transport = Transport::CreateZmq();
  PSF_ASSIGN_OR_RETURN(auto client, PsClient::Connect(transport.get(), p.spec, config.cluster,
                                                      static_cast<uint32_t>(index), servers));
  ProgressPrinter progress(progress_out, config.training.progress_interval_s);
  Announce(progress, config, p,
           " as worker " + std::to_string(index) + " of " + std::to_string(workers) + " with " +
               std::to_string(servers.size()) + " servers (" +
               ConsistencyName(config.cluster.consistency) + ")");
  Trainer trainer(config, p.model.get(), client.get(), &progress, {index, workers});
  return trainer.Run(p.data.train, p.data.test);
}

int ReportResult(const char* program, const Result<TrainResult>& result, const JobConfig& config,
                 const std::string& summary_path) {
  if (!result.ok()) {
    std::fprintf(stderr, "%s: %s\n", program, result.status().ToString().c_str());
    return 1;
  }
  std::printf("final %s: %.4f (%lld epochs, %lld steps, %.0f samples/s, %.1f s)\n",
              result->metric_name.c_str(), result->test_metric, (long long)result->epochs,
              (long long)result->steps, result->samples_per_s, result->wall_s);
  std::fflush(stdout);
  if (summary_path.empty()) return 0;
  std::ofstream out(summary_path);
  out << SummaryJson(*result, config).dump(2) << "\n";
  if (!out) {
    std::fprintf(stderr, "%s: cannot write summary to %s\n", program, summary_path.c_str());
    return 1;
  }
  return 0;
}

}  // namespace psforge
