#include "worker/trainer.h"

#include "common/record_blocks.h"

#include "common/clock.h"
#include "common/ctr_metrics.h"
#include "common/parallel.h"
#include "common/text_dataset.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <cstring>
#include <limits>
#include <numeric>

namespace psforge {
namespace {


std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

}  // namespace

Trainer::Trainer(const JobConfig& config, Model* model, ParameterClient* client,
                 ProgressPrinter* progress)
    : config_(config), model_(model), client_(client), progress_(progress) {
  const ModelSpec& spec = model->spec();
  batch_x_.resize(model->max_batch() * spec.inputs());
  batch_t_.resize(model->max_batch() * spec.target_width());
  rows_.reserve(model->max_batch());
  if (spec.categorical() > 0) {
    batch_keys_.resize(model->max_batch() * spec.categorical());
    sparse_ = std::make_unique<SparseBatch>(spec, model->max_batch());
  }
  masked_ = spec.loss() == LossKind::kMaskedSequenceSoftmaxCrossEntropy;
}

Trainer::~Trainer() {
  // The client's send buffers (GradientBuffer) go with the client; the
  // model outlives both (a worker that joins again trains it on).
  model_->UseGradientBuffer({});
}

Status Trainer::GatherStreamed(const Dataset& data, const int64_t* rows, int64_t n) {
  RecordBlocks* blocks = nullptr;
  for (auto& b : streams_)
    if (b->index() == data.stream.get()) blocks = b.get();
  if (!blocks) {
    // A shard's records in any order, and the next shard's first ones,
    // without reading a block twice.
    const auto held = static_cast<std::size_t>(2 * ((config_.data.shard_size + kStreamBlock - 1) / kStreamBlock) + 4);
    PSF_ASSIGN_OR_RETURN(auto opened, RecordBlocks::Open(data, std::max<std::size_t>(held, 16)));
    blocks = opened.get();
    streams_.push_back(std::move(opened));
  }
  const int64_t stride = model_->spec().inputs();
  for (int64_t i = 0; i < n; ++i) {
    PSF_ASSIGN_OR_RETURN(const RecordBlocks::Block* b, blocks->BlockOf(rows[i]));
    const int64_t k = rows[i] - b->first;
    std::memcpy(batch_x_.data() + i * stride, b->x.data() + k * kCriteoDense, kCriteoDense * sizeof(float));
    batch_t_[static_cast<std::size_t>(i)] = b->targets[static_cast<std::size_t>(k)];
    std::memcpy(batch_keys_.data() + i * kCriteoCategorical, b->keys.data() + k * kCriteoCategorical,
                kCriteoCategorical * sizeof(uint64_t));
  }
  return Status::Ok();
}

Status Trainer::Gather(const Dataset& data, const int64_t* rows, int64_t n) {
  if (data.stream) return GatherStreamed(data, rows, n);
  // A ctr model's input has room for the embeddings after the dense features.
  const int64_t stride = model_->spec().inputs();
  const std::size_t row_bytes = static_cast<std::size_t>(data.features) * sizeof(float);
  const std::size_t key_bytes = static_cast<std::size_t>(data.categorical) * sizeof(uint64_t);
  PSF_OMP_PARALLEL_FOR(schedule(static) if (n * data.features >= (1 << 16)))
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(batch_x_.data() + i * stride, data.x.data() + rows[i] * data.features, row_bytes);
    std::memcpy(batch_t_.data() + i * data.target_width, data.targets.data() + rows[i] * data.target_width,
                static_cast<std::size_t>(data.target_width) * sizeof(float));
    if (key_bytes > 0)
      std::memcpy(batch_keys_.data() + i * data.categorical, data.keys.data() + rows[i] * data.categorical, key_bytes);
  }
  return Status::Ok();
}

Status Trainer::PullEmbeddings(int64_t version, int64_t n) {
  sparse_->Plan(batch_keys_.data(), n);
  PSF_RETURN_IF_ERROR(client_->PullRows(version, sparse_->weights()));
  sparse_->Pool(batch_x_.data());
  return Status::Ok();
}

void Trainer::Mask(const int64_t* rows, int64_t n, int64_t epoch) {
  if (!masked_) return;
  const int64_t positions = model_->spec().target_width();
  for (int64_t i = 0; i < n; ++i)
    MaskForPretraining(config_.training.seed, epoch, rows[i], model_->spec().classes(),
                       batch_x_.data() + i * positions, batch_t_.data() + i * positions, positions);
}

