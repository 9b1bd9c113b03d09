// Writes a trained model to a portable file a user loads in Python.
//
// The file is a NumPy .npz (common/npz_writer.h): one float32 array per
// tensor of the model spec, under the spec's names and shapes, which are
// PyTorch's (fc0.weight [out, in], conv0.weight [out, in, kh, kw],
// bn0.weight / bn0.bias for batchnorm's scale and shift), plus
// bn<i>.running_mean and bn<i>.running_var for each batchnorm (estimated
// from the training set, as evaluation does), and "psforge.json": the
// format name and version, the model section of the config, the step the
// weights are at, each tensor's name, shape and offset in the flattened key
// space, "input" (how to prepare a sample: InputDescription) and "labels"
// (the classes' names, when data.label_names gives them).
//
//   import numpy as np
//   m = np.load("model.npz")
//   w = m["fc0.weight"]            # float32, [500, 784]
//   info = json.loads(m["psforge.json"])
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/dataset.h"
#include "common/status.h"
#include "worker/model.h"

namespace psforge {

inline constexpr const char* kExportFormat = "psforge-npz";
inline constexpr int kExportVersion = 1;

// `model` holds the weights (and estimated statistics) to write; `step` is
// the training step they are at; `data` (as LoadTrainTest read it) says how
// inputs were prepared.
Status ExportModel(const JobConfig& config, const TrainTestData& data, Model& model, int64_t step,
                   const std::string& path);

// psforge.json's "input": what a user does to a sample before the model
// sees it. idx: {"format", "shape", "pixel_scale", "standardize": {"mean",
// "std"} or null: x = (byte * pixel_scale - mean) / std}; csv: the label
// column and the standardisation; text: {"window", "vocabulary": the
// characters in id order, "vocabulary_bytes": their byte values}.
nlohmann::json InputDescription(const JobConfig& config, const TrainTestData& data);

}  // namespace psforge
