// SharedRegion: tensor payloads between a worker and a server on the same
// host, through shared memory instead of the kernel's socket buffers.
//
// The worker creates one region per server: a sealed memfd (it cannot shrink
// or grow, so a mapping never faults with SIGBUS) of kSlots slots of the
// server's key-range size, and offers it (pid, fd, token) in a control
// message. The server maps it through /proc/<pid>/fd/<fd>, which works only
// for a process of the same user on the same host (and pid namespace), and
// checks the file's name, seals, size and the token in its header: anything
// else is declined with the reason, and payloads go in ZeroMQ frames as before.
//
// Slots 1 and 2 carry gradients (the worker writes, then sends a push naming
// the slot; the server reads it while handling the push), slots 3 and 4
// weights (the server writes a pull reply into the slot the request names).
// A weight slot is a seqlock: the server bumps its sequence to odd, writes,
// bumps it to even and sends that sequence in the reply; the worker copies
// the slot out and accepts the copy only if the sequence was that value
// before and after (a late reply to a resent request may overwrite a slot).
// The memfd lives while either side maps it: a dead worker leaves nothing
// behind in /dev/shm.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "common/status.h"

namespace psforge {

// What a worker offers: enough for a process on the same host to map it.
struct SharedRegionRef {
  int64_t pid = 0;
  int64_t fd = -1;
  uint64_t token = 0;
  int64_t slot_bytes = 0;
  bool operator==(const SharedRegionRef&) const = default;
};

class SharedRegion {
 public:
  static constexpr int kSlots = 4;  // numbered 1..kSlots on the wire (0: no slot)
  static constexpr int kFirstWeightSlot = 3;

  // A fresh region whose slots hold `slot_bytes` each (worker side).
  static Result<std::unique_ptr<SharedRegion>> Create(int64_t slot_bytes);
  // Maps the region `ref` describes (server side); FailedPrecondition naming
  // why when it cannot be shared (another host, user or pid namespace, or
  // not a region of ours).
  static Result<std::unique_ptr<SharedRegion>> Attach(const SharedRegionRef& ref);
  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  const SharedRegionRef& ref() const { return ref_; }
  int64_t slot_bytes() const { return ref_.slot_bytes; }
  static bool ValidSlot(int64_t slot) { return slot >= 1 && slot <= kSlots; }
  // The bytes of slot `slot` (1-based).
  std::span<std::byte> slot(int slot) const;

  // Seqlock writer: copies `bytes` into `slot`; returns the sequence a
  // reader must see.
  uint64_t Write(int slot, std::span<const std::byte> bytes);
  // Seqlock reader: copies the slot's first out.size() bytes into `out`;
  // false when the slot does not hold the write of `sequence` (torn or
  // overwritten).
  bool Read(int slot, uint64_t sequence, std::span<std::byte> out) const;

 private:
  struct Header;
  SharedRegion(int fd, std::byte* base, std::size_t size, SharedRegionRef ref);
  Header* header() const;

  int fd_;  // the creator keeps it open (it is what /proc/<pid>/fd names); -1 when attached
  std::byte* base_;
  std::size_t size_;
  SharedRegionRef ref_;
};

}  // namespace psforge
