// The ZeroMQ authentication handler (ZAP, ZeroMQ RFC 27) of a process whose
// sockets accept CURVE connections: a thread answering the ZeroMQ context's
// requests on inproc://zeromq.zap.01. A peer is let in only with a public
// key of the cluster's; anything else is refused and logged with the peer's
// address (once per address and key).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "common/status.h"

namespace psforge {

class ZapHandler {
 public:
  // `cluster`: name -> public key (Z85). `context` outlives the handler.
  static Result<std::unique_ptr<ZapHandler>> Start(void* context, const std::map<std::string, std::string>& cluster,
                                                   const std::string& cluster_file);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

 private:
  ZapHandler(void* socket, const std::map<std::string, std::string>& cluster, std::string cluster_file);
  void Run();
  void Answer();

  void* socket_;
  std::map<std::string, std::string> names_;  // public key (Z85) -> member name
  const std::string cluster_file_;
  std::set<std::string> logged_;  // "address key" already reported (handler thread only)
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace psforge
