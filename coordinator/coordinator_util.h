// Small helpers the coordinator's source files share: durations and
// fixed-point numbers for log lines.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "common/clock.h"
#include "common/wire.h"

namespace psforge::coordinator_util {

using psforge::Clock;
using psforge::Seconds;

inline double Since(Clock::time_point t) { return SecondsSince(t); }

inline std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace psforge::coordinator_util
