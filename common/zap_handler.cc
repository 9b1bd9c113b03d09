#include "common/zap_handler.h"

#include <sys/socket.h>
#include <zmq.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "common/ip_address.h"

namespace psforge {
namespace {

constexpr char kZapEndpoint[] = "inproc://zeromq.zap.01";

std::vector<std::string> ReceiveMultipart(void* socket) {
  std::vector<std::string> frames;
  int more = 1;
  while (more) {
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, socket, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&msg);
      return {};
    }
    frames.emplace_back(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
    more = zmq_msg_more(&msg);
    zmq_msg_close(&msg);
  }
  return frames;
}

}  // namespace

Result<std::unique_ptr<ZapHandler>> ZapHandler::Start(void* context, const std::map<std::string, std::string>& cluster,
                                                      const std::string& cluster_file) {
  void* socket = zmq_socket(context, ZMQ_REP);
  if (!socket) return Internal(std::string("zap handler: zmq_socket: ") + zmq_strerror(zmq_errno()));
  int linger = 0;
  zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
  if (zmq_bind(socket, kZapEndpoint) != 0) {
    Status st = Internal(std::string("zap handler: cannot bind ") + kZapEndpoint + ": " + zmq_strerror(zmq_errno()));
    zmq_close(socket);
    return st;
  }
  return std::unique_ptr<ZapHandler>(new ZapHandler(context, socket, cluster, cluster_file));
}

ZapHandler::ZapHandler(void* context, void* socket, const std::map<std::string, std::string>& cluster,
                       std::string cluster_file)
    : context_(context), socket_(socket), cluster_file_(std::move(cluster_file)) {
  for (const auto& [name, key] : cluster) names_[key] = name;
  thread_ = std::thread([this] { Run(); });
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  thread_.join();
  zmq_close(socket_);
}

Status ZapHandler::Watch(void* server_socket) {
  const std::string endpoint = "inproc://psforge.handshakes." + std::to_string(monitors_++);
  const int events = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_MONITOR_STOPPED;
  if (zmq_socket_monitor(server_socket, endpoint.c_str(), events) != 0)
    return Internal(std::string("zap handler: zmq_socket_monitor: ") + zmq_strerror(zmq_errno()));
  MutexLock lock(mu_);
  to_watch_.push_back(endpoint);
  return Status::Ok();
}

void ZapHandler::Unwatch(void* server_socket) { zmq_socket_monitor(server_socket, nullptr, 0); }

void ZapHandler::Run() {
  while (!stop_) {
    std::vector<std::string> fresh;
    {
      MutexLock lock(mu_);
      fresh.swap(to_watch_);
    }
    for (const auto& endpoint : fresh) {
      void* monitor = zmq_socket(context_, ZMQ_PAIR);
      int linger = 0;
      if (monitor) zmq_setsockopt(monitor, ZMQ_LINGER, &linger, sizeof linger);
      if (monitor && zmq_connect(monitor, endpoint.c_str()) == 0) monitors_open_.push_back(monitor);
      else if (monitor) zmq_close(monitor);
    }
    std::vector<zmq_pollitem_t> items{{socket_, 0, ZMQ_POLLIN, 0}};
    for (void* m : monitors_open_) items.push_back({m, 0, ZMQ_POLLIN, 0});
    // The poll's timeout bounds how long the destructor waits for the
    // thread, and a new socket's first unwatched moments.
    if (zmq_poll(items.data(), static_cast<int>(items.size()), 20) <= 0) continue;
    if (items[0].revents & ZMQ_POLLIN) Answer();
    for (std::size_t i = 1; i < items.size(); ++i) {
      if (!(items[i].revents & ZMQ_POLLIN) || OnEvent(items[i].socket)) continue;
      zmq_close(items[i].socket);
      std::erase(monitors_open_, items[i].socket);
    }
  }
  for (void* m : monitors_open_) zmq_close(m);
}

bool ZapHandler::OnEvent(void* monitor) {
  const std::vector<std::string> f = ReceiveMultipart(monitor);
  if (f.size() < 2 || f[0].size() < 6) return true;
  uint16_t event = 0;
  uint32_t value = 0;
  std::memcpy(&event, f[0].data(), 2);
  std::memcpy(&value, f[0].data() + 2, 4);
  switch (event) {
    case ZMQ_EVENT_ACCEPTED: {
      // The connection's peer, while its descriptor is still open.
      sockaddr_storage peer{};
      socklen_t length = sizeof peer;
      const int fd = static_cast<int>(value);
      if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) == 0)
        if (std::string ip = IpText(peer); !ip.empty()) accepted_[fd] = ip;
      if (accepted_.size() > 65536) accepted_.clear();
      return true;
    }
    case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      ++failed_;
      return true;
    case ZMQ_EVENT_DISCONNECTED: {
      auto it = accepted_.find(static_cast<int>(value));
      const std::string address = it == accepted_.end() ? "" : it->second;
      if (it != accepted_.end()) accepted_.erase(it);
      // A failed handshake is followed by its connection's disconnection.
      if (failed_ > 0) {
        --failed_;
        Log(address.empty() ? "an address unknown (the connection closed before it could be read)" : address,
            "its handshake failed: plaintext or another security mechanism, where CURVE is required", "");
      }
      return true;
    }
    case ZMQ_EVENT_MONITOR_STOPPED: return false;
    default: return true;
  }
}

void ZapHandler::Log(const std::string& address, const std::string& why, const std::string& key) {
  // Once per address and key: a refused peer that keeps reconnecting does not flood the log.
  if (logged_.size() < 4096 && logged_.insert(address + " " + key + " " + why).second)
    std::fprintf(stderr, "psforge: refused a connection from %s: %s%s (%s)\n", address.c_str(), why.c_str(),
                 key.empty() ? "" : (", key " + key).c_str(), cluster_file_.c_str());
}

void ZapHandler::Answer() {
  // version, request id, domain, address, routing id, mechanism, credentials...
  const std::vector<std::string> f = ReceiveMultipart(socket_);
  if (f.size() < 2) return;  // nothing a REP socket can answer
  std::string status = "400", text, user;
  const std::string address = f.size() > 3 ? f[3] : "?";
  std::string key;
  if (f.size() < 6 || f[0] != "1.0") {
    text = "malformed ZAP request";
  } else if (f[5] != "CURVE" || f.size() < 7 || f[6].size() != 32) {
    text = "only CURVE connections are accepted (" + f[5] + ")";
  } else {
    char z85[41];
    zmq_z85_encode(z85, reinterpret_cast<const uint8_t*>(f[6].data()), 32);
    key = z85;
    if (auto it = names_.find(key); it != names_.end()) {
      status = "200";
      text = "OK";
      user = it->second;
    } else {
      text = "public key not in the cluster key file";
    }
  }
  if (status != "200") Log(address, text, key);
  const std::string reply[] = {"1.0", f[1], status, text, user, ""};
  for (int i = 0; i < 6; ++i)
    zmq_send(socket_, reply[i].data(), reply[i].size(), i < 5 ? ZMQ_SNDMORE : 0);
}

}  // namespace psforge
