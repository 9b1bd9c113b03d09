// ps-generate: text from a character-level language model's newest
// committed checkpoint (or --step): a prompt, then sampled characters.
#include <cstdio>

#include "common/cli_flags.h"
#include "common/dataset.h"
#include "tools/checkpoint_reader.h"
#include "tools/text_generator.h"

namespace psforge {

Status Generate(const JobConfig& config, int64_t step, const GenerateOptions& options) {
  if (config.data.format != DataFormat::kText)
    return InvalidArgument("ps-generate needs a text job (data.format: text); " + config.path + " is not one");
  if (config.data.task != TextTask::kNext)
    return InvalidArgument(std::string("ps-generate needs a language model (data.task: next); ") + config.path +
                           " trains data.task " + TextTaskName(config.data.task));
  PSF_ASSIGN_OR_RETURN(TextCorpus corpus, ReadTextCorpus(config.data.text));
  PSF_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpec::FromConfig(config.model, config.data.window,
                                                             static_cast<int64_t>(corpus.vocabulary.size())));
  PSF_ASSIGN_OR_RETURN(CommittedWeights committed, ReadCommittedWeights(config, spec, step));
  PSF_ASSIGN_OR_RETURN(auto model, Model::Create(spec, 1));
  std::copy(committed.weights.begin(), committed.weights.end(), model->weights().begin());
  PSF_ASSIGN_OR_RETURN(std::string text, GenerateText(*model, corpus, options));
  std::fprintf(stderr, "ps-generate: the model at step %lld, temperature %g, seed %llu\n",
               static_cast<long long>(committed.step), options.temperature,
               static_cast<unsigned long long>(options.seed));
  std::printf("%s%s\n", options.prompt.c_str(), text.c_str());
  return Status::Ok();
}

}  // namespace psforge

int main(int argc, char** argv) {
  CLI::App app{"ps-generate: generate text with a character-level language model from its newest committed checkpoint"};
  psforge::CommonFlags flags;
  psforge::AddCommonFlags(&app, &flags, /*with_training=*/false);
  psforge::GenerateOptions options;
  int64_t step = -1;
  app.add_option("--prompt", options.prompt, "the text to continue");
  app.add_option("--length", options.length, "characters to generate (default 200)")->check(CLI::NonNegativeNumber);
  app.add_option("--temperature", options.temperature,
                 "sampling temperature: lower is more conservative, 0 picks the most likely character (default 0.8)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", options.seed, "the sampler's seed: the same seed gives the same text (default 1)");
  app.add_option("--step", step, "the committed checkpoint to read (default: the newest)");
  std::string run_dir;
  app.add_option("--run-dir", run_dir,
                 "the run whose checkpoints to read (default: checkpoint.dir if the config sets it, else the "
                 "newest run of this config under runs/)");
  PSF_PARSE_FLAGS(app, argc, argv);
  auto config = psforge::LoadConfigFromFlags(flags);
  if (!config.ok()) return std::fprintf(stderr, "ps-generate: %s\n", config.status().message().c_str()), 2;
  if (auto found = psforge::FindCheckpoints("ps-generate", flags.config_path, run_dir, &*config); !found.ok())
    return std::fprintf(stderr, "ps-generate: %s\n", found.message().c_str()), 1;
  psforge::Status s = psforge::Generate(*config, step, options);
  if (!s.ok()) return std::fprintf(stderr, "ps-generate: %s\n", s.message().c_str()), 1;
  return 0;
}
