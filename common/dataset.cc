#include "common/dataset.h"

#include "common/criteo.h"
#include "common/text_dataset.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>

#include <zlib.h>

namespace psforge {
namespace {

// gzread reads gzip and plain files alike.
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path), f_(gzopen(path.c_str(), "rb")) {}
  ~GzFile() {
    if (f_) gzclose(f_);
  }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  bool is_open() const { return f_ != nullptr; }

  // Reads exactly n bytes or reports what was wrong.
  Status ReadExactly(void* dst, std::size_t n, const char* what) {
    auto* p = static_cast<unsigned char*>(dst);
    std::size_t done = 0;
    while (done < n) {
      unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - done, 1u << 30));
      int got = gzread(f_, p + done, chunk);
      if (got < 0) return Corrupt();
      if (got == 0)
        return DataLoss(path_ + ": truncated: expected " + std::to_string(n) + " bytes of " + what +
                        ", file ends after " + std::to_string(done));
      done += static_cast<std::size_t>(got);
    }
    return Status::Ok();
  }

  // Reads exactly n bytes into *out, growing it as they arrive: a header
  // may claim more than the file holds, and nothing is allocated for bytes
  // that are not there.
  Status ReadGrowing(std::vector<unsigned char>* out, std::size_t n, const char* what) {
    constexpr std::size_t kStep = std::size_t{64} << 20;
    out->clear();
    while (out->size() < n) {
      const std::size_t done = out->size(), chunk = std::min(n - done, kStep);
      out->resize(done + chunk);
      int got = gzread(f_, out->data() + done, static_cast<unsigned>(chunk));
      if (got < 0) return Corrupt();
      out->resize(done + static_cast<std::size_t>(got));
      if (got == 0)
        return DataLoss(path_ + ": truncated: expected " + std::to_string(n) + " bytes of " + what +
                        ", file ends after " + std::to_string(done));
    }
    return Status::Ok();
  }

  Status ExpectEnd() {
    unsigned char extra;
    int got = gzread(f_, &extra, 1);
    if (got < 0) return Corrupt();
    if (got > 0) return DataLoss(path_ + ": unexpected data after the last record");
    return Status::Ok();
  }

 private:
  Status Corrupt() {
    int errnum = 0;
    const char* msg = gzerror(f_, &errnum);
    return DataLoss(path_ + ": corrupt compressed data (" + std::string(msg ? msg : "?") + ")");
  }

  std::string path_;
  gzFile f_;
};

uint32_t BigEndian32(const unsigned char* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Reads the IDX header; returns the dimensions.
Result<std::vector<uint32_t>> ReadIdxHeader(GzFile& f, const std::string& path, uint32_t magic,
                                            const char* kind) {
  unsigned char b[4];
  PSF_RETURN_IF_ERROR(f.ReadExactly(b, 4, "header"));
  uint32_t got = BigEndian32(b);
  if (got != magic)
    return DataLoss(path + ": wrong magic " + Hex(got) + ", expected " + Hex(magic) + " (IDX " +
                    kind + ")");
  std::vector<uint32_t> dims(magic & 0xff);
  for (auto& d : dims) {
    PSF_RETURN_IF_ERROR(f.ReadExactly(b, 4, "header"));
    d = BigEndian32(b);
  }
  return dims;
}

}  // namespace

