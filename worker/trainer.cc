#include "worker/trainer.h"

#include "common/parallel.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

namespace psforge {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string FormatDuration(double s) {
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%.0fs", s);
  return buf;
}

}  // namespace

void ShuffledOrder(uint64_t seed, std::vector<int64_t>* order) {
  for (std::size_t i = 0; i < order->size(); ++i) (*order)[i] = static_cast<int64_t>(i);
  uint64_t state = seed;
  // Fisher-Yates with our own generator: the order is the same on every platform.
  for (std::size_t i = order->size(); i > 1; --i) {
    std::size_t j = static_cast<std::size_t>(SplitMix64(state) % i);
    std::swap((*order)[i - 1], (*order)[j]);
  }
}

ProgressPrinter::ProgressPrinter(std::FILE* out, double interval_s)
    : out_(out), tty_(isatty(fileno(out)) != 0), interval_s_(interval_s) {}

void ProgressPrinter::Step(int64_t epoch, int64_t epochs, int64_t step_in_epoch,
                           int64_t steps_per_epoch, double loss, double samples_per_s, double eta_s,
                           double now_s) {
  bool last = step_in_epoch == steps_per_epoch;
  if (!last && now_s - last_s_ < (tty_ ? interval_s_ / 4 : interval_s_)) return;
  last_s_ = now_s;
  if (tty_) {
    constexpr int kWidth = 24;
    int filled = static_cast<int>(kWidth * step_in_epoch / std::max<int64_t>(1, steps_per_epoch));
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    std::fprintf(out_, "\r\033[Kepoch %lld/%lld [%s] step %lld/%lld  loss %.4f  %.0f samples/s  ETA %s",
                 (long long)epoch, (long long)epochs, bar.c_str(), (long long)step_in_epoch,
                 (long long)steps_per_epoch, loss, samples_per_s, FormatDuration(eta_s).c_str());
    live_line_ = true;
  } else if (!last) {
    std::fprintf(out_, "epoch %lld/%lld step %lld/%lld loss %.4f samples/s %.0f eta %s\n",
                 (long long)epoch, (long long)epochs, (long long)step_in_epoch,
                 (long long)steps_per_epoch, loss, samples_per_s, FormatDuration(eta_s).c_str());
  }
  std::fflush(out_);
}

void ProgressPrinter::Line(const std::string& text) {
  if (live_line_) std::fputs("\r\033[K", out_);
  live_line_ = false;
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

Trainer::Trainer(const JobConfig& config, Model* model, ParameterClient* client,
                 ProgressPrinter* progress, WorkerShare share)
    : config_(config), model_(model), client_(client), progress_(progress), share_(share) {
  batch_x_.resize(model->max_batch() * model->spec().inputs());
  batch_t_.resize(model->max_batch());
}

void Trainer::Gather(const Dataset& data, const int64_t* rows, int64_t n) {
  const std::size_t row_bytes = static_cast<std::size_t>(data.features) * sizeof(float);
  PSF_OMP_PARALLEL_FOR(schedule(static) if (n * data.features >= (1 << 16)))
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(batch_x_.data() + i * data.features, data.x.data() + rows[i] * data.features,
                row_bytes);
    batch_t_[i] = data.targets[rows[i]];
  }
}

double Trainer::Evaluate(const Dataset& data) {
  const int64_t b = model_->max_batch();
  double sum = 0;
  order_.resize(data.rows);
  std::iota(order_.begin(), order_.end(), 0);
  for (int64_t start = 0; start < data.rows; start += b) {
    int64_t n = std::min(b, data.rows - start);
    Gather(data, order_.data() + start, n);
    sum += model_->EvaluateBatch(batch_x_.data(), batch_t_.data(), n);
  }
  return sum / static_cast<double>(data.rows);
}

