// The job's web dashboard: the page the coordinator serves at / (and writes
// into the run directory as dashboard.html when the job ends), and the
// timeline it draws besides the status snapshot.
//
// Timeline holds what /api/status does not: the training curve point by
// point (wall time, step, loss, samples/s, learning rate) and the job's
// events (members joining, dying and coming back, checkpoints committed,
// restarts, the audit), each with its time and step. It is bounded: past
// `max_points` the curve keeps every other point and samples half as often
// from then on, so a long job's curve spans the whole run in the same
// memory; past `max_events` the oldest events go (the count is kept).
// Thread-safe: the coordinator's loop adds, the HTTP thread reads.
//
// The page (coordinator/dashboard.html, compiled in) is one file: its own
// CSS, and JavaScript that draws the charts as SVG, so it needs nothing
// from the network and no library. It polls /api/status and /api/timeline;
// the static copy carries both inlined and does not poll.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/mutex.h"
#include "common/status.h"

namespace psforge {

struct CurvePoint {
  double wall_s = 0;
  int64_t step = 0;
  double loss = 0;
  double samples_per_s = 0;
  double learning_rate = 0;
};

struct JobEvent {
  double wall_s = 0;
  int64_t step = 0;
  std::string kind;  // death, restart, join, checkpoint, audit, error, info
  std::string text;
};

class Timeline {
 public:
  explicit Timeline(std::size_t max_points = 2000, std::size_t max_events = 500);

  void AddPoint(const CurvePoint& p);
  // The kind is read off the text (KindOf) unless given.
  void AddEvent(double wall_s, int64_t step, const std::string& text, std::string kind = "");
  // {"points": [[wall_s, step, loss, samples_per_s, lr], ...], "events": [...], "events_dropped": N}
  nlohmann::json Json() const;

  // What kind of event a coordinator's log line reports.
  static std::string KindOf(const std::string& text);

 private:
  const std::size_t max_points_, max_events_;
  mutable Mutex mu_;
  std::vector<CurvePoint> points_ PSF_GUARDED_BY(mu_);
  std::deque<JobEvent> events_ PSF_GUARDED_BY(mu_);
  int64_t stride_ PSF_GUARDED_BY(mu_) = 1;
  int64_t skipped_ PSF_GUARDED_BY(mu_) = 0;
  int64_t events_dropped_ PSF_GUARDED_BY(mu_) = 0;
};

// The dashboard page. With `status` and `timeline`, a static copy that
// shows them and does not poll (for a finished run's directory).
std::string DashboardPage();
std::string StaticDashboardPage(const nlohmann::json& status, const nlohmann::json& timeline);
// Writes the static copy to `path` (via a temporary file and a rename).
Status WriteStaticDashboard(const std::string& path, const nlohmann::json& status, const nlohmann::json& timeline);

}  // namespace psforge
