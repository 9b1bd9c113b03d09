// Small helpers the coordinator's source files share: durations, role
// names, fixed-point numbers for log lines.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "common/wire.h"

namespace psforge::coordinator_util {

using Clock = std::chrono::steady_clock;

inline Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

inline double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

inline const char* RoleName(PeerRole r) { return r == PeerRole::kServer ? "server" : "worker"; }

inline std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace psforge::coordinator_util
