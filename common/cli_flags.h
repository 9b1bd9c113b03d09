// The flags every psforge command shares: --config, --epochs, --threads,
// --set, --summary. Flags override the config file's fields and go through
// the same validation.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/config.h"
#include "common/transport.h"

namespace psforge {

struct CommonFlags {
  std::string config_path;
  std::string summary_path;
  int64_t epochs = -1;   // -1: from the config (any other value is checked as the config field is)
  int64_t threads = -1;  // -1: from the config
  std::vector<std::string> sets;
  bool config_template = false;  // --config-template (ParseFlags prints it)
};

// Parses the command line the same way for every psforge command: --help
// (with each option's default) and --version print and give 0; a flag error
// is one line naming the flag and pointing at --help, and gives 2. Returns
// -1 when the command should go on. Use PSF_PARSE_FLAGS.
int ParseFlags(CLI::App& app, int argc, const char* const* argv);
#define PSF_PARSE_FLAGS(app, argc, argv)                                           \
  do {                                                                             \
    if (const int psf_code = ::psforge::ParseFlags((app), (argc), (argv)); psf_code >= 0) return psf_code; \
  } while (0)

// "psforge 0.1.0 (commit abc1234)".
const char* VersionString();

// Registers the flags on `app`; `with_training` adds --epochs, --threads and --summary.
void AddCommonFlags(CLI::App* app, CommonFlags* flags, bool with_training);

// Loads the config with the flags applied; an error names the field or flag.
Result<JobConfig> LoadConfigFromFlags(const CommonFlags& flags);

// --key and --cluster-keys: ZeroMQ CURVE for a server or worker (both or
// neither; ps-keys writes the files).
struct CurveFlags {
  std::string key, cluster_keys;
};
void AddCurveFlags(CLI::App* app, CurveFlags* flags);
// What a server or worker is told on its command line (ps-server,
// ps-worker): where the coordinator is and how to reach it; everything else
// comes with the job from the coordinator.
struct MemberOptions {
  std::string coordinator;  // its endpoint, e.g. tcp://10.0.0.1:7070
  // How long to wait for the coordinator before the job is known; once
  // joined, the job's cluster.connect_timeout_s.
  double connect_timeout_s = kDefaultConnectTimeoutS;
  CurveFlags curve;
  // --faults: replaces the job's cluster.faults in this process ("none": no faults).
  std::optional<std::string> faults;
};
// --coordinator (required), --connect-timeout, --key, --cluster-keys, --faults.
void AddMemberFlags(CLI::App* app, MemberOptions* options);
// The job's config as this member runs it (its --faults in place of the job's).
JobConfig MemberConfig(JobConfig job, const MemberOptions& options);

// The ZeroMQ transport for `key` and `cluster_keys`: CURVE when they are set.
Result<std::unique_ptr<Transport>> CreateTransport(const std::string& key, const std::string& cluster_keys,
                                                   int io_threads = 1);

}  // namespace psforge
