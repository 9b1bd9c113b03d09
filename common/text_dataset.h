// Text for character-level language models (data.format: text).
//
// The corpus is the bytes of the configured files, concatenated in order (a
// folder contributes its regular files, sorted by name, skipping symbolic
// links, which would repeat a file, and files holding NUL bytes, which are
// not text); each skipped file is reported. The vocabulary is the set of
// bytes that occur, in byte order: a character's id is its rank. Records
// are windows of window + 1 consecutive bytes starting every `window`
// bytes: inputs the first `window` ids, targets the `window` ids that
// follow each. Every validation_every-th window is validation data, the
// rest training data: a deterministic split that every process makes the
// same way. Immutable once read; thread-safe to read.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/dataset.h"

namespace psforge {

struct TextCorpus {
  std::string bytes;
  std::vector<uint8_t> vocabulary;  // the bytes that occur, ascending
  std::array<int16_t, 256> id{};    // byte -> id, -1 where absent
  std::vector<std::string> files;   // read, in order
  std::vector<int64_t> file_ends;   // where each file's bytes end in `bytes`
  std::vector<std::string> skipped; // "<path>: <why>"
  double unigram_bits = 0;          // entropy of the byte frequencies, bits per character
};

// Errors name the file: unreadable, a named file that is not text, an empty
// corpus, one over 1 GiB.
Result<TextCorpus> ReadTextCorpus(const std::vector<std::string>& paths);

// The corpus's windows as training and validation sets (targets: `window`
// ids per record; classes: the vocabulary's size). Fails when there are
// fewer than validation_every + 1 windows.
Result<TrainTestData> WindowText(const TextCorpus& corpus, int64_t window, int64_t validation_every);

// data.task masked (config.h): the records split by a hash of their text,
// each side's records concatenated and cut into windows; inputs and targets
// are both the windows' ids, until MaskForPretraining. Fails when either
// side has no window.
Result<TrainTestData> MaskedText(const TextCorpus& corpus, int64_t window, int64_t validation_every);

// data.task classify: one sample per record of the files named `classes`
// (file names without folder), split as MaskedText splits; NotFound names
// a class no file has.
Result<TrainTestData> ClassifyText(const TextCorpus& corpus, const std::vector<std::string>& classes, int64_t window,
                                   int64_t validation_every);

// The share of positions BERT's rule chooses.
inline constexpr double kMaskRate = 0.15;

// BERT's rule on one window of `positions` ids (its targets a copy of
// them): each position is chosen with probability kMaskRate; a chosen one
// keeps its target and its input becomes [MASK] (id `vocabulary`) with
// probability 0.8, a uniformly random character with 0.1, or stays; every
// other position's target becomes -1 (no loss there). The choice depends
// only on (seed, epoch, row), so that every process masks a record the same
// way, whichever worker reads it.
void MaskForPretraining(uint64_t seed, int64_t epoch, int64_t row, int64_t vocabulary, float* ids, float* targets,
                        int64_t positions);

// The test records' share of the class most frequent among the training
// records: what always answering that class scores.
double MajorityAccuracy(const Dataset& train, const Dataset& test);

// The id of each byte of `text`; NotFound names a byte outside the vocabulary.
Result<std::vector<float>> EncodeText(const TextCorpus& corpus, const std::string& text);

}  // namespace psforge
