// The ZeroMQ implementation of common/transport.h.
#include <sys/resource.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>

#include "common/transport.h"
#include "common/zap_handler.h"

namespace psforge {
namespace {

std::string ZmqError(const std::string& what) { return what + ": " + zmq_strerror(zmq_errno()); }

class ZmqFrame final : public InFrame {
 public:
  ZmqFrame() { zmq_msg_init(&msg_); }
  ~ZmqFrame() override { zmq_msg_close(&msg_); }
  zmq_msg_t* msg() { return &msg_; }
  std::span<const std::byte> bytes() const override {
    auto* m = const_cast<zmq_msg_t*>(&msg_);
    return {static_cast<const std::byte*>(zmq_msg_data(m)), zmq_msg_size(m)};
  }
  std::string peer_address() const override {
    const char* address = zmq_msg_gets(&msg_, "Peer-Address");
    return address ? address : "";
  }

 private:
  zmq_msg_t msg_;
};

void ReleaseOwner(void* /*data*/, void* hint) { delete static_cast<std::shared_ptr<const void>*>(hint); }

// Sends one frame; `more` when others follow.
Status SendFrame(void* socket, const OutFrame& f, bool more) {
  zmq_msg_t msg;
  if (f.owner) {
    auto* hint = new std::shared_ptr<const void>(f.owner);
    if (zmq_msg_init_data(&msg, const_cast<std::byte*>(f.bytes.data()), f.bytes.size(), ReleaseOwner,
                          hint) != 0) {
      delete hint;
      return Internal(ZmqError("zmq_msg_init_data"));
    }
  } else {
    if (zmq_msg_init_size(&msg, f.bytes.size()) != 0) return ResourceExhausted(ZmqError("zmq_msg_init_size"));
    if (!f.bytes.empty()) std::memcpy(zmq_msg_data(&msg), f.bytes.data(), f.bytes.size());
  }
  if (zmq_msg_send(&msg, socket, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0) {
    int err = zmq_errno();
    zmq_msg_close(&msg);
    if (err == EAGAIN || err == EHOSTUNREACH)
      return Unavailable("peer cannot take the message now (gone or its queue is full)");
    return Internal(std::string("zmq_msg_send: ") + zmq_strerror(err));
  }
  return Status::Ok();
}

// Receives all frames of one message that is known to be ready.
Result<InMessage> ReceiveAll(void* socket, bool routed) {
  InMessage m;
  int more = 1;
  bool first = true;
  while (more) {
    auto frame = std::make_unique<ZmqFrame>();
    if (zmq_msg_recv(frame->msg(), socket, 0) < 0) return Internal(ZmqError("zmq_msg_recv"));
    more = zmq_msg_more(frame->msg());
    if (routed && first) {
      auto b = frame->bytes();
      m.peer.assign(reinterpret_cast<const char*>(b.data()), b.size());
    } else {
      m.frames.push_back(std::move(frame));
    }
    first = false;
  }
  return m;
}

Result<std::optional<InMessage>> PollAndReceive(void* socket, bool routed,
                                                std::chrono::milliseconds timeout) {
  int events = 0;
  std::size_t size = sizeof events;
  // A busy socket has messages queued: take the next one without polling.
  if (zmq_getsockopt(socket, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN)) {
    PSF_ASSIGN_OR_RETURN(InMessage m, ReceiveAll(socket, routed));
    return std::optional<InMessage>(std::move(m));
  }
  zmq_pollitem_t item{socket, 0, ZMQ_POLLIN, 0};
  int n = zmq_poll(&item, 1, static_cast<long>(timeout.count()));
  if (n < 0) {
    if (zmq_errno() == EINTR) return std::optional<InMessage>();
    return Internal(ZmqError("zmq_poll"));
  }
  if (n == 0) return std::optional<InMessage>();
  PSF_ASSIGN_OR_RETURN(InMessage m, ReceiveAll(socket, routed));
  return std::optional<InMessage>(std::move(m));
}

Status SendFrames(void* socket, std::span<const OutFrame> frames, const std::string* peer) {
  if (peer) {
    OutFrame id{std::as_bytes(std::span(peer->data(), peer->size())), nullptr};
    PSF_RETURN_IF_ERROR(SendFrame(socket, id, !frames.empty()));
  }
  for (std::size_t i = 0; i < frames.size(); ++i)
    PSF_RETURN_IF_ERROR(SendFrame(socket, frames[i], i + 1 < frames.size()));
  return Status::Ok();
}

void SetCommonOptions(void* socket) {
  // Kernel socket buffers that hold a whole MLP-sized tensor (1.6 MB) let one
  // send go out in few wake-ups.
  int buffer = 4 << 20;
  zmq_setsockopt(socket, ZMQ_SNDBUF, &buffer, sizeof buffer);
  zmq_setsockopt(socket, ZMQ_RCVBUF, &buffer, sizeof buffer);
  int linger = 0, hwm = 10000;
  zmq_setsockopt(socket, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
  zmq_setsockopt(socket, ZMQ_RCVHWM, &hwm, sizeof hwm);
  // Refuse frames larger than 1 GiB outright: no peer makes us allocate more.
  int64_t max_msg = int64_t{1} << 30;
  zmq_setsockopt(socket, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg);
}

class ZmqServerSocket final : public ServerSocket {
 public:
  ZmqServerSocket(void* socket, std::string endpoint, bool watched)
      : socket_(socket), endpoint_(std::move(endpoint)), watched_(watched) {}
  ~ZmqServerSocket() override {
    if (watched_) ZapHandler::Unwatch(socket_);
    zmq_close(socket_);
  }
  const std::string& endpoint() const override { return endpoint_; }
  Result<std::optional<InMessage>> Receive(std::chrono::milliseconds timeout) override {
    return PollAndReceive(socket_, true, timeout);
  }
  Status Send(const std::string& peer, std::span<const OutFrame> frames) override {
    return SendFrames(socket_, frames, &peer);
  }

 private:
  void* socket_;
  std::string endpoint_;
  bool watched_;
};

class ZmqClientSocket final : public ClientSocket {
 public:
  ZmqClientSocket(void* socket, std::string endpoint) : socket_(socket), endpoint_(std::move(endpoint)) {}
  ~ZmqClientSocket() override { zmq_close(socket_); }
  const std::string& endpoint() const override { return endpoint_; }
  Result<std::optional<InMessage>> Receive(std::chrono::milliseconds timeout) override {
    return PollAndReceive(socket_, false, timeout);
  }
  Status Send(std::span<const OutFrame> frames) override { return SendFrames(socket_, frames, nullptr); }

 private:
  void* socket_;
  std::string endpoint_;
};

class ZmqTransport final : public Transport {
 public:
  ZmqTransport(int io_threads, std::optional<CurveOptions> curve)
      : context_(zmq_ctx_new()), curve_(std::move(curve)) {
    zmq_ctx_set(context_, ZMQ_IO_THREADS, io_threads);
    // Beyond ZeroMQ's default of 1023 sockets (a process simulating a
    // thousand members needs more); file descriptors stay the real limit.
    zmq_ctx_set(context_, ZMQ_MAX_SOCKETS, 8192);
  }
  ~ZmqTransport() override {
    zap_.reset();  // its socket closes before the context ends
    zmq_ctx_term(context_);
  }

  Status StartZap() {
    PSF_ASSIGN_OR_RETURN(zap_, ZapHandler::Start(context_, curve_->cluster, curve_->cluster_file));
    return Status::Ok();
  }
  std::string public_key() const override { return curve_ ? curve_->own.public_key : ""; }
  std::string cluster_key(const std::string& name) const override {
    if (!curve_) return "";
    auto it = curve_->cluster.find(name);
    return it == curve_->cluster.end() ? "" : it->second;
  }
  bool is_cluster_key(const std::string& key) const override {
    if (!curve_) return false;
    for (const auto& [name, k] : curve_->cluster)
      if (k == key) return true;
    return false;
  }

  Result<std::unique_ptr<ServerSocket>> Bind(const std::string& endpoint) override {
    void* s = zmq_socket(context_, ZMQ_ROUTER);
    if (!s) return Internal(ZmqError("zmq_socket"));
    SetCommonOptions(s);
    int mandatory = 1;  // report an unknown or full peer instead of dropping silently
    zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory);
    // A whole cluster connects at once on start: with ZeroMQ's default
    // backlog of 100, connections beyond it wait out a 1 s SYN retry.
    int backlog = 4096;
    zmq_setsockopt(s, ZMQ_BACKLOG, &backlog, sizeof backlog);
    if (curve_) {
      int server = 1;
      zmq_setsockopt(s, ZMQ_CURVE_SERVER, &server, sizeof server);
      zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, curve_->own.secret_key.c_str(), 40);
      zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, "psforge", 7);
      // Handshakes that fail before ZAP is asked (plaintext peers) are logged too.
      if (Status watched = zap_->Watch(s); !watched.ok()) {
        zmq_close(s);
        return watched;
      }
    }
    if (zmq_bind(s, endpoint.c_str()) != 0) {
      Status st = Unavailable(ZmqError("cannot bind " + endpoint));
      if (curve_) ZapHandler::Unwatch(s);
      zmq_close(s);
      return st;
    }
    char bound[256];
    size_t len = sizeof bound;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &len);
    return std::unique_ptr<ServerSocket>(new ZmqServerSocket(s, bound, curve_.has_value()));
  }

