#include "common/progress.h"

#include <unistd.h>

#include <algorithm>

namespace psforge {

std::string FormatDuration(double s) {
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%.0fs", std::max(0.0, s));
  return buf;
}

ProgressPrinter::ProgressPrinter(std::FILE* out, double interval_s)
    : out_(out), tty_(out != nullptr && isatty(fileno(out)) != 0), interval_s_(interval_s) {}

void ProgressPrinter::Step(const ProgressState& s, double now_s, bool force) {
  if (out_ == nullptr) return;
  if (!force && now_s - last_s_ < (tty_ ? interval_s_ / 4 : interval_s_)) return;
  last_s_ = now_s;
  const int pct = static_cast<int>(100 * std::clamp(s.epoch_fraction, 0.0, 1.0));
  if (tty_) {
    constexpr int kWidth = 24;
    std::string bar(static_cast<std::size_t>(kWidth * pct / 100), '#');
    bar.resize(kWidth, '.');
    std::fprintf(out_, "\r\033[Kepoch %lld/%lld [%s] %3d%%  step %lld  loss %.4f  %.0f samples/s  ETA %s",
                 (long long)s.epoch, (long long)s.epochs, bar.c_str(), pct, (long long)s.step, s.loss,
                 s.samples_per_s, FormatDuration(s.eta_s).c_str());
    live_line_ = true;
  } else {
    std::fprintf(out_, "epoch %lld/%lld %d%% step %lld loss %.4f samples/s %.0f eta %s\n",
                 (long long)s.epoch, (long long)s.epochs, pct, (long long)s.step, s.loss,
                 s.samples_per_s, FormatDuration(s.eta_s).c_str());
  }
  std::fflush(out_);
}

void ProgressPrinter::Line(const std::string& text) {
  if (out_ == nullptr) return;
  if (live_line_) std::fputs("\r\033[K", out_);
  live_line_ = false;
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

}  // namespace psforge
