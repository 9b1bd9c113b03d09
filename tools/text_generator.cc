#include "tools/text_generator.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace psforge {

Result<std::string> GenerateText(Model& model, const TextCorpus& corpus, const GenerateOptions& o) {
  const ModelSpec& spec = model.spec();
  if (spec.loss() != LossKind::kSequenceSoftmaxCrossEntropy)
    return InvalidArgument("generation needs a sequence model (a text job's config)");
  const int64_t window = spec.inputs(), classes = spec.classes();
  if (classes != static_cast<int64_t>(corpus.vocabulary.size()))
    return InvalidArgument("the model has " + std::to_string(classes) + " classes, the corpus a vocabulary of " +
                           std::to_string(corpus.vocabulary.size()));
  if (!(o.temperature >= 0)) return InvalidArgument("--temperature must be >= 0");
  if (o.length < 0) return InvalidArgument("--length must be >= 0");
  PSF_ASSIGN_OR_RETURN(std::vector<float> context, EncodeText(corpus, o.prompt));
  const int16_t newline = corpus.id['\n'];
  if (static_cast<int64_t>(context.size()) < window && newline < 0)
    return InvalidArgument("the prompt is shorter than the window (" + std::to_string(window) +
                           ") and the vocabulary has no newline to pad it with");
  std::mt19937_64 rng(o.seed);
  std::vector<float> input(static_cast<std::size_t>(window));
  std::vector<double> p(static_cast<std::size_t>(classes));
  std::string out;
  out.reserve(static_cast<std::size_t>(o.length));
  for (int64_t k = 0; k < o.length; ++k) {
    const int64_t have = static_cast<int64_t>(context.size());
    for (int64_t i = 0; i < window; ++i) {
      const int64_t at = have - window + i;
      input[static_cast<std::size_t>(i)] = at >= 0 ? context[static_cast<std::size_t>(at)] : newline;
    }
    std::span<const float> logits = model.Predict(input.data(), 1).subspan(static_cast<std::size_t>((window - 1) * classes));
    int64_t next = 0;
    if (o.temperature == 0) {
      next = std::max_element(logits.begin(), logits.end()) - logits.begin();
    } else {
      const double top = *std::max_element(logits.begin(), logits.end());
      for (int64_t c = 0; c < classes; ++c) p[c] = std::exp((logits[c] - top) / o.temperature);
      // The sampling is ours (not std::discrete_distribution, whose draws
      // may differ between library versions): the same seed, the same text.
      double total = 0;
      for (double v : p) total += v;
      const double u = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0) * total;
      double acc = 0;
      next = classes - 1;
      for (int64_t c = 0; c < classes; ++c) {
        acc += p[c];
        if (u < acc) {
          next = c;
          break;
        }
      }
    }
    context.push_back(static_cast<float>(next));
    out += static_cast<char>(corpus.vocabulary[static_cast<std::size_t>(next)]);
  }
  return out;
}

}  // namespace psforge