Result<double> Trainer::Evaluate(const Dataset& data, int64_t version, double* second) {
  const int64_t b = model_->max_batch();
  nn::Scores sums;
  std::vector<int64_t> rows(b);
  scores_.clear();
  labels_.clear();
  for (int64_t start = 0; start < data.rows; start += b) {
    int64_t n = std::min(b, data.rows - start);
    std::iota(rows.begin(), rows.begin() + n, start);
    PSF_RETURN_IF_ERROR(Gather(data, rows.data(), n));
    if (!sparse_) {
      Mask(rows.data(), n, /*epoch=*/0);  // the same positions at every evaluation
      const nn::Scores s = model_->EvaluateBatch(batch_x_.data(), batch_t_.data(), n);
      sums.sum += s.sum;
      sums.count += s.count;
      sums.second += s.second;
      continue;
    }
    PSF_RETURN_IF_ERROR(PullEmbeddings(version, n).WithContext("evaluating version " + std::to_string(version)));
    std::span<const float> logits = model_->Predict(batch_x_.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      scores_.push_back(1.0f / (1.0f + std::exp(-logits[i])));
      labels_.push_back(batch_t_[i]);
    }
  }
  if (sparse_) {
    if (second) *second = LogLoss(scores_, labels_);
    return Auc(scores_, labels_);
  }
  if (second) *second = sums.count > 0 ? sums.second / sums.count : 0;
  return sums.count > 0 ? sums.sum / sums.count : 0;
}

void Trainer::EstimateStatistics(const Dataset& train) {
  if (!model_->spec().has_batch_statistics()) return;
  // The same records for every process and every evaluation: the first
  // kStatisticsBatches batches of the training set in file order (which for
  // the data sets we read is already shuffled).
  const int64_t b = model_->max_batch();
  std::vector<int64_t> rows(b);
  model_->BeginStatistics();
  for (int64_t k = 0; k < kStatisticsBatches && k * b < train.rows; ++k) {
    const int64_t start = k * b, n = std::min(b, train.rows - start);
    std::iota(rows.begin(), rows.begin() + n, start);
    // (Streamed click logs feed no model with batch statistics.)
    if (!Gather(train, rows.data(), n).ok()) break;
    model_->AccumulateStatistics(batch_x_.data(), n);
  }
  model_->EndStatistics();
}

Status Trainer::EvaluateEpoch(const Dataset& test, BatchSource* source, int64_t epoch, int64_t step,
                              bool final, double epoch_loss, TrainResult* result) {
  if (train_ != nullptr) EstimateStatistics(*train_);
  double second = 0;
  PSF_ASSIGN_OR_RETURN(const double metric, Evaluate(test, step, &second));
  EpochResult e{epoch, step, epoch_loss, metric, second, Seconds(start_)};
  result->history.push_back(e);
  char line[320];
  std::snprintf(line, sizeof line, "%s epoch %lld/%lld  step %lld  train loss %s  %s %.4f%s  %.1fs",
                final ? "final" : "after", (long long)epoch, (long long)source->epochs(), (long long)step,
                std::isfinite(e.train_loss) ? Fixed(e.train_loss, 4).c_str() : "n/a (no step of it trained here)",
                result->metric_name.c_str(), e.test_metric,
                result->second_name ? ("  " + std::string(result->second_name) + " " + Fixed(second, 4)).c_str() : "",
                e.wall_s);
  progress_->Line(line);
  return source->Report(epoch, step, e.test_metric, final, e.train_loss, e.test_logloss);
}

