// ps-server: serves one key range of a job's model.
//
//   ps-server --coordinator tcp://HOST:PORT [--bind tcp://127.0.0.1:0]
//             [--advertise HOST] [--connect-timeout S]
//
// Binds (port 0: the OS picks), joins the coordinator's job, which says which
// server it is and so which key range it owns, prints "ps-server I listening
// on ENDPOINT keys [a, b) MODE", and serves until the job ends, SIGINT or
// SIGTERM: exit 0. A server bound to a wildcard address (0.0.0.0, *) tells
// workers to reach it at --advertise, by default this host's address on its
// route to the coordinator (its name if there is none).
#include <arpa/inet.h>
#include <netdb.h>
#include <omp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/cli_flags.h"
#include "common/coordinator_link.h"
#include "common/dataset.h"
#include "common/ip_address.h"
#include "common/model_spec.h"
#include "paramserver/server.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

int Fail(const psforge::Status& s) {
  std::fprintf(stderr, "ps-server: %s\n", s.message().c_str());
  return 1;
}

// This host's address on its route to the coordinator at tcp://HOST:PORT
// (what the workers, on that network, can reach); "" if it has none.
std::string AddressTowards(const std::string& coordinator) {
  const std::string prefix = "tcp://";
  const auto colon = coordinator.rfind(':');
  if (coordinator.rfind(prefix, 0) != 0 || colon == std::string::npos || colon < prefix.size()) return "";
  std::string host = coordinator.substr(prefix.size(), colon - prefix.size());
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), coordinator.substr(colon + 1).c_str(), &hints, &found) != 0) return "";
  std::string address;
  const int fd = socket(found->ai_family, SOCK_DGRAM, 0);
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  // A datagram socket's connect sends nothing: it only picks the route.
  if (fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0) {
    address = psforge::IpText(local);
    if (local.ss_family == AF_INET6 && !address.empty()) address = "[" + address + "]";
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(found);
  return address;
}

// tcp://0.0.0.0:5000 -> tcp://HOST:5000 (workers cannot connect to a
// wildcard): HOST is --advertise, else this host's address on the route to
// the coordinator, else its name.
std::string Advertised(const std::string& endpoint, std::string host, const std::string& coordinator) {
  for (const char* wildcard : {"tcp://0.0.0.0:", "tcp://*:"}) {
    std::string w = wildcard;
    if (endpoint.rfind(w, 0) != 0) continue;
    if (host.empty()) host = AddressTowards(coordinator);
    if (host.empty()) {
      char name[256] = {};
      gethostname(name, sizeof name - 1);
      host = name;
    }
    return "tcp://" + host + ":" + endpoint.substr(w.size());
  }
  return endpoint;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ps-server: one parameter server of a psforge job"};
  std::string coordinator, bind = "tcp://127.0.0.1:0", advertise;
  double connect_timeout_s = 30;
  app.add_option("--coordinator", coordinator, "the coordinator's endpoint, e.g. tcp://10.0.0.1:7070")
      ->required();
  app.add_option("--bind", bind, "endpoint to bind; port 0 lets the OS pick");
  app.add_option("--advertise", advertise,
                 "host workers reach this server at, when bound to a wildcard (default: this host's address on "
                 "the route to the coordinator)");
  app.add_option("--connect-timeout", connect_timeout_s,
                 "seconds to wait for the coordinator (at start, and when it goes silent)")
      ->check(CLI::PositiveNumber);
  psforge::CurveFlags curve;
  psforge::AddCurveFlags(&app, &curve);
  PSF_PARSE_FLAGS(app, argc, argv);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  psforge::RaiseOpenFileLimit();
  auto created = psforge::CreateTransport(curve.key, curve.cluster_keys);
  if (!created.ok()) return Fail(created.status());
  auto transport = std::move(*created);
  const auto connect_timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(connect_timeout_s));
  // Each pass joins the job; when the coordinator restarts (it no longer
  // knows this server) the server joins again on the same port, as whichever
  // server the coordinator makes it, and loads that one's checkpoint.
  std::string bind_to = bind;
  while (true) {
    auto socket = transport->Bind(bind_to);
    // The port of the previous pass is released asynchronously: retry a little.
    for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
         !socket.ok() && bind_to != bind && std::chrono::steady_clock::now() < until;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      socket = transport->Bind(bind_to);
    }
    if (!socket.ok()) return Fail(socket.status().WithContext("binding " + bind_to));
    bind_to = (*socket)->endpoint();
    auto channel = psforge::CoordinatorChannel::Open(transport.get(), coordinator);
    if (!channel.ok()) return Fail(channel.status());
    const std::string endpoint = Advertised((*socket)->endpoint(), advertise, coordinator);
    auto job = (*channel)->Join(psforge::PeerRole::kServer, endpoint, connect_timeout);
    if (!job.ok() && job.status().code() == psforge::StatusCode::kCancelled) {
      std::fprintf(stderr, "ps-server: %s; nothing to do\n", job.status().message().c_str());  // restarted too late
      return 0;
    }
    if (!job.ok()) return Fail(job.status());
    const psforge::JobConfig& config = job->config;
    const bool curve_on = !curve.key.empty();
    if (auto s = psforge::CheckPlaintextBind("ps-server", bind_to, curve_on, config.security.plaintext); !s.ok())
      return Fail(s);
    omp_set_num_threads(static_cast<int>(config.cluster.server_threads));
    auto shape = psforge::ReadDataShape(config);
    if (!shape.ok()) return Fail(shape.status());
    auto spec = psforge::ModelSpec::FromConfig(config.model, shape->features, shape->classes);
    if (!spec.ok()) return Fail(spec.status());
    auto server = psforge::ParamServer::Create(config, *spec, job->id, std::move(*socket));
    if (!server.ok()) return Fail(server.status());
    (*server)->AttachCoordinator(std::move(*channel), connect_timeout_s);
    std::printf("ps-server %u listening on %s keys [%lld, %lld) %s\n", job->id, endpoint.c_str(),
                (long long)(*server)->range().begin, (long long)(*server)->range().end,
                psforge::ConsistencyName(config.cluster.consistency));
    std::fflush(stdout);
    psforge::Status served = (*server)->Serve(g_stop);
    std::fprintf(stderr, "ps-server %u: stopped; stats %s\n", job->id, (*server)->StatsJson().c_str());
    if (served.code() == psforge::StatusCode::kAborted && !g_stop.load()) {
      std::fprintf(stderr, "ps-server %u: %s\n", job->id, served.message().c_str());
      continue;
    }
    if (!served.ok()) return Fail(served);
    return 0;
  }
}
