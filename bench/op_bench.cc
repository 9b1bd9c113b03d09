// Times every op of the op-test harness (forward and backward, the same cases
// nn_ops_test checks), the optimizers over the MLP's 397,510 weights, and one
// whole MLP training step broken into its parts.
// Usage: op_bench [--threads N] [--reps N]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "paramserver/optimizer.h"
#include "worker/model.h"
#include "worker/nn/op_cases.h"

namespace {

using Clock = std::chrono::steady_clock;

// Median microseconds of `reps` calls after a warm-up.
double MedianMicros(int reps, const std::function<void()>& f) {
  f();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto s = Clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, reps = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
  }
  omp_set_num_threads(threads);
  std::printf("threads %d, median of %d calls\n\n%-40s %12s %12s\n", threads, reps, "op", "forward us",
              "backward us");
  for (const auto& c : psforge::nn::AllOpCases()) {
    auto op = c.make(1);
    psforge::nn::Vec dy = op->Forward();
    op->Backward(dy);
    double f = MedianMicros(reps, [&] { op->TimeForward(); });
    double b = MedianMicros(reps, [&] { op->TimeBackward(dy); });
    std::printf("%-40s %12.1f %12.1f\n", c.name.c_str(), f, b);
  }

  const int64_t n = 397510;
  std::vector<float> w(n, 0.1f), g(n, 0.01f);
  std::printf("\n%-40s %12s\n", "optimizer over 397,510 floats", "us");
  for (auto kind : {psforge::OptimizerKind::kSgd, psforge::OptimizerKind::kMomentum,
                    psforge::OptimizerKind::kAdam, psforge::OptimizerKind::kAdaGrad}) {
    psforge::OptimizerOptions o;
    o.kind = kind;
    auto opt = std::move(psforge::Optimizer::Create(o, n)).value();
    std::printf("%-40s %12.1f\n", psforge::OptimizerKindName(kind),
                MedianMicros(reps, [&] { opt->Apply(w, g); }));
  }

  psforge::ModelOptions mo;
  auto spec = std::move(psforge::ModelSpec::FromConfig(mo, 784)).value();
  auto model = std::move(psforge::Model::Create(spec, 128)).value();
  spec.Initialize({0, spec.num_params()}, model->weights());
  std::vector<float> x(128 * 784, 0.3f), t(128);
  for (int i = 0; i < 128; ++i) t[i] = static_cast<float>(i % 10);
  double step = MedianMicros(reps, [&] { model->TrainStep(x.data(), t.data(), 128); });
  double flops = 128.0 * (6.0 * (784 * 500 + 500 * 10) - 2.0 * 784 * 500);  // no first-layer input grad
  std::printf("\n%-40s %12.1f   (%.0f GFLOP/s, %.0f samples/s without the optimizer)\n",
              "MLP 784-500-10 forward+backward, b=128", step, flops / step / 1e3, 128 / step * 1e6);
  return 0;
}
