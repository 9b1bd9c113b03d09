#include "common/process_setup.h"

namespace psforge {

const char* AllocatorName() {
#if defined(PSFORGE_WITH_JEMALLOC)
  return "jemalloc (oversize_threshold:0)";
#else
  return "system malloc";
#endif
}

}  // namespace psforge
