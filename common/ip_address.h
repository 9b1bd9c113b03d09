// The text of a socket address's IP ("127.0.0.1", "::1"), for logs and for
// the endpoints a process advertises.
#pragma once

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

namespace psforge {

// "" when `a` is neither IPv4 nor IPv6.
inline std::string IpText(const sockaddr_storage& a) {
  char text[INET6_ADDRSTRLEN] = {};
  const void* ip = nullptr;
  if (a.ss_family == AF_INET) ip = &reinterpret_cast<const sockaddr_in*>(&a)->sin_addr;
  if (a.ss_family == AF_INET6) ip = &reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr;
  return ip && inet_ntop(a.ss_family, ip, text, sizeof text) ? text : "";
}

// Whether a ZeroMQ endpoint names this host: ipc:// and inproc://, and tcp://
// to a loopback address, "localhost" or an address of one of this network
// namespace's interfaces (a server on the same node of a multi-node job).
inline bool LocalEndpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  const std::size_t colon = endpoint.rfind(':');
  if (colon <= 6) return false;
  std::string host = endpoint.substr(6, colon - 6);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1") return true;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return false;
  bool local = false;
  for (ifaddrs* i = list; i && !local; i = i->ifa_next) {
    if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)) continue;
    sockaddr_storage a{};
    std::memcpy(&a, i->ifa_addr, i->ifa_addr->sa_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6));
    local = IpText(a) == host;
  }
  freeifaddrs(list);
  return local;
}

}  // namespace psforge