Result<TrainResult> Trainer::Run(const Dataset& train, const Dataset& test, BatchSource* source) {
  if (train.target_width != model_->spec().target_width() || test.target_width != train.target_width)
    return InvalidArgument("data: " + std::to_string(train.target_width) + " targets per record, the model expects " +
                           std::to_string(model_->spec().target_width()));
  const ModelSpec& spec = model_->spec();
  if (train.features != spec.dense_inputs() || test.features != spec.dense_inputs())
    return InvalidArgument("data: training set has " + std::to_string(train.features) +
                           " features and test set " + std::to_string(test.features) +
                           ", the model expects " + std::to_string(spec.dense_inputs()));
  if (train.categorical != spec.categorical() || test.categorical != spec.categorical())
    return InvalidArgument("data: training set has " + std::to_string(train.categorical) +
                           " categorical fields and test set " + std::to_string(test.categorical) +
                           ", the model expects " + std::to_string(spec.categorical()));
  train_ = &train;
  TrainResult result;
  result.metric_name = MetricName(config_);
  result.second_name = SecondMetricName(config_);
  if (config_.data.format == DataFormat::kText && config_.data.task == TextTask::kClassify)
    result.majority_accuracy = MajorityAccuracy(train, test);
  std::span<float> weights = model_->weights();
  int64_t step = source->first_step();
  PSF_RETURN_IF_ERROR(client_->Pull(step, weights));
  // Parts that can move one at a time: the first layer is cut where they
  // begin (not with sparse rows, whose push goes whole).
  if (!sparse_) model_->SetPartStarts(client_->part_starts());
  // After a push: whether the next weights may still be coming in
  // (PullFirst), and the time this step's forward pass waited for them.
  bool pulling = false;
  double waited_s = 0;
  auto finish_pull = [&]() -> Status {
    if (!pulling) return Status::Ok();
    pulling = false;
    const auto wait = Clock::now();
    Status s = client_->AwaitWeights(spec.num_params());
    waited_s += Seconds(wait);
    return s;
  };

  start_ = Clock::now();
  double train_s = 0;
  int64_t epoch = 0;
  double loss_sum = 0;
  int64_t loss_steps = 0;
  // NaN (unknown; null in JSON) when this process trained no step of the
  // epoch: a job resumed from its end-of-job checkpoint trains none, and a
  // 0 would read as a perfect loss.
  auto epoch_loss = [&] {
    return loss_steps > 0 ? loss_sum / static_cast<double>(loss_steps) : std::numeric_limits<double>::quiet_NaN();
  };
  while (true) {
    const auto step_start = Clock::now();
    // This process's part of the job's batch (all of it in-process).
    const int64_t split = std::max<int64_t>(1, client_->workers_in_step());
    const int64_t share = std::min(model_->max_batch(), (config_.training.batch_size + split - 1) / split);
    PSF_ASSIGN_OR_RETURN(BatchPlan plan, source->Next(step, share, &rows_));
    if (plan.evaluate_epoch > 0 || plan.stop) PSF_RETURN_IF_ERROR(finish_pull());
    if (plan.evaluate_epoch > 0) {
      train_s += Seconds(step_start);
      PSF_RETURN_IF_ERROR(EvaluateEpoch(test, source, plan.evaluate_epoch, step, false, epoch_loss(), &result));
      loss_sum = 0;
      loss_steps = 0;
    }
    if (plan.stop) break;
    const auto compute_start = plan.evaluate_epoch > 0 ? Clock::now() : step_start;
    epoch = std::max(epoch, plan.epoch);
    const int64_t n = plan.rows;
    DataMark mark{plan.lease, plan.lease_offset, n > 0 ? plan.epoch : 0, 0, 0};
    for (int64_t i = 0; i < n; ++i) {  // wraps mod 2^64 like the servers' sums
      const auto id = static_cast<uint64_t>(rows_[i]);
      mark.id_sum += id;
      mark.id_square_sum += id * id;
    }
    float loss = 0;
    std::span<const SparseRows> row_gradients;
    if (!sparse_) {
      // Where the client will send this step's gradient from (while the
      // next step computes): written there, it needs no copy.
      const auto wait = Clock::now();
      PSF_ASSIGN_OR_RETURN(std::span<float> gradient_buffer, client_->GradientBuffer());
      model_->UseGradientBuffer(gradient_buffer);
      waited_s += Seconds(wait);
    }
    if (n > 0) {
      PSF_RETURN_IF_ERROR(Gather(train, rows_.data(), n));
      Mask(rows_.data(), n, plan.epoch);
      if (sparse_) PSF_RETURN_IF_ERROR(PullEmbeddings(step, n));
      const auto compute = Clock::now();
      // The forward pass takes the weights' parts as it reaches them, and
      // parts of the gradient go out as backward makes them final (the
      // client decides what it can send ahead); not with sparse rows.
      Status ahead;
      double in_step = 0;  // of waited_s
      Model::StepHooks hooks;
      if (!sparse_) {
        hooks.gradient_final = [&](int64_t begin, int64_t end) {
          if (ahead.ok()) ahead = client_->PushReady(step, model_->gradients(), n, mark, begin, end);
        };
        if (pulling)
          hooks.weights_needed = [&](int64_t end) {
            if (!ahead.ok()) return;
            const auto wait = Clock::now();
            ahead = client_->AwaitWeights(end);
            in_step += Seconds(wait);
          };
      }
      loss = model_->TrainStep(batch_x_.data(), batch_t_.data(), n, step, rows_.data(), hooks);
      pulling = false;  // (the forward pass asked for every key)
      PSF_RETURN_IF_ERROR(ahead);
      result.compute_s += Seconds(compute) - in_step;
      waited_s += in_step;
      if (!std::isfinite(loss))
        return FailedPrecondition("loss became " + std::to_string(loss) + " at step " +
                                  std::to_string(step) +
                                  "; lower optimizer.learning_rate or set optimizer.clip_norm");
      loss_sum += loss;
      ++loss_steps;
      if (sparse_) row_gradients = sparse_->Gradients(model_->input_gradient(n));
    } else {
      PSF_RETURN_IF_ERROR(finish_pull());
      model_->ScaleGradients(0.0f);  // an empty step: nothing to contribute, but keep pace
    }
    const auto exchange = Clock::now();
    PSF_RETURN_IF_ERROR(client_->Push(step, model_->gradients(), n, mark, row_gradients));
    ++step;
    if (sparse_) {
      PSF_RETURN_IF_ERROR(client_->Pull(step, weights));
    } else {
      PSF_RETURN_IF_ERROR(client_->PullFirst(step, weights));
      pulling = true;
    }
    result.exchange_s += Seconds(exchange) + waited_s;
    waited_s = 0;
    ++result.pushes;
    source->Pushed(step - 1, loss, n, client_->applied_steps(), client_->wire_bytes());
    result.samples += n;
    train_s += Seconds(compute_start);
    const double rate = result.samples / std::max(1e-9, train_s);
    const int64_t total = source->total_records();
    ProgressState p;
    p.epoch = epoch;
    p.epochs = source->epochs();
    p.step = step;
    p.epoch_fraction = plan.epoch_fraction;
    p.loss = epoch_loss();
    p.samples_per_s = rate;
    p.eta_s = total > 0 ? static_cast<double>(total - result.samples) / std::max(1.0, rate) : 0;
    progress_->Step(p, Seconds(start_));
  }
  PSF_RETURN_IF_ERROR(client_->Leave());
  PSF_ASSIGN_OR_RETURN(const int64_t final_version, source->FinalVersion());
  result.epochs = epoch;
  result.steps = step;
  result.samples_per_s = result.samples / std::max(1e-9, train_s);
  result.parts_sent_ahead = client_->parts_sent_ahead();
  result.parts_pulled_late = client_->parts_pulled_during_forward();
  if (final_version != BatchSource::kNoFinalEvaluation) {
    if (final_version >= 0 && final_version != step) PSF_RETURN_IF_ERROR(client_->Pull(final_version, weights));
    PSF_RETURN_IF_ERROR(EvaluateEpoch(test, source, epoch, final_version >= 0 ? final_version : step,
                                      true, epoch_loss(), &result));
    result.evaluated = true;
    result.test_metric = result.history.back().test_metric;
    result.test_logloss = result.history.back().test_logloss;
  }
  result.wire = client_->wire_bytes();  // the final evaluation's pulls too
  result.wall_s = Seconds(start_);
  return result;
}