Result<Dataset> ReadIdx(const std::string& images_path, const std::string& labels_path,
                        float scale) {
  GzFile images(images_path), labels(labels_path);
  if (!images.is_open()) return NotFound(images_path + ": cannot open");
  if (!labels.is_open()) return NotFound(labels_path + ": cannot open");
  PSF_ASSIGN_OR_RETURN(auto idims, ReadIdxHeader(images, images_path, 0x00000803, "images"));
  PSF_ASSIGN_OR_RETURN(auto ldims, ReadIdxHeader(labels, labels_path, 0x00000801, "labels"));
  if (idims[0] != ldims[0])
    return InvalidArgument(images_path + " holds " + std::to_string(idims[0]) + " images but " +
                           labels_path + " holds " + std::to_string(ldims[0]) + " labels");
  constexpr uint64_t kMaxBytes = uint64_t{1} << 34;
  uint64_t features = uint64_t{idims[1]} * idims[2];
  if (features == 0 || features * idims[0] > kMaxBytes)
    return DataLoss(images_path + ": implausible dimensions " + std::to_string(idims[0]) + "x" +
                    std::to_string(idims[1]) + "x" + std::to_string(idims[2]));

  Dataset d;
  d.rows = idims[0];
  d.features = static_cast<int64_t>(features);
  std::vector<unsigned char> bytes;
  PSF_RETURN_IF_ERROR(images.ReadGrowing(&bytes, d.rows * d.features, "pixels"));
  PSF_RETURN_IF_ERROR(images.ExpectEnd());
  d.x.resize(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) d.x[i] = bytes[i] * scale;

  std::vector<unsigned char> lab;
  PSF_RETURN_IF_ERROR(labels.ReadGrowing(&lab, d.rows, "labels"));
  PSF_RETURN_IF_ERROR(labels.ExpectEnd());
  d.targets.assign(lab.begin(), lab.end());
  return d;
}

Result<Dataset> ReadCsv(const std::string& path, int64_t label_column, bool header) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open");
  Dataset d;
  std::string line;
  int64_t line_no = 0, columns = -1;
  std::vector<float> cells;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (header && line_no == 1) continue;
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    cells.clear();
    std::size_t pos = 0;
    while (true) {
      std::size_t comma = line.find(',', pos);
      std::size_t end = comma == std::string::npos ? line.size() : comma;
      std::size_t b = line.find_first_not_of(" \t", pos);
      std::size_t e = line.find_last_not_of(" \t", end == 0 ? 0 : end - 1);
      float v = 0;
      bool ok = b < end && e != std::string::npos && e >= b;
      if (ok) {
        auto [ptr, ec] = std::from_chars(line.data() + b, line.data() + e + 1, v);
        ok = ec == std::errc() && ptr == line.data() + e + 1 && std::isfinite(v);
      }
      if (!ok)
        return InvalidArgument(path + ":" + std::to_string(line_no) + ": column " +
                               std::to_string(cells.size() + 1) + ": '" +
                               line.substr(pos, end - pos) + "' is not a finite number");
      cells.push_back(v);
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    if (columns < 0) {
      columns = static_cast<int64_t>(cells.size());
      if (columns < 2)
        return InvalidArgument(path + ":" + std::to_string(line_no) +
                               ": need at least one feature column and a label column");
      if (label_column >= columns)
        return InvalidArgument(path + ": label_column " + std::to_string(label_column) +
                               " but rows have only " + std::to_string(columns) + " columns");
      d.features = columns - 1;
    } else if (static_cast<int64_t>(cells.size()) != columns) {
      return InvalidArgument(path + ":" + std::to_string(line_no) + ": " +
                             std::to_string(cells.size()) + " columns, earlier rows have " +
                             std::to_string(columns));
    }
    int64_t label = label_column < 0 ? columns - 1 : label_column;
    for (int64_t c = 0; c < columns; ++c) {
      if (c == label) d.targets.push_back(cells[c]);
      else d.x.push_back(cells[c]);
    }
    ++d.rows;
  }
  if (in.bad()) return DataLoss(path + ": read error");
  if (d.rows == 0) return InvalidArgument(path + ": no data rows");
  return d;
}

void DecodeCtrRecord(const CtrRecord& r, float* x, float* target, uint64_t* keys) {
  *target = r.label;
  for (int i = 0; i < kCriteoDense; ++i) {
    const double v = static_cast<double>(r.dense[i]);
    x[i] = static_cast<float>(v < 0 ? -std::log1p(-v) : std::log1p(v));  // missing: 0
  }
  for (int f = 0; f < kCriteoCategorical; ++f)
    keys[f] = (r.categorical_missing >> f) & 1 ? kNoFeature : FeatureKey(f, r.categorical[f]);
}

