// ps-ctr-data: writes a synthetic click log in the Criteo TSV layout, drawn
// from a planted logistic model, and the AUC that model itself reaches on
// the test file (planted.json): the mark a trained CTR model is held to.
#include <cstdio>

#include "common/cli_flags.h"
#include "tools/ctr_data.h"

int main(int argc, char** argv) {
  CLI::App app{"ps-ctr-data: write train.tsv, test.tsv (Criteo TSV layout) and planted.json into a directory"};
  psforge::CtrDataOptions o;
  std::string dir;
  app.add_option("dir", dir, "the directory to write")->required();
  app.add_option("--train-rows", o.train_rows, "impressions in train.tsv (default 1000000)")->check(CLI::PositiveNumber);
  app.add_option("--test-rows", o.test_rows, "impressions in test.tsv (default 100000)")->check(CLI::PositiveNumber);
  app.add_option("--ids-per-field", o.ids_per_field,
                 "distinct values of each of the 26 categorical fields (default 1000000)");
  app.add_option("--zipf", o.zipf, "the Zipf exponent of how often each value occurs (default 1.05)");
  app.add_option("--missing", o.missing, "the chance that a feature is empty (default 0.05)");
  app.add_option("--weight-scale", o.weight_scale, "the spread of the planted categorical weights (default 0.7)");
  app.add_option("--seed", o.seed, "the same seed writes the same files (default 1)");
  PSF_PARSE_FLAGS(app, argc, argv);
  auto result = psforge::WriteCtrData(o, dir);
  if (!result.ok()) return std::fprintf(stderr, "ps-ctr-data: %s\n", result.status().message().c_str()), 1;
  std::printf("ps-ctr-data: %s: %lld train and %lld test impressions, click rate %.3f / %.3f; the planted model's "
              "test AUC %.4f, log loss %.4f\n",
              dir.c_str(), static_cast<long long>(o.train_rows), static_cast<long long>(o.test_rows),
              result->train_ctr, result->test_ctr, result->planted_auc, result->planted_logloss);
  return 0;
}
