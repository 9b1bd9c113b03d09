// The metrics of click-through-rate models: the area under the ROC curve
// and the log loss, over predicted click probabilities and 0/1 labels.
#pragma once

#include <optional>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

namespace psforge {

// The probability that a random clicked example scores above a random
// unclicked one (ties count half): the Mann-Whitney statistic, O(n log n).
// 0.5 when either class is absent.
double Auc(std::span<const float> scores, std::span<const float> labels);

// The mean of -[y log p + (1 - y) log(1 - p)], with p clamped to
// [1e-7, 1 - 1e-7] as Keras and scikit-learn do.
double LogLoss(std::span<const float> probabilities, std::span<const float> labels);

// {planted_auc, planted_logloss} of the planted model on `test_tsv` when it
// is the test file of a synthetic click log (ps-ctr-data writes
// planted.json next to its test.tsv); nothing otherwise.
std::optional<nlohmann::json> PlantedModelOf(const std::string& test_tsv);

}  // namespace psforge
