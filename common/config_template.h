// --config-template: every field of a job config at its default, each with
// its line from the reference (configs/README.md, compiled in), as YAML a
// user edits into a config.
#pragma once

#include <string>

namespace psforge {

std::string ConfigTemplate();

}  // namespace psforge
