// ps-worker: one worker of a cluster job.
//
//   ps-worker --coordinator tcp://HOST:PORT [--connect-timeout S] [--summary FILE]
//             [--save-weights FILE] [--key FILE --cluster-keys FILE] [--faults SPEC]
//
// Knows only the coordinator's address: it joins the job there (learning the
// config, the server map and its id), trains the data shards it leases, and
// evaluates when the coordinator asks. Exits 0 when the job's data is done.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "common/openmp_env.h"
#include "worker/train_job.h"

int main(int argc, char** argv) {
  psforge::BoundOpenMpSpinning(argv);  // common/openmp_env.h
  CLI::App app{"ps-worker: one worker of a psforge cluster job"};
  psforge::WorkerOptions options;
  std::string summary;
  psforge::AddMemberFlags(&app, &options.member);
  app.add_option("--summary", summary, "write this worker's JSON summary here");
  app.add_option("--save-weights", options.save_weights,
                 "if this worker runs the final evaluation, write the final weights here (raw float32)");
  PSF_PARSE_FLAGS(app, argc, argv);

  auto run = psforge::RunClusterWorker(options, stderr);
  if (!run.ok()) return psforge::ReportResult("ps-worker", run.status(), {}, summary);
  return psforge::ReportResult("ps-worker", run->result, run->config, summary);
}
