#include "tools/ctr_data.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/criteo.h"
#include "common/ctr_metrics.h"
#include "common/split_mix.h"

namespace psforge {
namespace {

// A standard normal from two hashed draws (Box-Muller).
double Normal(uint64_t key) {
  const double u1 = 1.0 - UnitInterval(SplitMix64(key)), u2 = UnitInterval(SplitMix64(key ^ 0xa5a5a5a5a5a5a5a5ULL));
  return std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
}

class Generator {
 public:
  explicit Generator(const CtrDataOptions& o) : o_(o) {
    // The Zipf law's CDF over ranks 1..n, capped at 2^22 entries: beyond
    // that the tail is spread uniformly over the remaining ranks (its mass
    // is tiny for any exponent near 1 or above).
    const int64_t kept = std::min<int64_t>(o.ids_per_field, int64_t{1} << 22);
    cdf_.resize(static_cast<std::size_t>(kept));
    double sum = 0;
    for (int64_t r = 0; r < kept; ++r) cdf_[r] = sum += std::pow(static_cast<double>(r + 1), -o.zipf);
    double tail = 0;
    if (o.ids_per_field > kept) {  // the integral of x^-s from kept + 1 to n + 1
      const double a = static_cast<double>(kept + 1), b = static_cast<double>(o.ids_per_field + 1);
      tail = o.zipf == 1.0 ? std::log(b / a) : (std::pow(b, 1 - o.zipf) - std::pow(a, 1 - o.zipf)) / (1 - o.zipf);
    }
    total_ = sum + tail;
    for (int j = 0; j < kCriteoDense; ++j) dense_weight_[j] = 0.15 * Normal(o.seed * 977 + 31 * j + 5);
  }

  // Writes one impression for row `index` (of file `file`) into `line`; its click probability.
  double Row(int file, int64_t index, std::string* line) {
    uint64_t state = SplitMix64(o_.seed ^ SplitMix64((static_cast<uint64_t>(file) << 56) ^ static_cast<uint64_t>(index)));
    auto draw = [&] { return UnitInterval(state = SplitMix64(state)); };
    double logit = kBias;
    char buf[32];
    // The label goes first: the features are written after a placeholder.
    std::string& features = *line;
    features.clear();
    features.push_back('0');
    for (int j = 0; j < kCriteoDense; ++j) {
      features.push_back('\t');
      if (draw() < o_.missing) continue;
      // Geometric counts with means from 1 to 40.
      const double mean = 1 + 3 * j;
      const int64_t x = static_cast<int64_t>(std::floor(std::log(1 - draw()) / std::log(mean / (mean + 1))));
      features.append(std::to_string(x));
      logit += dense_weight_[j] * (std::log1p(static_cast<double>(x)) - std::log1p(mean));
    }
    for (int f = 0; f < kCriteoCategorical; ++f) {
      features.push_back('\t');
      if (draw() < o_.missing) continue;
      const uint64_t rank = Rank(draw());
      const uint64_t key = (static_cast<uint64_t>(f) << 40) ^ rank;
      const uint64_t id = SplitMix64(o_.seed ^ key) & 0xffffffffULL;
      std::snprintf(buf, sizeof buf, "%08llx", static_cast<unsigned long long>(id));
      features.append(buf);
      logit += o_.weight_scale * kFieldScale[f % 4] * Normal(o_.seed * 7919 + key);
    }
    const double p = 1 / (1 + std::exp(-logit));
    const bool click = draw() < p;
    features[0] = click ? '1' : '0';
    features.push_back('\n');
    return p;
  }

 private:
  // The rank (0-based) of a value for a uniform draw u.
  uint64_t Rank(double u) const {
    const double target = u * total_;
    if (target < cdf_.back())
      return static_cast<uint64_t>(std::upper_bound(cdf_.begin(), cdf_.end(), target) - cdf_.begin());
    // The tail: uniform over the ranks beyond the table.
    const uint64_t kept = cdf_.size(), rest = static_cast<uint64_t>(o_.ids_per_field) - kept;
    return kept + std::min<uint64_t>(rest - 1, static_cast<uint64_t>((target - cdf_.back()) / (total_ - cdf_.back()) * rest));
  }

