#include "coordinator/http_status.h"

#include "coordinator/dashboard.h"

#include <httplib.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <chrono>
#include <map>
#include <thread>

namespace psforge {

struct HttpStatus::Impl {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> listen_returned{false};
  std::atomic<int64_t> scrapes{0};
};

int64_t HttpStatus::metrics_scrapes() const { return impl_->scrapes.load(); }

HttpStatus::HttpStatus(std::unique_ptr<Impl> impl, std::string url)
    : impl_(std::move(impl)), url_(std::move(url)) {}

HttpStatus::~HttpStatus() {
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::string PrometheusText(const nlohmann::json& s) {
  prometheus::Registry registry;
  auto gauge = [&](const std::string& name, const std::string& help, double value) {
    prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({}).Set(value);
  };
  auto counter = [&](const std::string& name, const std::string& help, double value) {
    prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({}).Increment(value);
  };
  auto number = [&](const char* key) { return s.contains(key) && s[key].is_number() ? s[key].get<double>() : 0.0; };
  // What the job is, as labels of a constant 1 (Prometheus's info idiom).
  if (s.contains("job") && s["job"].is_object()) {
    std::map<std::string, std::string> labels;
    for (const auto& [key, value] : s["job"].items())
      labels[key] = value.is_string() ? value.get<std::string>() : value.dump();
    if (s.contains("run_dir") && s["run_dir"].is_string()) labels["run_dir"] = s["run_dir"].get<std::string>();
    prometheus::BuildGauge().Name("psforge_job_info").Help("The job: its config and cluster shape")
        .Register(registry).Add(labels).Set(1);
  }
  const std::string job_state = s.value("state", std::string());
  prometheus::BuildGauge().Name("psforge_job_state").Help("1 for the job's current state")
      .Register(registry).Add({{"state", job_state.empty() ? "unknown" : job_state}}).Set(1);
  // Progress only once there is some: no placeholder zeros or ETAs before
  // the first step.
  const bool trained = number("samples") > 0;
  if (trained) {
    gauge("psforge_step", "Steps pushed by the furthest worker", number("step"));
    gauge("psforge_epoch", "The epoch being trained", number("epoch"));
    gauge("psforge_loss", "Recent mean training loss over the workers", number("loss"));
    gauge("psforge_samples_per_second", "Records trained per second, whole cluster", number("samples_per_s"));
    if (job_state == "training" && number("samples_per_s") > 0)
      gauge("psforge_eta_seconds", "Estimated time to the end of training", number("eta_s"));
    gauge("psforge_elapsed_seconds", "Time since training started", number("wall_s"));
  }
  counter("psforge_bad_messages_total", "Messages the coordinator refused", number("bad_messages"));
  counter("psforge_peer_cutoffs_total", "Connections cut off for exceeding a rate limit", number("peers_cut_off"));
  counter("psforge_messages_dropped_total", "Messages dropped from cut-off connections", number("messages_dropped"));
  counter("psforge_checkpoints_committed_total", "Checkpoints every server wrote", number("checkpoints_committed"));
  counter("psforge_samples_total", "Records trained, whole cluster", number("samples"));
  counter("psforge_pushed_bytes_total", "Payload bytes the workers pushed (gradients, rows), whole cluster",
          number("bytes_pushed"));
  counter("psforge_pulled_bytes_total", "Payload bytes the workers pulled (weights, rows), whole cluster",
          number("bytes_pulled"));
  if (s.contains("last_metric"))
    gauge("psforge_" + s.value("metric", std::string("test_accuracy")), "The latest evaluation",
          s["last_metric"].get<double>());
  auto& members = prometheus::BuildGauge()
                      .Name("psforge_members")
                      .Help("Members of the job by role and state")
                      .Register(registry);
  std::map<std::pair<std::string, std::string>, int> counts;
  for (const char* role : {"server", "worker"})
    for (const char* state : {"joining", "active", "finished", "dead"}) counts[{role, state}] = 0;
  if (s.contains("members"))
    for (const auto& m : s["members"]) ++counts[{m.value("role", ""), m.value("state", "")}];
  for (const auto& [key, n] : counts) members.Add({{"role", key.first}, {"state", key.second}}).Set(n);
  auto& steps = prometheus::BuildGauge()
                    .Name("psforge_member_step")
                    .Help("Per member: steps pushed (workers) or weight version (servers)")
                    .Register(registry);
  if (s.contains("members"))
    for (const auto& m : s["members"])
      steps.Add({{"role", m.value("role", "")}, {"id", std::to_string(m.value("id", 0))}})
          .Set(m.value("step", 0));
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

Result<std::unique_ptr<HttpStatus>> HttpStatus::Start(const std::string& host_port, SnapshotFn snapshot,
                                                      SnapshotFn timeline) {
  auto colon = host_port.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("cluster.http: expected host:port, got " + host_port);
  const std::string host = host_port.substr(0, colon);
  const int port = std::stoi(host_port.substr(colon + 1));
  auto impl = std::make_unique<Impl>();
  // httplib's default adds SO_REUSEPORT, which would let us share a port
  // another program serves: a port in use must be an error.
  impl->server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  impl->server.Get("/api/status", [snapshot](const httplib::Request&, httplib::Response& res) {
    res.set_content(snapshot().dump(2), "application/json");
  });
  impl->server.Get("/metrics", [snapshot, raw = impl.get()](const httplib::Request&, httplib::Response& res) {
    res.set_content(PrometheusText(snapshot()), "text/plain; version=0.0.4");
    raw->scrapes.fetch_add(1);
  });
  impl->server.Get("/api/timeline", [timeline](const httplib::Request&, httplib::Response& res) {
    res.set_content((timeline ? timeline() : nlohmann::json{{"points", nlohmann::json::array()},
                                                            {"events", nlohmann::json::array()}})
                        .dump(),
                    "application/json");
  });
  // The dashboard: one page with its script and style, nothing else to fetch.
  impl->server.Get("/", [page = DashboardPage()](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_content(page, "text/html; charset=utf-8");
  });
  int bound = port == 0 ? impl->server.bind_to_any_port(host) : (impl->server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0)
    return Unavailable("cannot serve HTTP on " + host_port + " (cluster.http): address in use or not local");
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    raw->server.listen_after_bind();
    raw->listen_returned = true;
  });
  // cpp-httplib's stop() does nothing before the thread has begun to listen
  // (its is_running()): destroyed before then, the server would accept
  // forever and the destructor's join never return (a coordinator stopped
  // right after it started hung on exit). Return once it listens.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!raw->server.is_running()) {
    if (raw->listen_returned || std::chrono::steady_clock::now() > deadline) {
      raw->server.stop();
      impl->thread.join();
      return Unavailable("the HTTP server on " + host_port + " (cluster.http) did not start");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::unique_ptr<HttpStatus>(
      new HttpStatus(std::move(impl), "http://" + host + ":" + std::to_string(bound)));
}

}  // namespace psforge
