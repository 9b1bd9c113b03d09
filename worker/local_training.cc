#include "worker/local_training.h"

#include <optional>

#include "common/init_source.h"
#include "common/run_dir.h"
#include "common/shard_plan.h"
#include "worker/job_setup.h"
#include "worker/local_checkpoints.h"
#include "worker/model_export.h"
#include "worker/parameter_client.h"

namespace psforge {
namespace {

// ps-train's client with checkpoints: after each update, `checkpoints`
// decides whether one is due.
class CheckpointingClient final : public ParameterClient {
 public:
  CheckpointingClient(LocalParameterClient* inner, LocalCheckpoints* checkpoints, std::span<const float> weights)
      : inner_(inner), checkpoints_(checkpoints), weights_(weights) {}
  Status Pull(int64_t step, std::span<float> weights) override { return inner_->Pull(step, weights); }
  using ParameterClient::Push;
  Status Push(int64_t step, std::span<const float> gradient, int64_t samples, const DataMark& mark,
              std::span<const SparseRows> rows) override {
    PSF_RETURN_IF_ERROR(inner_->Push(step, gradient, samples, mark, rows));
    return checkpoints_->MaybeWrite(inner_->applied_steps(), weights_, inner_->optimizer(), false).status();
  }
  Status PullRows(int64_t version, std::span<const SparseRows> rows) override {
    return inner_->PullRows(version, rows);
  }
  int64_t applied_steps() const override { return inner_->applied_steps(); }

 private:
  LocalParameterClient* inner_;
  LocalCheckpoints* checkpoints_;
  std::span<const float> weights_;
};

// Records each epoch's evaluation in the job store, for a resumed run's summary.
class RecordingSource final : public BatchSource {
 public:
  RecordingSource(BatchSource* inner, LocalCheckpoints* checkpoints) : inner_(inner), checkpoints_(checkpoints) {}
  Result<BatchPlan> Next(int64_t step, int64_t max_rows, std::vector<int64_t>* rows) override {
    return inner_->Next(step, max_rows, rows);
  }
  Status Report(int64_t epoch, int64_t step, double metric, bool final, double train_loss,
                double test_logloss) override {
    PSF_RETURN_IF_ERROR(inner_->Report(epoch, step, metric, final, train_loss, test_logloss));
    EvaluationRecord e;
    e.epoch = epoch;
    e.step = step;
    e.metric = metric;
    e.final = final;
    e.train_loss = train_loss;
    return final ? Status::Ok() : checkpoints_->RecordEvaluation(e);
  }
  int64_t epochs() const override { return inner_->epochs(); }
  int64_t first_step() const override { return inner_->first_step(); }
  int64_t total_records() const override { return inner_->total_records(); }

