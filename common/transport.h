// Message transport between processes: multipart messages of byte frames.
//
// A ServerSocket receives from many peers and replies to one by its peer id
// (a ZeroMQ ROUTER); a ClientSocket talks to one server (a DEALER). Frames
// are sent without copying when the caller hands over an owner that keeps
// the bytes alive: the transport releases it once the bytes are on their way
// (for ZeroMQ, from its I/O thread). Received frames are owned by the
// message and read in place. Sends never block: a peer that cannot take a
// message (gone, or its queue full) makes Send fail with Unavailable.
// Every Receive has a deadline. Sockets are not thread-safe: one owner thread
// each. A Transport (the ZeroMQ context) is thread-safe and must outlive its
// sockets.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/curve.h"
#include "common/status.h"

namespace psforge {

// One frame to send. `owner` null means the bytes are copied during Send.
struct OutFrame {
  std::span<const std::byte> bytes;
  std::shared_ptr<const void> owner;
};

// A received frame; its bytes stay valid while the frame lives.
class InFrame {
 public:
  virtual ~InFrame() = default;
  virtual std::span<const std::byte> bytes() const = 0;
  // The sender's address ("" when the transport does not know it), for logs.
  virtual std::string peer_address() const { return ""; }
};

struct InMessage {
  std::string peer;  // server side: who sent it (reply to this id)
  std::vector<std::unique_ptr<InFrame>> frames;
};

class ServerSocket {
 public:
  virtual ~ServerSocket() = default;
  // The endpoint peers connect to (with the real port when bound to port 0).
  virtual const std::string& endpoint() const = 0;
  // The next message, or nullopt when none arrived before `timeout`.
  virtual Result<std::optional<InMessage>> Receive(std::chrono::milliseconds timeout) = 0;
  virtual Status Send(const std::string& peer, std::span<const OutFrame> frames) = 0;
};

class ClientSocket {
 public:
  virtual ~ClientSocket() = default;
  virtual const std::string& endpoint() const = 0;
  virtual Result<std::optional<InMessage>> Receive(std::chrono::milliseconds timeout) = 0;
  virtual Status Send(std::span<const OutFrame> frames) = 0;
};

// Raises this process's soft limit on open files to its hard limit: a
// coordinator or server holds a connection per member (two per worker at the
// coordinator), which passes the usual soft limit of 1024 at about 500 workers.
void RaiseOpenFileLimit();

class Transport {
 public:
  virtual ~Transport() = default;
  // ZeroMQ over tcp://, ipc:// or inproc:// endpoints. `io_threads` >= 1.
  // With `curve`, every socket is encrypted and authenticated (ZeroMQ
  // CURVE): bound sockets let in only the cluster's public keys (a ZAP
  // handler thread, which logs whom it refuses), and a connection needs
  // the public key of the socket it connects to.
  static Result<std::unique_ptr<Transport>> CreateZmq(int io_threads, const std::optional<CurveOptions>& curve);
  static std::unique_ptr<Transport> CreateZmq(int io_threads = 1);

  // "tcp://127.0.0.1:0" binds a port the OS picks.
  virtual Result<std::unique_ptr<ServerSocket>> Bind(const std::string& endpoint) = 0;
  // `server_key`: the public key (Z85) of the socket at `endpoint`; needed,
  // and only used, when this transport speaks CURVE.
  virtual Result<std::unique_ptr<ClientSocket>> Connect(const std::string& endpoint,
                                                        const std::string& server_key = {}) = 0;

  // CURVE: this process's public key, and the cluster's key named `name`
  // ("coordinator"); empty without CURVE.
  virtual std::string public_key() const { return {}; }
  virtual std::string cluster_key(const std::string& /*name*/) const { return {}; }
  virtual bool is_cluster_key(const std::string& /*key*/) const { return false; }
};

}  // namespace psforge
