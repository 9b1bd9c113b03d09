// The wire codec: plain structs for the Cap'n Proto Header of
// common/proto/psforge.capnp, an envelope (WireHeader) holding one typed
// body per message kind. Generated types never leave wire.cc.
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
#include <variant>
#include <vector>

#include "common/dtype.h"
#include "common/shared_region.h"
#include "common/status.h"

namespace psforge {

inline constexpr uint16_t kWireSchemaVersion = 12;
// No valid header comes near this (the largest, a server's heartbeat with
// full lists, is under 9 KiB); anything larger is refused undecoded.
inline constexpr std::size_t kMaxHeaderBytes = 16384;

enum class MessageKind {
  kRegister, kHeartbeat, kPush, kPushAck, kPull, kPullReply, kError, kControl,
  kWelcome, kLease, kLeaseReply, kReport
};
enum class PeerRole { kWorker, kServer, kCoordinator };
enum class ControlKind { kShutdown, kStats, kRemoveWorker, kAdmitWorker, kShareMemory };
enum class LeaseStatus { kGranted, kWait, kFinished };
// A header holds at most this many entries in one list (done leases, removed
// workers, positions); a server's heartbeat audits at most kMaxAuditEntries
// epochs: all of a job of up to that many, else its kLatestAudited latest and
// a page of the older ones (the next page each heartbeat).
inline constexpr std::size_t kMaxListEntries = 256;
inline constexpr std::size_t kMaxAuditEntries = 64;
inline constexpr std::size_t kLatestAudited = 16;

const char* MessageKindName(MessageKind k);

// Where a push's records came from (exactly-once accounting): the data
// position after the batch, and a checksum of the batch's record ids.
struct DataMark {
  uint64_t lease = 0;         // the lease the worker is in (0: none, e.g. an empty step)
  int64_t lease_offset = 0;   // records of that lease's shard trained so far
  int64_t epoch = 0;          // of the batch's records (0: not from a lease)
  uint64_t id_sum = 0;        // the batch's record ids, summed mod 2^64
  uint64_t id_square_sum = 0; // their squares, summed mod 2^64
  bool operator==(const DataMark&) const = default;
};
// A server's records applied in one epoch, with their id sums.
struct EpochAudit {
  int64_t epoch = 0;
  int64_t records = 0;
  uint64_t id_sum = 0, id_square_sum = 0;
  bool operator==(const EpochAudit&) const = default;
};
// One sparse table's rows in a push, pull or pull reply: `rows` sorted
// unique row ids coded in `key_bytes` bytes of the payload
// (common/sparse_payload.h lays the payload out).
struct SparseBlock {
  uint16_t table = 0;
  uint32_t rows = 0;
  uint32_t key_bytes = 0;  // pull reply: 0 (the rows are the pull's, in its order)
  bool operator==(const SparseBlock&) const = default;
};
// A message names at most this many blocks (one per table it touches;
// common/row_ids.h's kMaxSparseTables).
inline constexpr std::size_t kMaxSparseBlocks = 64;

// The last data position a server took in from a worker.
struct DataPosition {
  uint32_t worker = 0;
  uint64_t lease = 0;
  int64_t lease_offset = 0;
  int64_t step = -1;  // the step of the push that set it; -1: none (restored positions carry none)
  bool operator==(const DataPosition&) const = default;
};

// One struct per message kind: a handler sees only the fields its message
// has. Field comments say which direction sets them where a kind travels
// both ways (a heartbeat and its answer).
namespace msg {

// To the coordinator; answered by Welcome plus one payload frame (the job as JSON).
struct Register {
  PeerRole role = PeerRole::kWorker;
  std::string endpoint;    // server: where workers reach it
  std::string public_key;  // server, under CURVE: its public key (Z85)
  uint32_t pid = 0;        // the member's process id (0: not said)
  bool operator==(const Register&) const = default;
};

// The coordinator's answer to Register: the member's id, and the step it
// starts at (servers load its weights; 0: the initial weights).
struct Welcome {
  uint32_t id = 0;
  int64_t step = 0;
  bool operator==(const Welcome&) const = default;
};

// Members to the coordinator and its answer (which carries the membership
// state, so a lost heartbeat loses nothing); also a worker's liveness probe
// of a server (answered with the server's version in `step`).
struct Heartbeat {
  PeerRole role = PeerRole::kWorker;  // the sender's (ids are per role)
  int64_t step = 0;                   // worker: steps pushed; server: its version
  int64_t epoch = 0;
  int64_t samples = 0;                // worker: records trained so far
  double loss = 0;                    // worker: mean training loss since its last heartbeat
  bool stop = false;                  // answer: exit; from a member: its last heartbeat
  std::vector<uint32_t> removed;      // answer: removed workers from index removed_from on
  uint32_t removed_from = 0;
  int64_t checkpoint = 0;             // server: durable checkpoint step; answer: committed step
  std::vector<EpochAudit> audit;      // server: records applied in its latest epochs
  std::vector<DataPosition> positions;  // server: where removed (or restored) workers' data stopped
  int64_t restore = 0;                // answer to a server: the step to load
  int64_t restored = 0;               // server: the step it loaded (-1: failed)
  uint32_t positions_from = 0;        // server: index of positions[0] when restored
  int64_t bytes_pushed = 0;           // worker: payload bytes pushed so far
  int64_t bytes_pulled = 0;           // worker: payload bytes pulled so far
  bool collecting = false;            // answer: restored positions still wanted
  int64_t checkpoint_at = 0;          // answer to a server: the step of the next checkpoint (0: none)
  bool operator==(const Heartbeat&) const = default;
};

// A worker's gradient for keys [key_begin, key_end) of the flattened key space.
struct Push {
  int64_t step = 0;         // the step the gradient was computed at
  int64_t key_begin = 0;
  int64_t key_end = 0;
  DType dtype = DType::kF32;  // of the payload
  int64_t samples = 0;      // records in the gradient's mean (0: an empty step)
  DataMark mark;            // where the records came from
  bool with_pull = false;   // answer with the pull reply for pull_version instead of an ack
  int64_t pull_version = 0;
  int payload_slot = 0;     // the gradient is in this slot of the sender's region (0: a frame)
  int reply_slot = 0;       // with_pull: the slot to answer in (0: a frame)
  std::vector<SparseBlock> sparse;  // table rows after the dense values
  bool operator==(const Push&) const = default;
};

struct PushAck {
  int64_t step = 0;
  bool duplicate = false;   // already applied: this copy was ignored
  bool operator==(const PushAck&) const = default;
};

// A worker asks for the weights of keys [key_begin, key_end) at `version`.
struct Pull {
  int64_t version = 0;
  int64_t key_begin = 0;
  int64_t key_end = 0;
  DType dtype = DType::kF32;  // wanted in the reply
  int reply_slot = 0;         // the slot of the sender's region to answer in (0: a frame)
  std::vector<SparseBlock> sparse;  // table rows wanted (their ids in the payload frame)
  bool operator==(const Pull&) const = default;
};

struct PullReply {
  int64_t version = 0;        // the server's version the weights are at
  int64_t key_begin = 0;
  int64_t key_end = 0;
  DType dtype = DType::kF32;  // of the payload
  int64_t workers = 0;        // bsp: the workers the server waits for (0: not bsp)
  int payload_slot = 0;       // the weights are in this slot (0: a frame)
  uint64_t slot_sequence = 0; // in a slot: its seqlock sequence
  std::vector<SparseBlock> sparse;  // the pull's rows' weights, after the dense values
  bool operator==(const PullReply&) const = default;
};

struct Error {
  StatusCode code = StatusCode::kInternal;
  std::string message;
  bool operator==(const Error&) const = default;
};

struct Control {
  ControlKind kind = ControlKind::kStats;
  int64_t value = 0;
  std::string text;         // stats answer: a JSON object of counters
  SharedRegionRef region;   // kShareMemory
  bool operator==(const Control&) const = default;
};

// A worker asks for its next data shard, reporting the shards it finished.
struct LeaseRequest {
  std::vector<uint64_t> done;  // lease ids whose every record has been pushed
  int64_t step = 0;            // steps the worker has pushed
  bool finished = false;       // the worker stops (its step budget is spent)
  bool operator==(const LeaseRequest&) const = default;
};

struct LeaseReply {
  LeaseStatus status = LeaseStatus::kWait;
  uint64_t lease_id = 0;
  int64_t epoch = 0;
  int64_t record_begin = 0, record_end = 0;  // of the job's record permutation
  int64_t evaluate_epoch = 0;  // > 0: the epoch that just completed; evaluate and report it
  int64_t final_version = 0;   // finished, > 0: you are the evaluator of this version
  int64_t record_offset = 0;   // granted: the shard's first this many records are already trained
  bool operator==(const LeaseReply&) const = default;
};

// A worker's evaluation, to the coordinator.
struct Report {
  int64_t epoch = 0;
  int64_t step = 0;
  double metric = 0;
  bool final = false;
  double train_loss = 0;  // the reporter's mean training loss over its steps of the epoch
  double test_logloss = 0;  // ctr: the test set's log loss
  bool operator==(const Report&) const = default;
};

}  // namespace msg

// In MessageKind's order: body.index() is the kind.
using MessageBody = std::variant<msg::Register, msg::Heartbeat, msg::Push, msg::PushAck, msg::Pull,
                                 msg::PullReply, msg::Error, msg::Control, msg::Welcome,
                                 msg::LeaseRequest, msg::LeaseReply, msg::Report>;

// The envelope every message has, and its body.
struct WireHeader {
  uint16_t version = kWireSchemaVersion;
  uint64_t request_id = 0;  // echoed by the reply; retries reuse it
  uint32_t sender = 0;      // worker index for pushes and pulls
  uint32_t generation = 0;  // the job generation of the sender (0: outside a coordinated job)
  MessageBody body;

  MessageKind kind() const { return static_cast<MessageKind>(body.index()); }
  // The body if it is a T, else null.
  template <typename T> const T* As() const { return std::get_if<T>(&body); }
  template <typename T> T* As() { return std::get_if<T>(&body); }
};

// A reply to `request`: its request id, and `body`.
WireHeader ReplyTo(const WireHeader& request, MessageBody body);

// Serialises `h` into `out` (resized; reuse it to avoid allocating).
void EncodeHeader(const WireHeader& h, std::vector<std::byte>* out);

// Parses a header frame. `scratch` is reused for alignment copies.
Result<WireHeader> DecodeHeader(std::span<const std::byte> frame, std::vector<uint64_t>* scratch);

// An error reply to `request`.
WireHeader ErrorReply(const WireHeader& request, const Status& status);

}  // namespace psforge
