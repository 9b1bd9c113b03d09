// One parameter server process (ps-server): what its command line says,
// and the loop that joins the coordinator's job and serves it, joining
// again when the coordinator restarts.
#pragma once

#include <atomic>
#include <cstdio>
#include <string>

#include "common/cli_flags.h"
#include "common/status.h"

namespace psforge {

struct ServerOptions {
  MemberOptions member;                  // the coordinator, how long to wait for it, CURVE, faults
  std::string bind = "tcp://127.0.0.1:0";  // port 0: the OS picks
  // The host workers reach a server bound to a wildcard at; "": this host's
  // address on its route to the coordinator (its name if there is none).
  std::string advertise;
};

// Joins the job (the coordinator says which server this is, so which key
// range it owns), prints "ps-server I listening on ENDPOINT keys [a, b)
// MODE" to `out`, and serves until the job ends or `stop`. When the
// coordinator restarts (it no longer knows this server) the server joins
// again on the same port, as whichever server the coordinator makes it.
// Ok also when the job had ended before this server joined.
Status RunServer(const ServerOptions& options, const std::atomic<bool>& stop, std::FILE* out);

// This host's address on its route to the coordinator at tcp://HOST:PORT
// (what the workers, on that network, can reach); "" if it has none.
std::string AddressTowards(const std::string& coordinator);

// The endpoint workers connect to for a server bound to `endpoint`:
// tcp://0.0.0.0:5000 (or tcp://*:5000) becomes tcp://HOST:5000 with HOST
// `advertise`, else AddressTowards(coordinator), else this host's name;
// any other endpoint is itself.
std::string AdvertisedEndpoint(const std::string& endpoint, const std::string& advertise,
                               const std::string& coordinator);

}  // namespace psforge
