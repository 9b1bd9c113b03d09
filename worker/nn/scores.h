// What evaluating a batch gives (nn::Loss::Score).
#pragma once

namespace psforge::nn {

// The evaluation metric's sum over a batch (correct predictions for
// classifiers, squared error for regression, bits for a language model),
// over `count` scored things (the samples; the masked positions for a
// masked loss), and the second metric's sum where there is one (the bits
// at the masked positions).
struct Scores {
  double sum = 0, count = 0, second = 0;
};

}  // namespace psforge::nn
