// The ZeroMQ authentication handler (ZAP, ZeroMQ RFC 27) of a process whose
// sockets accept CURVE connections: a thread answering the ZeroMQ context's
// requests on inproc://zeromq.zap.01. A peer is let in only with a public
// key of the cluster's; anything else is refused and logged with the peer's
// address (once per address and key).
//
// A peer that fails the handshake before the handler is asked (plaintext,
// or another mechanism) is caught by a monitor of each CURVE socket
// (Watch), and logged likewise with its address: read from the accepted
// connection's descriptor, which a very short-lived connection may have
// closed by then ("address unknown").
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"

namespace psforge {

class ZapHandler {
 public:
  // `cluster`: name -> public key (Z85). `context` outlives the handler.
  static Result<std::unique_ptr<ZapHandler>> Start(void* context, const std::map<std::string, std::string>& cluster,
                                                   const std::string& cluster_file);
  ~ZapHandler();
  // Starts watching `server_socket`'s handshakes; its owner calls this
  // (before binding) and Unwatch before closing it.
  Status Watch(void* server_socket);
  static void Unwatch(void* server_socket);
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

 private:
  ZapHandler(void* context, void* socket, const std::map<std::string, std::string>& cluster,
             std::string cluster_file);
  void Run();
  void Answer();
  // One event of a watched socket's monitor; false when the monitor stopped.
  bool OnEvent(void* monitor);
  void Log(const std::string& address, const std::string& why, const std::string& key);

  void* context_;
  Mutex mu_;
  std::vector<std::string> to_watch_ PSF_GUARDED_BY(mu_);  // monitor endpoints not yet connected
  std::atomic<int> monitors_{0};
  // Handler thread only: monitors, the peer address of each accepted
  // descriptor, and handshakes failed whose disconnection is still to come.
  std::vector<void*> monitors_open_;
  std::map<int64_t, std::string> accepted_;
  int failed_ = 0;

  void* socket_;
  std::map<std::string, std::string> names_;  // public key (Z85) -> member name
  const std::string cluster_file_;
  std::set<std::string> logged_;  // "address key" already reported (handler thread only)
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace psforge
