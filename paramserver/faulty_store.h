// A ParamStore whose writes stall, for fault-injection tests: a slow or
// hung disk (FaultOptions::write_stall_ms, from cluster.faults or a
// server's --faults). Built like the transport's WithFaults: a decorator
// around the real store, so that the store itself knows nothing of faults.
#pragma once

#include <memory>

#include "common/fault_transport.h"
#include "paramserver/param_store.h"

namespace psforge {

// `inner` itself when `faults` has no store fault; otherwise a store whose
// every Write() first waits faults.write_stall_ms (logged with the step),
// then writes through. Everything else passes straight through.
std::unique_ptr<ParamStore> WithFaults(std::unique_ptr<ParamStore> inner, const FaultOptions& faults);

}  // namespace psforge
