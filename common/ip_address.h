// The text of a socket address's IP ("127.0.0.1", "::1"), for logs and for
// the endpoints a process advertises.
#pragma once

#include <arpa/inet.h>
#include <sys/socket.h>

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

}  // namespace psforge
