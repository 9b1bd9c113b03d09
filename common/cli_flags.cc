#include "common/cli_flags.h"
#include "common/config_template.h"
#include "common/fault_transport.h"

#include <cstdio>
#include <tuple>

namespace psforge {

#ifndef PSFORGE_VERSION
#define PSFORGE_VERSION "unknown"
#endif

const char* VersionString() { return "psforge " PSFORGE_VERSION; }

int ParseFlags(CLI::App& app, int argc, const char* const* argv) {
  if (app.get_name().empty() && argc > 0) {
    std::string name = argv[0];
    app.name(name.substr(name.rfind('/') + 1));
  }
  app.set_version_flag("--version", VersionString());
  // Each option's current value (its default) shows in --help.
  // (-1 means "not given: the config decides", which the description says.)
  for (CLI::Option* o : app.get_options())
    if (o->get_default_str().empty() && o->get_expected_min() > 0) {
      o->capture_default_str();
      if (o->get_default_str() == "-1" || o->get_default_str() == "[]") o->default_str("");
    }
  try {
    app.parse(argc, argv);
    if (const CLI::Option* t = app.get_option_no_throw("--config-template"); t && t->count() > 0) {
      std::printf("%s", ConfigTemplate().c_str());
      return 0;
    }
  } catch (const CLI::CallForHelp&) {
    std::printf("%s", app.help().c_str());
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::printf("%s", app.help("", CLI::AppFormatMode::All).c_str());
    return 0;
  } catch (const CLI::CallForVersion&) {
    std::printf("%s\n", VersionString());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    std::fprintf(stderr, "%s: %s (see %s --help)\n", app.get_name().empty() ? "psforge" : app.get_name().c_str(),
                 what.c_str(), app.get_name().empty() ? "the command" : app.get_name().c_str());
    return 2;
  }
  return -1;
}

void AddCommonFlags(CLI::App* app, CommonFlags* f, bool with_training) {
  app->add_option("--config", f->config_path, "job config (YAML; every field: configs/README.md) (required)");
  app->add_flag("--config-template", f->config_template,
                "print a config with every field at its default, documented, and exit");
  app->add_option("--set", f->sets, "override any field: --set optimizer.learning_rate=0.01");
  if (!with_training) return;
  app->add_option("--epochs", f->epochs, "override training.epochs");
  app->add_option("--threads", f->threads, "override training.threads");
  app->add_option("--summary", f->summary_path, "write a JSON summary of the run to this file");
}

Result<JobConfig> LoadConfigFromFlags(const CommonFlags& f) {
  if (f.config_path.empty())
    return InvalidArgument("--config is required: a job's YAML file (configs/ has examples; --config-template "
                           "prints one with every field)");
  std::vector<ConfigOverride> overrides;
  if (f.epochs != -1) overrides.emplace_back("training.epochs", std::to_string(f.epochs));
  if (f.threads != -1) overrides.emplace_back("training.threads", std::to_string(f.threads));
  for (const auto& s : f.sets) {
    PSF_ASSIGN_OR_RETURN(ConfigOverride o, ParseOverride(s));
    overrides.push_back(o);
  }
  auto config = LoadJobConfig(f.config_path, overrides);
  if (config.ok()) return config;
  // A flag's value is checked as its field is; the message names both.
  std::string message = config.status().message();
  for (const auto& [field, flag, value] : {std::tuple{"'training.epochs'", "--epochs", f.epochs},
                                           std::tuple{"'training.threads'", "--threads", f.threads}})
    if (value != -1 && message.find(field) != std::string::npos)
      message += " (given as " + std::string(flag) + " " + std::to_string(value) + ")";
  return Status(config.status().code(), message);
}

void AddCurveFlags(CLI::App* app, CurveFlags* f) {
  app->add_option("--key", f->key, "this host's CURVE key pair (ps-keys); turns CURVE on");
  app->add_option("--cluster-keys", f->cluster_keys, "the cluster's public keys (ps-keys), with --key");
}

void AddMemberFlags(CLI::App* app, MemberOptions* o) {
  app->add_option("--coordinator", o->coordinator, "the coordinator's endpoint, e.g. tcp://10.0.0.1:7070")
      ->required();
  app->add_option("--connect-timeout", o->connect_timeout_s,
                  "seconds to wait for the coordinator before the job is known (afterwards, the job's "
                  "cluster.connect_timeout_s)")
      ->check(CLI::PositiveNumber);
  AddCurveFlags(app, &o->curve);
  app->add_option("--faults", o->faults,
                  "fault injection in this process, replacing the job's cluster.faults (none: no faults), e.g. "
                  "drop=0.02,delay=0.1,write_stall_ms=500 (configs/README.md)")
      ->check([](const std::string& spec) -> std::string {
        auto f = ParseFaultOptions(spec);
        return f.ok() ? "" : f.status().message();
      });
}

JobConfig MemberConfig(JobConfig job, const MemberOptions& options) {
  if (options.faults) job.cluster.faults = *options.faults;
  return job;
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