 private:
  BatchSource* inner_;
  LocalCheckpoints* checkpoints_;
};

}  // namespace

Result<TrainResult> RunLocalTraining(const JobConfig& given, std::FILE* progress_out,
                                     const LocalTrainingOptions& options) {
  JobConfig config = given;
  // ps-train's checkpoints hold the dense weights only: a model with sparse
  // tables (ctr) keeps them in this process and checkpoints nothing.
  const bool sparse = !config.model.tables.empty();
  if (sparse && options.resume)
    return FailedPrecondition("--resume: ps-train writes no checkpoints of sparse tables (model.tables); "
                              "run the job again");
  if (sparse && !options.export_path.empty())
    return FailedPrecondition("--export writes dense models; this model's sparse tables (model.tables) are "
                              "not exported");
  if (sparse) config.checkpoint.interval_steps = config.checkpoint.interval_s = 0;
  if (config.checkpoint.enabled() && config.checkpoint.dir.empty() && !options.run_dir.empty())
    config.checkpoint.dir = RunCheckpointDir(options.run_dir);
  const bool checkpointed = config.checkpoint.enabled() && !config.checkpoint.dir.empty();
  if (options.resume && !checkpointed)
    return FailedPrecondition(config.checkpoint.enabled()
                                  ? "--resume: this run has no run directory (--no-run-dir) and no checkpoint.dir"
                                  : "--resume: this job writes no checkpoints (checkpoint.interval_steps and "
                                    "interval_s are 0)");
  PSF_RETURN_IF_ERROR(ResolveInitFrom("ps-train", &config, options.run_dir));
  PSF_ASSIGN_OR_RETURN(PreparedJob p, PrepareJob(config, config.training.batch_size));
  ResolveJobLength(&config, p.data.train.rows);
  PSF_RETURN_IF_ERROR(p.spec.LoadInitialValues(config.model));
  PSF_ASSIGN_OR_RETURN(auto client, LocalParameterClient::Create(p.spec, config.optimizer, p.model->weights()));
  ProgressPrinter progress(progress_out, config.training.progress_interval_s);
  AnnounceJob(progress, config, p, "");
  if (sparse && given.checkpoint.enabled())
    progress.Line("checkpoints off: ps-train holds the sparse tables in this process and checkpoints dense models "
                  "only (ps-launch's servers checkpoint the tables)");
  if (sparse && config.cluster.memory_budget_mb > 0)
    progress.Line("cluster.memory_budget_mb is the servers' (ps-launch): ps-train holds every row of its tables in "
                  "memory");
  std::unique_ptr<LocalCheckpoints> checkpoints;
  int64_t first_step = 0;
  std::vector<EvaluationRecord> earlier;
  if (checkpointed) {
    PSF_ASSIGN_OR_RETURN(checkpoints, LocalCheckpoints::Open(config, p.spec, options.resume));
    PSF_ASSIGN_OR_RETURN(first_step, checkpoints->Restore(p.model->weights(), &client->optimizer()));
    client->set_version(first_step);
    if (options.resume) {
      PSF_ASSIGN_OR_RETURN(earlier, checkpoints->Evaluations());
      progress.Line(first_step > 0 ? "resuming from the checkpoint at step " + std::to_string(first_step) + " in " +
                                         config.checkpoint.dir
                                   : "--resume: no checkpoint of this job was committed in " +
                                         config.checkpoint.dir + "; starting from the beginning");
    }
  }
  const ShardPlan plan = ShardPlan::ForJob(config, p.data.train.rows);
  LocalShardSource local_source(&plan, config.training.epochs, config.training.max_steps, first_step,
                                config.training.batch_size);
  BatchSource* source = &local_source;
  ParameterClient* parameters = client.get();
  std::optional<RecordingSource> recording;
  std::optional<CheckpointingClient> checkpointing;
  if (checkpoints) {
    source = &recording.emplace(&local_source, checkpoints.get());
    parameters = &checkpointing.emplace(client.get(), checkpoints.get(), p.model->weights());
  }
  Trainer trainer(config, p.model.get(), parameters, &progress);
  PSF_ASSIGN_OR_RETURN(TrainResult result, trainer.Run(p.data.train, p.data.test, source));
  if (checkpoints) {
    PSF_ASSIGN_OR_RETURN(bool wrote,
                         checkpoints->MaybeWrite(result.steps, p.model->weights(), client->optimizer(), true));
    if (wrote || checkpoints->committed() == result.steps)
      progress.Line("final checkpoint at step " + std::to_string(result.steps) + " in " + config.checkpoint.dir);
    // The epochs evaluated before the run was resumed come first.
    std::vector<EpochResult> history;
    for (const EvaluationRecord& e : earlier) history.push_back({e.epoch, e.step, e.train_loss, e.metric, e.test_logloss, e.time_s});
    history.insert(history.end(), result.history.begin(), result.history.end());
    result.history = std::move(history);
  }
  if (!options.export_path.empty()) {
    // The final evaluation estimated batchnorm's statistics for these weights.
    PSF_RETURN_IF_ERROR(ExportModel(config, p.data, *p.model, result.steps, options.export_path));
    progress.Line("wrote the trained model to " + options.export_path);
  }
  return result;
}

}  // namespace psforge