nlohmann::json SummaryJson(const TrainResult& r, const JobConfig& config) {
  nlohmann::json history = nlohmann::json::array();
  for (const auto& e : r.history) {
    history.push_back({{"epoch", e.epoch}, {"step", e.step}, {"train_loss", e.train_loss},
                       {r.metric_name, e.test_metric}, {"wall_s", e.wall_s}});
    if (r.second_name) history.back()[r.second_name] = e.test_logloss;
  }
  nlohmann::json j = {{"metric", r.metric_name}, {"epochs", r.epochs}, {"steps", r.steps},
                      {"samples", r.samples}, {"samples_per_s", r.samples_per_s},
                      {"wall_s", r.wall_s}, {"history", history}, {"config", ConfigToJson(config)}};
  if (r.evaluated) j[r.metric_name] = r.test_metric;
  if (r.pushes > 0) {
    // Where a step's time went, per step this process pushed.
    j["step_compute_ms"] = 1e3 * r.compute_s / static_cast<double>(r.pushes);
    j["step_exchange_ms"] = 1e3 * r.exchange_s / static_cast<double>(r.pushes);
  }
  if (r.parts_sent_ahead > 0) j["parts_pushed_during_backward"] = r.parts_sent_ahead;
  if (r.parts_pulled_late > 0) j["parts_pulled_during_forward"] = r.parts_pulled_late;
  if (r.wire.pushed > 0 || r.wire.pulled > 0) {
    j["bytes_pushed"] = r.wire.pushed;
    j["bytes_pulled"] = r.wire.pulled;
  }
  if (r.evaluated && r.second_name) j[r.second_name] = r.test_logloss;
  if (std::isfinite(r.majority_accuracy)) j["majority_accuracy"] = r.majority_accuracy;
  if (r.evaluated && r.second_name && config.model.kind == ModelKind::kCtr) {
    // Synthetic click logs (ps-ctr-data) come with their planted model's
    // AUC on the same test file: the best a learner can expect.
    if (auto planted = PlantedModelOf(config.data.test_tsv)) j.update(*planted);
  }
  return j;
}

}  // namespace psforge
