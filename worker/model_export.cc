#include "worker/model_export.h"

#include <nlohmann/json.hpp>

#include "common/npz_writer.h"

namespace psforge {

Status ExportModel(const JobConfig& config, Model& model, int64_t step, const std::string& path) {
  const ModelSpec& spec = model.spec();
  std::span<const float> weights = model.weights();
  NpzWriter npz;
  nlohmann::json tensors = nlohmann::json::array();
  for (const TensorSpec& t : spec.tensors()) {
    PSF_RETURN_IF_ERROR(npz.AddArray(t.name, t.shape, weights.subspan(static_cast<std::size_t>(t.offset),
                                                                      static_cast<std::size_t>(t.size()))));
    tensors.push_back({{"name", t.name}, {"shape", t.shape}, {"offset", t.offset}});
  }
  nlohmann::json statistics = nlohmann::json::array();
  for (const auto& [name, values] : model.Statistics()) {
    PSF_RETURN_IF_ERROR(npz.AddArray(name, {static_cast<int64_t>(values.size())}, values));
    statistics.push_back(name);
  }
  nlohmann::json info = {{"format", kExportFormat},
                         {"version", kExportVersion},
                         {"step", step},
                         {"num_params", spec.num_params()},
                         {"model", ConfigToJson(config)["model"]},
                         {"tensors", tensors},
                         {"statistics", statistics}};
  PSF_RETURN_IF_ERROR(npz.AddText("psforge.json", info.dump(1)));
  return npz.Write(path);
}

}  // namespace psforge
