#include "common/zap_handler.h"

#include <zmq.h>

#include <cstdio>
#include <vector>

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
  return std::unique_ptr<ZapHandler>(new ZapHandler(socket, cluster, cluster_file));
}

ZapHandler::ZapHandler(void* socket, const std::map<std::string, std::string>& cluster, std::string cluster_file)
    : socket_(socket), cluster_file_(std::move(cluster_file)) {
  for (const auto& [name, key] : cluster) names_[key] = name;
  thread_ = std::thread([this] { Run(); });
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  thread_.join();
  zmq_close(socket_);
}

void ZapHandler::Run() {
  while (!stop_) {
    zmq_pollitem_t item{socket_, 0, ZMQ_POLLIN, 0};
    // The poll's timeout bounds how long the destructor waits for the thread.
    if (zmq_poll(&item, 1, 50) > 0 && (item.revents & ZMQ_POLLIN)) Answer();
  }
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
  if (status != "200") {
    // Once per address and key: a refused peer that keeps reconnecting does not flood the log.
    const std::string host = address + " " + key;
    if (logged_.size() < 4096 && logged_.insert(host).second)
      std::fprintf(stderr, "psforge: refused a connection from %s: %s%s (%s)\n", address.c_str(), text.c_str(),
                   key.empty() ? "" : (", key " + key).c_str(), cluster_file_.c_str());
  }
  const std::string reply[] = {"1.0", f[1], status, text, user, ""};
  for (int i = 0; i < 6; ++i)
    zmq_send(socket_, reply[i].data(), reply[i].size(), i < 5 ? ZMQ_SNDMORE : 0);
}

}  // namespace psforge