Result<Dataset> ReadCriteo(const std::string& path, bool skip_malformed, int64_t* skipped) {
  PSF_ASSIGN_OR_RETURN(auto reader, CriteoReader::Open(path, skip_malformed));
  Dataset d;
  d.features = kCriteoDense;
  d.categorical = kCriteoCategorical;
  CtrRecord r;
  while (true) {
    PSF_ASSIGN_OR_RETURN(bool more, reader->Next(&r));
    if (!more) break;
    d.targets.resize(d.targets.size() + 1);
    d.x.resize(d.x.size() + kCriteoDense);
    d.keys.resize(d.keys.size() + kCriteoCategorical);
    DecodeCtrRecord(r, d.x.data() + d.x.size() - kCriteoDense, &d.targets.back(),
                    d.keys.data() + d.keys.size() - kCriteoCategorical);
    ++d.rows;
  }
  if (skipped) *skipped = reader->malformed_lines();
  if (d.rows == 0) return InvalidArgument(path + ": no records");
  return d;
}

Result<Dataset> IndexCriteo(const std::string& path, bool skip_malformed, int64_t* skipped) {
  PSF_ASSIGN_OR_RETURN(auto reader, CriteoReader::Open(path, skip_malformed));
  auto index = std::make_shared<RecordIndex>();
  index->path = path;
  index->skip_malformed = skip_malformed;
  Dataset d;
  d.features = kCriteoDense;
  d.categorical = kCriteoCategorical;
  CtrRecord r;
  while (true) {
    const int64_t offset = reader->offset(), line = reader->line_number();
    PSF_ASSIGN_OR_RETURN(bool more, reader->Next(&r));
    if (!more) break;
    if (d.rows % kStreamBlock == 0) index->offsets.push_back(offset), index->lines.push_back(line);
    ++d.rows;
  }
  if (skipped) *skipped = reader->malformed_lines();
  if (d.rows == 0) return InvalidArgument(path + ": no records");
  d.stream = std::move(index);
  return d;
}

Result<int64_t> ReadFeatureCount(const JobConfig& config) {
  const DataOptions& o = config.data;
  if (o.format == DataFormat::kText) return o.window;
  if (o.format == DataFormat::kCriteo) return kCriteoDense;
  if (o.format == DataFormat::kIdx) {
    GzFile images(o.train_images);
    if (!images.is_open()) return NotFound(o.train_images + ": cannot open");
    PSF_ASSIGN_OR_RETURN(auto dims, ReadIdxHeader(images, o.train_images, 0x00000803, "images"));
    return static_cast<int64_t>(dims[1]) * dims[2];
  }
  std::ifstream in(o.train_csv);
  std::string line;
  if (o.csv_header) std::getline(in, line);
  if (!std::getline(in, line)) return InvalidArgument(o.train_csv + ": no data rows");
  // Columns are commas + 1, one of them the label.
  return static_cast<int64_t>(std::count(line.begin(), line.end(), ','));
}

Result<Dataset> LoadDataset(const JobConfig& config, bool train) {
  const DataOptions& o = config.data;
  if (o.format == DataFormat::kText) {
    PSF_ASSIGN_OR_RETURN(TrainTestData d, LoadTrainTest(config));
    return train ? std::move(d.train) : std::move(d.test);
  }
  if (o.format == DataFormat::kCriteo) return IndexCriteo(train ? o.train_tsv : o.test_tsv, o.skip_malformed);
  Result<Dataset> d = o.format == DataFormat::kIdx
      ? ReadIdx(train ? o.train_images : o.test_images, train ? o.train_labels : o.test_labels,
                o.pixel_scale)
      : ReadCsv(train ? o.train_csv : o.test_csv, o.label_column, o.csv_header);
  if (!d.ok()) return d;
  const char* which = train ? "training set" : "test set";
  for (int64_t i = 0; i < d->rows; ++i) {
    float t = d->targets[i];
    switch (config.model.kind) {
      case ModelKind::kMlp:
      case ModelKind::kSequential:
        if (t < 0 || t >= config.model.classes || t != std::floor(t))
          return InvalidArgument(std::string(which) + " row " + std::to_string(i) + ": label " +
                                 std::to_string(t) + " is not a class index below model.classes=" +
                                 std::to_string(config.model.classes));
        break;
      case ModelKind::kLogisticRegression:
        if (t != 0.0f && t != 1.0f)
          return InvalidArgument(std::string(which) + " row " + std::to_string(i) + ": label " +
                                 std::to_string(t) + " must be 0 or 1 for logistic_regression");
        break;
      case ModelKind::kLinearRegression:
      case ModelKind::kCtr:
        break;
    }
  }
  return d;
}

