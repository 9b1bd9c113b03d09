// Synthetic click logs in the Criteo TSV layout with a planted model, so
// that the best achievable AUC of a test set is known.
//
// Each of the 26 categorical fields draws its value's rank from a Zipf law
// over `ids_per_field` values (a few values are most of the traffic, as in
// real click logs) and writes it as a hexadecimal id; the 13 integer
// features are geometric counts. The label of an impression is drawn from
// the planted logistic model: sigmoid(bias + sum over fields of the
// value's weight + sum over integer features of w_j log(1 + x_j)), every
// weight a pure function of the seed. Missing values (empty fields) carry
// no weight. The planted model's own AUC and log loss over the test file
// are what no learner can beat in expectation.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace psforge {

struct CtrDataOptions {
  int64_t train_rows = 1000000;     // >= 1
  int64_t test_rows = 100000;       // >= 1
  int64_t ids_per_field = 1000000;  // distinct values per categorical field, [2, 2^32]
  double zipf = 1.05;               // the Zipf exponent of value ranks, (0, 4]
  double missing = 0.05;            // the chance that any feature is empty, [0, 1)
  double weight_scale = 0.7;        // the spread of the categorical weights, >= 0
  uint64_t seed = 1;
};

struct PlantedResult {
  double train_ctr = 0;        // the fraction of clicks in each file
  double test_ctr = 0;
  double planted_auc = 0;      // of the planted model's probabilities on the test file
  double planted_logloss = 0;
};

// Writes `dir`/train.tsv, `dir`/test.tsv and `dir`/planted.json (the
// options and the PlantedResult), creating `dir`. Streams: memory stays
// small (the test file's probabilities, 4 bytes a row) whatever the size.
Result<PlantedResult> WriteCtrData(const CtrDataOptions& options, const std::string& dir);

}  // namespace psforge
