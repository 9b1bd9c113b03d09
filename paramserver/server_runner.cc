#include "paramserver/server_runner.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <omp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "common/clock.h"
#include "common/coordinator_link.h"
#include "common/curve.h"
#include "common/dataset.h"
#include "common/ip_address.h"
#include "common/model_spec.h"
#include "paramserver/server.h"

namespace psforge {

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
    address = IpText(local);
    if (local.ss_family == AF_INET6 && !address.empty()) address = "[" + address + "]";
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(found);
  return address;
}

std::string AdvertisedEndpoint(const std::string& endpoint, const std::string& advertise,
                               const std::string& coordinator) {
  for (const std::string wildcard : {"tcp://0.0.0.0:", "tcp://*:"}) {
    if (endpoint.rfind(wildcard, 0) != 0) continue;
    std::string host = advertise.empty() ? AddressTowards(coordinator) : advertise;
    if (host.empty()) {
      char name[256] = {};
      gethostname(name, sizeof name - 1);
      host = name;
    }
    return "tcp://" + host + ":" + endpoint.substr(wildcard.size());
  }
  return endpoint;
}

Status RunServer(const ServerOptions& options, const std::atomic<bool>& stop, std::FILE* out) {
  const MemberOptions& member = options.member;
  PSF_ASSIGN_OR_RETURN(auto transport, CreateTransport(member.curve.key, member.curve.cluster_keys));
  // Each pass joins the job; when the coordinator restarts (it no longer
  // knows this server) the server joins again on the same port, as whichever
  // server the coordinator makes it, and loads that one's checkpoint.
  std::string bind_to = options.bind;
  while (true) {
    auto socket = transport->Bind(bind_to);
    // The port of the previous pass is released asynchronously: retry a little.
    for (auto until = Clock::now() + std::chrono::seconds(5);
         !socket.ok() && bind_to != options.bind && Clock::now() < until;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      socket = transport->Bind(bind_to);
    }
    if (!socket.ok()) return socket.status().WithContext("binding " + bind_to);
    bind_to = (*socket)->endpoint();
    PSF_ASSIGN_OR_RETURN(auto channel, CoordinatorChannel::Open(transport.get(), member.coordinator));
    const std::string endpoint = AdvertisedEndpoint(bind_to, options.advertise, member.coordinator);
    auto job = channel->Join(PeerRole::kServer, endpoint, Seconds(member.connect_timeout_s));
    if (!job.ok() && job.status().code() == StatusCode::kCancelled) {
      std::fprintf(stderr, "ps-server: %s; nothing to do\n", job.status().message().c_str());  // restarted too late
      return Status::Ok();
    }
    PSF_RETURN_IF_ERROR(job.status());
    const JobConfig config = MemberConfig(job->config, member);
    PSF_RETURN_IF_ERROR(CheckPlaintextBind("ps-server", bind_to, !member.curve.key.empty(), config.security.plaintext));
    omp_set_num_threads(static_cast<int>(config.cluster.server_threads));
    PSF_ASSIGN_OR_RETURN(auto shape, ReadDataShape(config));
    PSF_ASSIGN_OR_RETURN(auto spec, ModelSpec::FromConfig(config.model, shape));
    PSF_RETURN_IF_ERROR(spec.LoadInitialValues(config.model));
    PSF_ASSIGN_OR_RETURN(auto server, ParamServer::Create(config, spec, job->id, std::move(*socket)));
    // Joined: a coordinator gone silent is given the job's connect timeout.
    server->AttachCoordinator(std::move(channel), config.cluster.connect_timeout_s);
    std::fprintf(out, "ps-server %u listening on %s keys [%lld, %lld) %s\n", job->id, endpoint.c_str(),
                 (long long)server->range().begin, (long long)server->range().end,
                 ConsistencyName(config.cluster.consistency));
    std::fflush(out);
    Status served = server->Serve(stop);
    std::fprintf(stderr, "ps-server %u: stopped; stats %s\n", job->id, server->StatsJson().c_str());
    if (served.code() == StatusCode::kAborted && !stop.load()) {
      std::fprintf(stderr, "ps-server %u: %s\n", job->id, served.message().c_str());
      continue;
    }
    return served;
  }
}

}  // namespace psforge
