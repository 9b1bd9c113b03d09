// Click logs in the Criteo TSV layout, read as a stream.
//
// Each line is one impression: a 0/1 label, kCriteoDense integer features
// and kCriteoCategorical categorical ones (hexadecimal, up to 16 digits),
// separated by tabs; any feature may be empty (missing). The Kaggle
// display-advertising and Terabyte click logs have this layout (with
// labels: their unlabelled test files are not read).
//
// CriteoReader reads one line at a time through a fixed buffer: a file far
// larger than memory streams through it. A malformed line is an
// InvalidArgument naming the file, the line number and what is wrong; with
// `skip_malformed` it is counted (malformed_lines()) and skipped instead.
// Thread-compatible.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/split_mix.h"
#include "common/status.h"

namespace psforge {

inline constexpr int kCriteoDense = 13;
inline constexpr int kCriteoCategorical = 26;

// The key of categorical value `value` of field `field`: the same value in
// two fields is two features (they may share a table). A missing value has
// no key (kNoFeature) and no embedding.
inline constexpr uint64_t kNoFeature = ~uint64_t{0};
inline uint64_t FeatureKey(int field, uint64_t value) {
  const uint64_t key = SplitMix64(value ^ SplitMix64(static_cast<uint64_t>(field) + 1));
  return key == kNoFeature ? key - 1 : key;
}

struct CtrRecord {
  float label = 0;                                    // 0 or 1
  std::array<int64_t, kCriteoDense> dense{};          // 0 where missing
  std::array<uint64_t, kCriteoCategorical> categorical{};  // 0 where missing
  uint32_t dense_missing = 0;                         // bit i: dense[i] was empty
  uint32_t categorical_missing = 0;                   // bit i: categorical[i] was empty
};

// Parses one line (without its newline). The error says what is wrong
// (the caller adds where).
Status ParseCriteoLine(std::string_view line, CtrRecord* out);

class CriteoReader {
 public:
  static Result<std::unique_ptr<CriteoReader>> Open(const std::string& path, bool skip_malformed = false);
  ~CriteoReader();

  // The next record: true with *out filled, false at the end of the file.
  Result<bool> Next(CtrRecord* out);

  // Lines read so far (the last one returned is line_number()).
  int64_t line_number() const { return line_; }
  // The byte offset of the next line.
  int64_t offset() const { return offset_; }
  // Goes to byte `offset`, the start of the line after line `line`.
  Status Seek(int64_t offset, int64_t line);
  int64_t malformed_lines() const { return malformed_; }
  const std::string& path() const { return path_; }

 private:
  CriteoReader(std::string path, std::FILE* file, bool skip_malformed)
      : path_(std::move(path)), file_(file), skip_malformed_(skip_malformed) {}

  std::string path_;
  std::FILE* file_;
  bool skip_malformed_;
  std::string line_buffer_;
  // The file is read in chunks into read_buffer_ (unbuffered stdio: one
  // copy); [read_pos_, read_end_) is what is left of the last chunk.
  std::vector<char> read_buffer_;
  std::size_t read_pos_ = 0, read_end_ = 0;
  int64_t line_ = 0;
  int64_t offset_ = 0;
  int64_t malformed_ = 0;
};

}  // namespace psforge