FeatureStats ComputeFeatureStats(const Dataset& data) {
  double sum = 0, sq = 0;
  for (float v : data.x) {
    sum += v;
    sq += static_cast<double>(v) * v;
  }
  FeatureStats s;
  double n = static_cast<double>(data.x.size());
  if (n == 0) return s;
  s.mean = sum / n;
  double var = sq / n - s.mean * s.mean;
  s.stddev = var > 1e-12 ? std::sqrt(var) : 1.0;
  return s;
}

void Standardize(const FeatureStats& stats, Dataset* data) {
  const float mean = static_cast<float>(stats.mean), inv = static_cast<float>(1.0 / stats.stddev);
  for (float& v : data->x) v = (v - mean) * inv;
}

Result<DataShape> ReadDataShape(const JobConfig& config) {
  if (config.data.format == DataFormat::kText) {
    // The readers the workers use decide the classes and ids (milliseconds
    // for a corpus that is read whole anyway), so the servers' spec is theirs.
    PSF_ASSIGN_OR_RETURN(TrainTestData data, LoadTrainTest(config));
    return ShapeOf(config, data.train);
  }
  if (config.data.format == DataFormat::kCriteo) return DataShape{kCriteoDense, 0, kCriteoCategorical};
  PSF_ASSIGN_OR_RETURN(int64_t features, ReadFeatureCount(config));
  return DataShape{features, 0};
}

DataShape ShapeOf(const JobConfig& config, const Dataset& data) {
  return DataShape{data.features, data.classes, data.categorical, data.tokens,
                   config.data.format == DataFormat::kText && config.data.task == TextTask::kMasked};
}

Result<TrainTestData> LoadTrainTest(const JobConfig& config) {
  if (config.data.format == DataFormat::kText) {
    PSF_ASSIGN_OR_RETURN(TextCorpus corpus, ReadTextCorpus(config.data.text));
    switch (config.data.task) {
      case TextTask::kMasked: return MaskedText(corpus, config.data.window, config.data.validation_every);
      case TextTask::kClassify:
        return ClassifyText(corpus, config.data.classes, config.data.window, config.data.validation_every);
      case TextTask::kNext: break;
    }
    return WindowText(corpus, config.data.window, config.data.validation_every);
  }
  if (config.data.format == DataFormat::kCriteo) {
    TrainTestData d;
    int64_t skipped_train = 0, skipped_test = 0;
    // Parsed once into memory when small enough (data.preload_mb), else
    // indexed and streamed.
    auto open = [&](const std::string& path, int64_t* skipped) -> Result<Dataset> {
      std::error_code ec;
      const auto bytes = std::filesystem::file_size(path, ec);
      if (!ec && static_cast<int64_t>(bytes) <= config.data.preload_mb * (int64_t{1} << 20))
        return ReadCriteo(path, config.data.skip_malformed, skipped);
      return IndexCriteo(path, config.data.skip_malformed, skipped);
    };
    PSF_ASSIGN_OR_RETURN(d.train, open(config.data.train_tsv, &skipped_train));
    PSF_ASSIGN_OR_RETURN(d.test, open(config.data.test_tsv, &skipped_test));
    if (skipped_train + skipped_test > 0)
      d.report = "skipped malformed lines (data.skip_malformed): " + std::to_string(skipped_train) + " in " +
                 config.data.train_tsv + ", " + std::to_string(skipped_test) + " in " + config.data.test_tsv;
    return d;
  }
  PSF_ASSIGN_OR_RETURN(Dataset train, LoadDataset(config, /*train=*/true));
  PSF_ASSIGN_OR_RETURN(Dataset test, LoadDataset(config, /*train=*/false));
  if (train.features != test.features)
    return InvalidArgument("data: the training set has " + std::to_string(train.features) +
                           " features per sample but the test set has " +
                           std::to_string(test.features));
  TrainTestData d;
  d.train = std::move(train);
  d.test = std::move(test);
  if (config.data.standardize) {
    d.standardized = true;
    d.stats = ComputeFeatureStats(d.train);
    Standardize(d.stats, &d.train);
    Standardize(d.stats, &d.test);
  }
  return d;
}

}  // namespace psforge
