#include "common/cli_flags.h"

namespace psforge {

void AddCommonFlags(CLI::App* app, CommonFlags* f, bool with_training) {
  app->add_option("--config", f->config_path, "job config (YAML)")->required();
  app->add_option("--set", f->sets, "override any field: --set optimizer.learning_rate=0.01");
  if (!with_training) return;
  app->add_option("--epochs", f->epochs, "override training.epochs")->check(CLI::PositiveNumber);
  app->add_option("--threads", f->threads, "override training.threads")->check(CLI::PositiveNumber);
  app->add_option("--summary", f->summary_path, "write a JSON summary of the run to this file");
}

Result<JobConfig> LoadConfigFromFlags(const CommonFlags& f) {
  std::vector<ConfigOverride> overrides;
  if (f.epochs > 0) overrides.emplace_back("training.epochs", std::to_string(f.epochs));
  if (f.threads > 0) overrides.emplace_back("training.threads", std::to_string(f.threads));
  for (const auto& s : f.sets) {
    PSF_ASSIGN_OR_RETURN(ConfigOverride o, ParseOverride(s));
    overrides.push_back(o);
  }
  return LoadJobConfig(f.config_path, overrides);
}

void AddCurveFlags(CLI::App* app, CurveFlags* f) {
  app->add_option("--key", f->key, "this host's CURVE key pair (ps-keys); turns CURVE on");
  app->add_option("--cluster-keys", f->cluster_keys, "the cluster's public keys (ps-keys), with --key");
}

Result<std::unique_ptr<Transport>> CreateTransport(const std::string& key, const std::string& cluster_keys,
                                                   int io_threads) {
  if (key.empty() != cluster_keys.empty())
    return InvalidArgument("CURVE needs a key pair and the cluster's keys both (--key and --cluster-keys, "
                           "or security.key and security.cluster_keys)");
  if (key.empty()) return Transport::CreateZmq(io_threads);
  PSF_ASSIGN_OR_RETURN(CurveOptions curve, LoadCurveOptions(key, cluster_keys));
  return Transport::CreateZmq(io_threads, curve);
}

}  // namespace psforge
