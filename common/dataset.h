// In-memory data sets and their readers (IDX, CSV, Criteo click logs).
//
// A file is decoded once into a dense row-major float matrix; training then
// gathers batches from it with cheap copies. Every reader checks what it
// reads: wrong magic, truncated or trailing data, count mismatches between
// images and labels, and non-numeric CSV cells are DataLoss/InvalidArgument
// errors naming the file and the place, never a crash or a short read.
// A Dataset is immutable after loading; thread-safe to read.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/model_spec.h"

namespace psforge {

// A click log read on demand: where each kStreamBlock-th record starts in
// its file (built by reading and checking the whole file once), so that a
// block of records can be read again by one seek. Its size is the file's
// divided by ~50,000; the records themselves stay in the file.
inline constexpr int64_t kStreamBlock = 256;
struct RecordIndex {
  std::string path;
  bool skip_malformed = false;
  std::vector<int64_t> offsets;  // byte offset of record b * kStreamBlock (or of a malformed line before it)
  std::vector<int64_t> lines;    // the lines before that offset
};

struct Dataset {
  int64_t rows = 0;
  int64_t features = 0;
  std::vector<float> x;        // rows * features, row-major
  std::vector<float> targets;  // rows * target_width: class index, 0/1, or a real value
  int64_t target_width = 1;    // targets per row (text: one per position)
  int64_t classes = 0;         // text: the vocabulary's size (classify: data.classes); 0: model.classes
  int64_t tokens = 0;          // text: the input ids, the vocabulary's (and [MASK]); 0: not ids
  // Click logs: `categorical` feature keys a row (rows * categorical, row-
  // major), each FeatureKey(field, value) or kNoFeature where missing; the
  // dense features are in x.
  int64_t categorical = 0;
  std::vector<uint64_t> keys;
  // Click logs are not held: x, targets and keys are empty, and the
  // records are read from the file where the index says
  // (common/record_blocks.h).
  std::shared_ptr<const RecordIndex> stream;

  std::span<const float> Row(int64_t i) const {
    return {x.data() + i * features, static_cast<std::size_t>(features)};
  }
};

// Reads an IDX image file (magic 0x00000803, unsigned bytes) and its label
// file (magic 0x00000801); gzip or plain. Pixels are multiplied by `scale`.
Result<Dataset> ReadIdx(const std::string& images_path, const std::string& labels_path,
                        float scale);

// Reads a CSV file of numbers; `label_column` (-1 = last) is the target.
Result<Dataset> ReadCsv(const std::string& path, int64_t label_column, bool header);

// Mean and standard deviation over every feature value of a data set.
struct FeatureStats {
  double mean = 0, stddev = 1;
};
FeatureStats ComputeFeatureStats(const Dataset& data);

// x = (x - mean) / stddev, in place.
void Standardize(const FeatureStats& stats, Dataset* data);

// The number of features per sample of the training set, from the file's
// header or first row only (servers need the model shape, not the data).
Result<int64_t> ReadFeatureCount(const JobConfig& config);


// Reads a click log in the Criteo layout (common/criteo.h) into a Dataset:
// the label as the target, the integers as sign(x) log(1 + |x|) features
// (0 where missing), the categorical values as feature keys. A malformed
// line is an error naming the file and line, or (skip_malformed) skipped
// and counted in `*skipped`.
Result<Dataset> ReadCriteo(const std::string& path, bool skip_malformed, int64_t* skipped = nullptr);
// The same file as a streamed Dataset: every line read and checked (the
// same errors), only the index kept.
Result<Dataset> IndexCriteo(const std::string& path, bool skip_malformed, int64_t* skipped = nullptr);
// One record as ReadCriteo decodes it: kCriteoDense features into `x`,
// the label into `*target`, kCriteoCategorical keys into `keys`.
struct CtrRecord;
void DecodeCtrRecord(const CtrRecord& r, float* x, float* target, uint64_t* keys);
// The shape of the data a model is built for (model_spec.h). Text reads
// the corpus; the other formats a header or row.
Result<DataShape> ReadDataShape(const JobConfig& config);
// The shape of a loaded data set.
DataShape ShapeOf(const JobConfig& config, const Dataset& data);

// Loads the training (train=true) or test set named by the config and checks
// its targets against the model (class indices < classes, 0/1 for logistic).
Result<Dataset> LoadDataset(const JobConfig& config, bool train);

// Loads both sets; with data.standardize, both are standardised with the
// training set's statistics. Text (text_dataset.h): the windows of the corpus.
struct TrainTestData {
  Dataset train, test;
  std::string report;  // what the reader found, for the log ("" when nothing to say)
  // What a user of the trained model must do to its inputs: the statistics
  // data.standardize applied (when it did), the text's vocabulary.
  bool standardized = false;
  FeatureStats stats;
  std::vector<uint8_t> vocabulary;
};
Result<TrainTestData> LoadTrainTest(const JobConfig& config);

}  // namespace psforge
