#include "common/ctr_metrics.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <vector>

namespace psforge {

std::optional<nlohmann::json> PlantedModelOf(const std::string& test_tsv) {
  const std::filesystem::path test(test_tsv);
  if (test.filename() != "test.tsv") return std::nullopt;
  std::ifstream in(test.parent_path() / "planted.json");
  if (!in) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("planted_auc") || !j["planted_auc"].is_number()) return std::nullopt;
  nlohmann::json out = {{"planted_auc", j["planted_auc"]}};
  if (j.contains("planted_logloss") && j["planted_logloss"].is_number()) out["planted_logloss"] = j["planted_logloss"];
  return out;
}

double Auc(std::span<const float> scores, std::span<const float> labels) {
  const std::size_t n = std::min(scores.size(), labels.size());
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  // Sum of the positives' ranks (1-based), ties given their mean rank.
  double rank_sum = 0, positives = 0;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j < n && scores[order[j]] == scores[order[i]]) ++j;
    const double mean_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2;
    for (std::size_t k = i; k < j; ++k)
      if (labels[order[k]] > 0.5f) rank_sum += mean_rank, positives += 1;
    i = j;
  }
  const double negatives = static_cast<double>(n) - positives;
  if (positives == 0 || negatives == 0) return 0.5;
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

double LogLoss(std::span<const float> probabilities, std::span<const float> labels) {
  const std::size_t n = std::min(probabilities.size(), labels.size());
  if (n == 0) return 0;
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double p = std::clamp(static_cast<double>(probabilities[i]), 1e-7, 1 - 1e-7);
    sum -= labels[i] > 0.5f ? std::log(p) : std::log(1 - p);
  }
  return sum / static_cast<double>(n);
}

}  // namespace psforge
