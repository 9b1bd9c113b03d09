#include "worker/model_export.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "common/npz_writer.h"

namespace psforge {

nlohmann::json InputDescription(const JobConfig& config, const TrainTestData& data) {
  const DataOptions& d = config.data;
  nlohmann::json standardize = nullptr;
  if (data.standardized) standardize = {{"mean", data.stats.mean}, {"std", data.stats.stddev}};
  switch (d.format) {
    case DataFormat::kIdx:
      return {{"format", "idx"}, {"shape", config.model.input_shape.empty()
                                               ? std::vector<int64_t>{data.train.features}
                                               : config.model.input_shape},
              {"pixel_scale", d.pixel_scale}, {"standardize", standardize}};
    case DataFormat::kCsv:
      return {{"format", "csv"}, {"features", data.train.features}, {"label_column", d.label_column},
              {"standardize", standardize}};
    case DataFormat::kCriteo:
      return {{"format", "criteo"}, {"dense_features", data.train.features}, {"categorical", data.train.categorical}};
    case DataFormat::kText: {
      std::string chars(data.vocabulary.begin(), data.vocabulary.end());
      std::vector<int> bytes(data.vocabulary.begin(), data.vocabulary.end());
      // Bytes that are not valid UTF-8 on their own are listed by value only.
      bool ascii = std::all_of(data.vocabulary.begin(), data.vocabulary.end(), [](uint8_t b) { return b < 0x80; });
      nlohmann::json j = {{"format", "text"}, {"window", d.window}, {"vocabulary_bytes", bytes},
                          {"task", TextTaskName(d.task)}};
      if (ascii) j["vocabulary"] = chars;
      if (d.task != TextTask::kNext) j["mask_id"] = static_cast<int64_t>(data.vocabulary.size());  // [MASK]
      if (d.task == TextTask::kClassify) j["labels"] = d.classes;
      return j;
    }
  }
  return nullptr;
}

Status ExportModel(const JobConfig& config, const TrainTestData& data, Model& model, int64_t step,
                   const std::string& path) {
  const ModelSpec& spec = model.spec();
  if (!spec.tables().empty())
    return FailedPrecondition("the model's sparse tables (model.tables) live on the servers, row by row; "
                              "export writes dense models only");
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
                         {"statistics", statistics},
                         {"input", InputDescription(config, data)}};
  if (!config.data.label_names.empty()) info["labels"] = config.data.label_names;
  PSF_RETURN_IF_ERROR(npz.AddText("psforge.json", info.dump(1)));
  return npz.Write(path);
}

}  // namespace psforge
