#include "coordinator/dashboard.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace psforge {

extern const char kDashboardHtml[];  // dashboard_html.cc, generated from dashboard.html

namespace {

bool Has(const std::string& text, const char* what) { return text.find(what) != std::string::npos; }

// JSON inside a <script> element: "</" would end the element early.
std::string ScriptSafe(const nlohmann::json& j) {
  std::string s = j.dump();
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<' && i + 1 < s.size() && s[i + 1] == '/') {
      out += "<\\/";
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

Timeline::Timeline(std::size_t max_points, std::size_t max_events)
    : max_points_(std::max<std::size_t>(max_points, 2)), max_events_(std::max<std::size_t>(max_events, 1)) {
  points_.reserve(max_points_);
}

void Timeline::AddPoint(const CurvePoint& p) {
  MutexLock lock(mu_);
  if (!points_.empty() && p.step == points_.back().step) {
    points_.back() = p;  // the same step again: its newer numbers
    return;
  }
  if (++skipped_ < stride_) return;
  skipped_ = 0;
  if (points_.size() == max_points_) {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < points_.size(); i += 2) points_[kept++] = points_[i];
    points_.resize(kept);
    stride_ *= 2;
  }
  points_.push_back(p);
}

void Timeline::AddEvent(double wall_s, int64_t step, const std::string& text, std::string kind) {
  MutexLock lock(mu_);
  if (events_.size() == max_events_) {
    events_.pop_front();
    ++events_dropped_;
  }
  events_.push_back({wall_s, step, kind.empty() ? KindOf(text) : std::move(kind), text});
}

nlohmann::json Timeline::Json() const {
  MutexLock lock(mu_);
  nlohmann::json points = nlohmann::json::array();
  for (const CurvePoint& p : points_)
    points.push_back({p.wall_s, p.step, p.loss, p.samples_per_s, p.learning_rate});
  nlohmann::json events = nlohmann::json::array();
  for (const JobEvent& e : events_)
    events.push_back({{"wall_s", e.wall_s}, {"step", e.step}, {"kind", e.kind}, {"text", e.text}});
  return {{"points", points}, {"events", events}, {"events_dropped", events_dropped_}};
}

std::string Timeline::KindOf(const std::string& t) {
  if (Has(t, "audit:")) return "audit";
  if (Has(t, "joined again") || Has(t, "while every")) return "restart";  // they name the dead one too
  if (Has(t, "declared dead") || Has(t, "sent no heartbeat") || Has(t, " died") || Has(t, "is gone") ||
      Has(t, "lost"))
    return "death";
  if (Has(t, "joined again") || Has(t, "starts from") || Has(t, "resuming") || Has(t, "restart") ||
      Has(t, "has loaded the checkpoint"))
    return "restart";
  if (Has(t, "committed")) return "checkpoint";
  if (Has(t, "joined")) return "join";
  if (Has(t, "failed") || Has(t, "error") || Has(t, "cannot")) return "error";
  return "info";
}

std::string DashboardPage() { return kDashboardHtml; }

std::string StaticDashboardPage(const nlohmann::json& status, const nlohmann::json& timeline) {
  std::string page = kDashboardHtml;
  const std::string marker = "<!--psforge:static-->";
  const std::string data = "<script>window.PSFORGE_STATIC = {\"status\": " + ScriptSafe(status) +
                           ", \"timeline\": " + ScriptSafe(timeline) + "};</script>";
  const auto at = page.find(marker);
  if (at == std::string::npos) return page;
  return page.replace(at, marker.size(), data);
}

Status WriteStaticDashboard(const std::string& path, const nlohmann::json& status, const nlohmann::json& timeline) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << StaticDashboardPage(status, timeline);
    if (!out) return Unavailable("cannot write the dashboard to " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Unavailable("cannot write the dashboard to " + path + ": " + ec.message());
  return Status::Ok();
}

}  // namespace psforge