Result<TrainResult> Trainer::Run(const Dataset& train, const Dataset& test) {
  const TrainingOptions& t = config_.training;
  if (train.features != model_->spec().inputs() || test.features != model_->spec().inputs())
    return InvalidArgument("data: training set has " + std::to_string(train.features) +
                           " features and test set " + std::to_string(test.features) +
                           ", the model expects " + std::to_string(model_->spec().inputs()));
  const int64_t batch = t.batch_size;  // global: summed over all workers
  const int64_t steps_per_epoch = (train.rows + batch - 1) / batch;
  int64_t total_steps = steps_per_epoch * t.epochs;
  if (t.max_steps > 0) total_steps = std::min(total_steps, t.max_steps);
  const int64_t epochs = (total_steps + steps_per_epoch - 1) / steps_per_epoch;

  TrainResult result;
  result.metric_name =
      config_.model.kind == ModelKind::kLinearRegression ? "test_mse" : "test_accuracy";
  std::span<float> weights = model_->weights();
  client_->ExpectSteps(total_steps);
  PSF_RETURN_IF_ERROR(client_->Pull(0, weights));

  const auto start = Clock::now();
  double train_s = 0;
  int64_t step = 0, samples = 0;
  std::vector<int64_t> order(train.rows);
  for (int64_t epoch = 1; epoch <= epochs; ++epoch) {
    if (t.shuffle) ShuffledOrder(t.seed * 1000003ULL + static_cast<uint64_t>(epoch), &order);
    else std::iota(order.begin(), order.end(), 0);
    double loss_sum = 0;
    const auto epoch_start = Clock::now();
    const int64_t epoch_steps = std::min(steps_per_epoch, total_steps - step);
    for (int64_t s = 0; s < epoch_steps; ++s) {
      const int64_t global_begin = s * batch, global_n = std::min(batch, train.rows - global_begin);
      const KeyRange part = PartitionKeys(global_n, share_.count, share_.index);
      const int64_t n = part.size();
      float loss = 0;
      if (n > 0) {
        Gather(train, order.data() + global_begin + part.begin, n);
        loss = model_->TrainStep(batch_x_.data(), batch_t_.data(), n);
      }
      // Servers average the workers' mean gradients; weighting each by its
      // share of the batch makes that average the mean over the whole batch.
      if (n * share_.count != global_n)
        model_->ScaleGradients(static_cast<float>(n * share_.count) / static_cast<float>(global_n));
      if (!std::isfinite(loss))
        return FailedPrecondition("loss became " + std::to_string(loss) + " at step " +
                                  std::to_string(step) +
                                  "; lower optimizer.learning_rate or set optimizer.clip_norm");
      PSF_RETURN_IF_ERROR(client_->Push(step, model_->gradients()));
      ++step;
      PSF_RETURN_IF_ERROR(client_->Pull(step, weights));
      loss_sum += loss;
      samples += global_n;
      double epoch_s = Seconds(epoch_start);
      double rate = samples / std::max(1e-9, train_s + epoch_s);
      double eta = (total_steps - step) * batch / std::max(1.0, rate);
      progress_->Step(epoch, epochs, s + 1, epoch_steps, loss_sum / (s + 1), rate, eta,
                      Seconds(start));
    }
    train_s += Seconds(epoch_start);
    EpochResult e{epoch, loss_sum / epoch_steps, Evaluate(test), Seconds(start)};
    result.history.push_back(e);
    char line[256];
    std::snprintf(line, sizeof line, "epoch %lld/%lld  train loss %.4f  %s %.4f  %.0f samples/s  %.1fs",
                  (long long)epoch, (long long)epochs, e.train_loss, result.metric_name.c_str(),
                  e.test_metric, samples / train_s, e.wall_s);
    progress_->Line(line);
  }
  result.test_metric = result.history.back().test_metric;
  result.epochs = epochs;
  result.steps = step;
  result.samples_per_s = samples / train_s;
  result.wall_s = Seconds(start);
  return result;
}

nlohmann::json SummaryJson(const TrainResult& r, const JobConfig& config) {
  nlohmann::json history = nlohmann::json::array();
  for (const auto& e : r.history)
    history.push_back({{"epoch", e.epoch}, {"train_loss", e.train_loss},
                       {r.metric_name, e.test_metric}, {"wall_s", e.wall_s}});
  return {{r.metric_name, r.test_metric}, {"metric", r.metric_name}, {"epochs", r.epochs},
          {"steps", r.steps}, {"samples_per_s", r.samples_per_s}, {"wall_s", r.wall_s},
          {"history", history}, {"config", ConfigToJson(config)}};
}

}  // namespace psforge
