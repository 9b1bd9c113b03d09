// HttpStatus: the coordinator's HTTP endpoint, on a thread of its own.
//
//   GET /             the dashboard (coordinator/dashboard.h), a page that polls:
//   GET /api/status   the job's state as JSON (Coordinator::Snapshot)
//   GET /api/timeline the training curve and the job's events (Timeline)
//   GET /metrics      the same numbers in Prometheus text format
//
// Serves snapshots only, so a slow client never holds up the job. Bound to
// cluster.http (host:port; port 0 lets the OS pick). Stops when destroyed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace psforge {

class HttpStatus {
 public:
  using SnapshotFn = std::function<nlohmann::json()>;
  static Result<std::unique_ptr<HttpStatus>> Start(const std::string& host_port, SnapshotFn snapshot,
                                                   SnapshotFn timeline = {});
  ~HttpStatus();
  const std::string& url() const { return url_; }
  // How many times /metrics has been answered.
  int64_t metrics_scrapes() const;

 private:
  struct Impl;
  explicit HttpStatus(std::unique_ptr<Impl> impl, std::string url);
  std::unique_ptr<Impl> impl_;
  std::string url_;
};

// The Prometheus text exposition of a snapshot.
std::string PrometheusText(const nlohmann::json& snapshot);

}  // namespace psforge
