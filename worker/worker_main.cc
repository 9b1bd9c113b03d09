// ps-worker: one worker of a cluster job.
//
//   ps-worker --coordinator tcp://HOST:PORT [--connect-timeout S] [--summary FILE]
//             [--save-weights FILE]
//
// Knows only the coordinator's address: it joins the job there (learning the
// config, the server map and its id), trains the data shards it leases, and
// evaluates when the coordinator asks. Exits 0 when the job's data is done.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "worker/train_job.h"

int main(int argc, char** argv) {
  CLI::App app{"ps-worker: one worker of a psforge cluster job"};
  std::string coordinator, summary;
  double connect_timeout_s = 30;
  app.add_option("--coordinator", coordinator, "the coordinator's endpoint, e.g. tcp://10.0.0.1:7070")
      ->required();
  app.add_option("--connect-timeout", connect_timeout_s,
                 "seconds to wait for the coordinator (at start, and when it goes silent)")
      ->check(CLI::PositiveNumber);
  app.add_option("--summary", summary, "write this worker's JSON summary here");
  std::string save_weights;
  app.add_option("--save-weights", save_weights,
                 "if this worker runs the final evaluation, write the final weights here (raw float32)");
  psforge::CurveFlags curve;
  psforge::AddCurveFlags(&app, &curve);
  PSF_PARSE_FLAGS(app, argc, argv);

  psforge::JobConfig config;
  auto result = psforge::RunClusterWorker(coordinator, curve, connect_timeout_s, save_weights, &config, stderr);
  return psforge::ReportResult("ps-worker", result, config, summary);
}
