// Text generation with a trained character-level language model.
//
// The model reads windows of `positions` characters from zero states (as it
// was trained); each new character is drawn from the softmax of the model's
// output at the window's last position, divided by the temperature, with a
// seeded generator: the same model, prompt, temperature and seed give the
// same text. A context shorter than the window is padded on the left with
// newlines (the separator the corpus's texts start after). Temperature 0
// picks the most likely character every time.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "common/text_dataset.h"
#include "worker/model.h"

namespace psforge {

struct GenerateOptions {
  std::string prompt;        // every character must be in the vocabulary
  int64_t length = 200;      // characters to generate after the prompt
  double temperature = 0.8;  // >= 0
  uint64_t seed = 1;
};

// `model` is a sequence model over `corpus`'s vocabulary, built for batches
// of at least 1. Returns the generated characters (without the prompt).
Result<std::string> GenerateText(Model& model, const TextCorpus& corpus, const GenerateOptions& options);

}  // namespace psforge
