// A Transport that loses, duplicates, delays and reorders the messages of
// its client sockets, both ways, for fault-injection tests (tc netem is not
// available here). Seeded: a run's faults follow from the seed and the order
// of messages.
//
// A delayed message is held (a copy of its frames) and handed on by the
// socket's next Send or Receive once its time has come; messages delayed by
// different amounts overtake each other. Server sockets are passed through.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/transport.h"

namespace psforge {

struct FaultOptions {
  double drop = 0;       // probability a message is lost
  double duplicate = 0;  // probability a message arrives twice
  double delay = 0;      // probability a message is held back
  double delay_ms = 20;  // for up to this long (uniformly)
  uint64_t seed = 1;
  // Not messages: a server's checkpoint write stops this long halfway
  // through its table file (a slow disk; a kill then lands mid-write).
  double write_stall_ms = 0;
  // Not messages: a worker SIGKILLs itself at this step (> 0) once its push
  // has left for the first server and before it is sent to the others, so
  // that only some servers hold its last batch.
  int64_t die_mid_push = 0;
  bool any() const { return drop > 0 || duplicate > 0 || delay > 0; }
};

// "drop=0.02,duplicate=0.02,delay=0.1,delay_ms=20,seed=7,write_stall_ms=500,die_mid_push=250";
// each field optional; "" or "none": no faults.
Result<FaultOptions> ParseFaultOptions(const std::string& spec);

std::unique_ptr<Transport> WithFaults(std::unique_ptr<Transport> inner, const FaultOptions& faults);

}  // namespace psforge
