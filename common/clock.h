// Durations from the seconds configs and flags speak in, on the steady clock.
#pragma once

#include <chrono>

namespace psforge {

using Clock = std::chrono::steady_clock;

inline Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

inline std::chrono::milliseconds Milliseconds(double s) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(s));
}

// Seconds from `t` to now.
inline double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace psforge
