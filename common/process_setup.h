// Process-wide settings every psforge program applies once at start.
#pragma once

namespace psforge {

// psforge executables use jemalloc (PSFORGE_JEMALLOC). ZeroMQ allocates every
// received message; with glibc, messages above its 32 MiB mmap ceiling (and
// smaller ones whenever a thread arena shrinks) are fresh mappings whose
// pages all fault, about 13 us per 4 KiB page on these machines: 0.3 GB/s.
// jemalloc, with its eager-purge "oversize" arena turned off (set below
// by common/malloc_conf.cc, compiled into each executable), reuses freed message buffers and returns
// idle memory after its normal 10 s decay. Reports the allocator in use.
const char* AllocatorName();

}  // namespace psforge