  Result<std::unique_ptr<ClientSocket>> Connect(const std::string& endpoint, const std::string& server_key) override {
    if (curve_ && !IsCurveKey(server_key))
      return FailedPrecondition("CURVE is on but the public key of " + endpoint + " is " +
                                (server_key.empty() ? "unknown" : "not a CURVE key: '" + server_key + "'"));
    void* s = zmq_socket(context_, ZMQ_DEALER);
    if (!s) return Internal(ZmqError("zmq_socket"));
    SetCommonOptions(s);
    if (curve_) {
      zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_key.c_str(), 40);
      zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, curve_->own.public_key.c_str(), 40);
      zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, curve_->own.secret_key.c_str(), 40);
    }
    if (zmq_connect(s, endpoint.c_str()) != 0) {
      Status st = InvalidArgument(ZmqError("cannot connect to " + endpoint));
      zmq_close(s);
      return st;
    }
    return std::unique_ptr<ClientSocket>(new ZmqClientSocket(s, endpoint));
  }

 private:
  void* context_;
  const std::optional<CurveOptions> curve_;
  std::unique_ptr<ZapHandler> zap_;
};

}  // namespace

Result<std::unique_ptr<Transport>> Transport::CreateZmq(int io_threads, const std::optional<CurveOptions>& curve) {
  if (curve && !zmq_has("curve")) return FailedPrecondition("this ZeroMQ library was built without CURVE");
  auto transport = std::make_unique<ZmqTransport>(io_threads < 1 ? 1 : io_threads, curve);
  if (curve) PSF_RETURN_IF_ERROR(transport->StartZap());
  return std::unique_ptr<Transport>(std::move(transport));
}

std::unique_ptr<Transport> Transport::CreateZmq(int io_threads) {
  return std::make_unique<ZmqTransport>(io_threads < 1 ? 1 : io_threads, std::nullopt);
}

void RaiseOpenFileLimit() {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) != 0 || files.rlim_cur >= files.rlim_max) return;
  files.rlim_cur = files.rlim_max;
  setrlimit(RLIMIT_NOFILE, &files);
}

}  // namespace psforge