  static constexpr double kBias = -1.3;  // about a quarter of impressions clicked, as in Criteo's logs
  static constexpr double kFieldScale[4] = {1.0, 0.6, 0.3, 0.1};  // some fields matter more than others
  const CtrDataOptions o_;
  std::vector<double> cdf_;
  double total_ = 0;
  double dense_weight_[kCriteoDense];
};

Status Check(const CtrDataOptions& o) {
  if (o.train_rows < 1 || o.test_rows < 1) return InvalidArgument("train and test rows must be >= 1");
  if (o.ids_per_field < 2 || o.ids_per_field > (int64_t{1} << 32))
    return InvalidArgument("ids per field must be in [2, 2^32], got " + std::to_string(o.ids_per_field));
  if (!(o.zipf > 0 && o.zipf <= 4)) return InvalidArgument("the Zipf exponent must be in (0, 4]");
  if (!(o.missing >= 0 && o.missing < 1)) return InvalidArgument("the missing rate must be in [0, 1)");
  if (!(o.weight_scale >= 0 && std::isfinite(o.weight_scale))) return InvalidArgument("weight scale must be >= 0");
  return Status::Ok();
}

}  // namespace

Result<PlantedResult> WriteCtrData(const CtrDataOptions& o, const std::string& dir) {
  PSF_RETURN_IF_ERROR(Check(o));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Unavailable("cannot create " + dir + ": " + ec.message());
  Generator gen(o);
  PlantedResult result;
  std::vector<float> probabilities, labels;
  std::string line;
  for (int file = 0; file < 2; ++file) {
    const std::string path = dir + (file == 0 ? "/train.tsv" : "/test.tsv");
    const std::string partial = path + ".partial";
    std::FILE* out = std::fopen(partial.c_str(), "wb");
    if (!out) return Unavailable("cannot write " + partial + ": " + std::strerror(errno));
    const int64_t rows = file == 0 ? o.train_rows : o.test_rows;
    int64_t clicks = 0;
    for (int64_t i = 0; i < rows; ++i) {
      const double p = gen.Row(file, i, &line);
      clicks += line[0] == '1';
      if (file == 1) {
        probabilities.push_back(static_cast<float>(p));
        labels.push_back(line[0] == '1' ? 1.0f : 0.0f);
      }
      if (std::fwrite(line.data(), 1, line.size(), out) != line.size()) break;
    }
    const bool written = !std::ferror(out);
    if (std::fclose(out) != 0 || !written) {
      std::filesystem::remove(partial, ec);
      return Unavailable("cannot write " + path + ": " + std::strerror(errno));
    }
    std::filesystem::rename(partial, path, ec);
    if (ec) return Unavailable("cannot rename " + partial + ": " + ec.message());
    (file == 0 ? result.train_ctr : result.test_ctr) = static_cast<double>(clicks) / static_cast<double>(rows);
  }
  result.planted_auc = Auc(probabilities, labels);
  result.planted_logloss = LogLoss(probabilities, labels);
  nlohmann::json j = {{"train_rows", o.train_rows},       {"test_rows", o.test_rows},
                      {"ids_per_field", o.ids_per_field}, {"zipf", o.zipf},
                      {"missing", o.missing},             {"weight_scale", o.weight_scale},
                      {"seed", o.seed},                   {"train_ctr", result.train_ctr},
                      {"test_ctr", result.test_ctr},      {"planted_auc", result.planted_auc},
                      {"planted_logloss", result.planted_logloss}};
  std::ofstream planted(dir + "/planted.json");
  planted << j.dump(2) << "\n";
  if (!planted) return Unavailable("cannot write " + dir + "/planted.json");
  return result;
}

}  // namespace psforge
