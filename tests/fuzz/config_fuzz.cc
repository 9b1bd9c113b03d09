// Fuzz target: the job config reader (YAML, every field validated). The
// input is the config text; its last line, when it starts "--set ", is an
// override as ps-coordinator --set takes it.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace psforge;
  std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<ConfigOverride> overrides;
  const auto last = text.rfind("\n--set ");
  if (last != std::string::npos) {
    auto o = ParseOverride(text.substr(last + 7));
    if (o.ok()) overrides.push_back(*o);
    else if (o.status().message().empty()) std::abort();
    text.resize(last);
  }
  auto config = ParseJobConfig(text, "fuzz.yaml", "/nonexistent", overrides);
  if (!config.ok() && config.status().message().empty()) std::abort();
  if (config.ok()) ConfigToJson(*config);
  return 0;
}
