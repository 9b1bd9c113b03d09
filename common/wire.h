// The wire codec: plain structs for the Cap'n Proto Header of
// common/proto/psforge.capnp. Generated types never leave wire.cc.
//
// Decoding is bounded (ReaderOptions with small traversal and nesting limits,
// a size cap checked first) and copies an unaligned frame into an aligned
// scratch buffer, since Cap'n Proto rejects unaligned segments and ZeroMQ can
// hand over small frames unaligned. Every malformed input is an
// InvalidArgument naming what was wrong. Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/shared_region.h"
#include "common/status.h"

namespace psforge {

inline constexpr uint16_t kWireSchemaVersion = 10;
// No valid header comes near this (the largest, a server's heartbeat with
// full lists, is under 9 KiB); anything larger is refused undecoded.
inline constexpr std::size_t kMaxHeaderBytes = 16384;

enum class MessageKind {
  kRegister, kHeartbeat, kPush, kPushAck, kPull, kPullReply, kError, kControl,
  kWelcome, kLease, kLeaseReply, kReport
};
enum class DType { kF32, kBf16, kF16 };
enum class PeerRole { kWorker, kServer, kCoordinator };
enum class ControlKind { kShutdown, kStats, kRemoveWorker, kAdmitWorker, kShareMemory };
enum class LeaseStatus { kGranted, kWait, kFinished };
// A header holds at most this many entries in one list (done leases, removed
// workers, positions); a server's heartbeat audits at most kMaxAuditEntries epochs.
inline constexpr std::size_t kMaxListEntries = 256;
inline constexpr std::size_t kMaxAuditEntries = 8;

const char* MessageKindName(MessageKind k);

// Where a push's records came from (exactly-once accounting): the data
// position after the batch, and a checksum of the batch's record ids.
struct DataMark {
  uint64_t lease = 0;         // the lease the worker is in (0: none, e.g. an empty step)
  int64_t lease_offset = 0;   // records of that lease's shard trained so far
  int64_t epoch = 0;          // of the batch's records (0: not from a lease)
  uint64_t id_sum = 0;        // the batch's record ids, summed mod 2^64
  uint64_t id_square_sum = 0; // their squares, summed mod 2^64
};
// A server's records applied in one epoch, with their id sums.
struct EpochAudit {
  int64_t epoch = 0;
  int64_t records = 0;
  uint64_t id_sum = 0, id_square_sum = 0;
  bool operator==(const EpochAudit&) const = default;
};
// The last data position a server took in from a worker.
struct DataPosition {
  uint32_t worker = 0;
  uint64_t lease = 0;
  int64_t lease_offset = 0;
  int64_t step = -1;  // the step of the push that set it; -1: none (restored positions carry none)
  bool operator==(const DataPosition&) const = default;
};

struct WireHeader {
  uint16_t version = kWireSchemaVersion;
  MessageKind kind = MessageKind::kHeartbeat;
  uint64_t request_id = 0;
  uint32_t sender = 0;
  uint32_t generation = 0;                // every message: the job generation of the sender
  // push, pull, pull reply (KeyBlock); push ack and heartbeat use `step` too.
  int64_t step = 0;                       // also heartbeat, lease request, report
  int64_t key_begin = 0;
  int64_t key_end = 0;
  DType dtype = DType::kF32;
  bool with_pull = false;                 // push: answer with the pull reply for pull_version
  int64_t pull_version = 0;
  bool duplicate = false;                 // push ack
  StatusCode error_code = StatusCode::kOk;  // error
  std::string text;                       // error message, control text
  PeerRole role = PeerRole::kWorker;      // register
  ControlKind control = ControlKind::kStats;
  int64_t value = 0;                      // control
  int64_t samples = 0;                    // push: records in the gradient's mean; heartbeat: trained so far
  DataMark mark;                          // push
  std::string endpoint;                   // register (server)
  std::string public_key;                 // register (server, CURVE): its public key
  uint32_t pid = 0;                       // register: the member's process id (0: not said)
  int64_t epoch = 0;                      // heartbeat, lease reply, report
  double loss = 0;                        // heartbeat
  bool stop = false;                      // heartbeat answer
  std::vector<uint32_t> removed;          // heartbeat answer: removed workers from index removed_from on
  uint32_t removed_from = 0;
  int64_t checkpoint = 0;                 // heartbeat (server): durable checkpoint step; answer: committed step
  std::vector<EpochAudit> audit;          // heartbeat (server)
  std::vector<DataPosition> positions;    // heartbeat (server)
  std::vector<uint64_t> done;             // lease request
  bool finished = false;                  // lease request
  LeaseStatus lease_status = LeaseStatus::kWait;  // lease reply
  uint64_t lease_id = 0;                  // lease reply
  int64_t record_begin = 0, record_end = 0;       // lease reply
  int64_t evaluate_epoch = 0;             // lease reply
  int64_t final_version = 0;              // lease reply
  int64_t record_offset = 0;              // lease reply
  double metric = 0;                      // report
  bool final = false;                     // report
  int64_t restore = 0;                    // heartbeat answer (server): the step to load
  int64_t restored = 0;                   // heartbeat (server): the step it loaded (-1: failed)
  uint32_t positions_from = 0;            // heartbeat (server): index of positions[0] when restored
  bool collecting = false;                // heartbeat answer: restored positions still wanted
  int64_t checkpoint_at = 0;              // heartbeat answer (server): the step of the next checkpoint
  int64_t workers = 0;                    // pull reply (bsp): the workers the server waits for
  int payload_slot = 0;                   // push, pull reply: the payload's shared-memory slot (0: a frame)
  uint64_t slot_sequence = 0;             // pull reply in a slot: its seqlock sequence
  int reply_slot = 0;                     // pull, push with pull: the slot to answer in (0: a frame)
  SharedRegionRef region;                 // control kShareMemory
};

// Serialises `h` into `out` (resized; reuse it to avoid allocating).
void EncodeHeader(const WireHeader& h, std::vector<std::byte>* out);

// Parses a header frame. `scratch` is reused for alignment copies.
Result<WireHeader> DecodeHeader(std::span<const std::byte> frame, std::vector<uint64_t>* scratch);

// An error reply to `request`.
WireHeader ErrorReply(const WireHeader& request, const Status& status);

}  // namespace psforge
