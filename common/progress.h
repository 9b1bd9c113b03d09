// ProgressPrinter: training progress on a console. A live, redrawn line on a
// terminal; plain periodic lines otherwise (logs, pipes). Not thread-safe.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace psforge {

struct ProgressState {
  int64_t epoch = 0, epochs = 0;
  int64_t step = 0;
  double epoch_fraction = 0;  // of the current epoch, in [0, 1]
  double loss = 0;
  double samples_per_s = 0;
  double eta_s = 0;
};

class ProgressPrinter {
 public:
  // Prints nothing when `out` is null.
  ProgressPrinter(std::FILE* out, double interval_s);
  // Prints when an interval has passed since the last update (or `force`).
  void Step(const ProgressState& s, double now_s, bool force = false);
  // A line of its own (clears a live line first).
  void Line(const std::string& text);

 private:
  std::FILE* out_;
  bool tty_;
  double interval_s_;
  double last_s_ = 0;  // the first update waits one interval: step 1 pays for primitive creation
  bool live_line_ = false;
};

std::string FormatDuration(double seconds);

}  // namespace psforge
