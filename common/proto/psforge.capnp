# The one wire schema of psforge: every message between processes is a
# Header (this struct), optionally followed by one payload frame of raw
# little-endian tensor values (never inside the Cap'n Proto message, so
# tensors are not copied in or out of it).
@0xd1a4c6e2b3f50817;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("psforge::proto");

# Bumped whenever a message's meaning changes; a receiver answers a header of
# another version with an Error naming both versions.
const schemaVersion :UInt16 = 12;

enum DType { f32 @0; bf16 @1; fp16 @2; }
enum Role { worker @0; server @1; coordinator @2; }
enum ControlKind {
  shutdown @0;
  stats @1;
  removeWorker @2;   # value: the worker that left the job (it pushes no more)
  admitWorker @3;    # from a worker: count me from now on; answer value: the step counted from
  shareMemory @4;    # from a worker on the same host: map `region` (answer value 1), or an
                     # Error (failedPrecondition) saying why not; payloads then go in frames
}
enum LeaseStatus {
  granted @0;        # a shard to train on
  wait @1;           # none free now: the epoch's last shards are still in training
  finished @2;       # the job's data is exhausted, or its steps are done: stop
}

struct KeyBlock {
  step @0 :Int64;       # push: the step the gradient was computed at; pull: the version wanted
  keyBegin @1 :Int64;   # [keyBegin, keyEnd) of the flattened key space
  keyEnd @2 :Int64;
  dtype @3 :DType;      # of the payload frame
  # push only: also a pull. The server answers with the pull reply for
  # pullVersion (once ready) instead of a push ack: one round trip a step.
  withPull @4 :Bool;
  pullVersion @5 :Int64;
  # push only: how many records the gradient is the mean over. Servers weight
  # each push by it, so the update is the mean over every record of the step;
  # 0 is an empty step (the worker had no data), which only advances its clock.
  samples @6 :UInt32;
  # push only: where the records came from, for exactly-once accounting.
  # lease: the data lease the worker is in after this batch (0: none, e.g. an
  # empty step); leaseOffset: how many of that shard's records it has
  # trained so far; epoch: the epoch of the batch's records (0: not from a
  # lease); idSum, idSquareSum: the batch's record ids summed (mod 2^64).
  lease @7 :UInt64;
  leaseOffset @8 :Int64;
  epoch @9 :Int64;
  idSum @10 :UInt64;
  idSquareSum @11 :UInt64;
  # pull reply (bsp): how many workers the server waits for at that version.
  # The job's batch is split among them, so a step keeps training.batch_size
  # records while a worker is missing. 0: not bsp (each worker keeps its share).
  workers @12 :UInt32;
  # Shared memory (see Control.region): 0, the payload is the frame after the
  # header. push: k, the gradient is in slot k of the sender's region (and
  # there is no payload frame); pull reply: the weights are in slot k, written
  # with sequence `slotSequence`.
  payloadSlot @13 :UInt8;
  slotSequence @14 :UInt64;
  # pull, push with pull: k > 0, write the reply's weights into slot k.
  replySlot @15 :UInt8;
  # Rows of sparse embedding tables this message carries
  # (common/sparse_payload.h): push, after the dense values in its payload
  # frame, each block's row ids then their gradients; pull, each block's row
  # ids in a payload frame (keyBegin == keyEnd: rows only); pull reply, each
  # block's rows' weights in a frame after the dense one, in the order the
  # pull named them (keyBytes 0: the ids are not echoed). A push with pull
  # asks for dense weights only.
  sparse @16 :List(SparseBlock);
}

# One table's rows in a message: `rows` sorted unique row ids, delta +
# varint coded in `keyBytes` bytes (common/row_ids.h).
struct SparseBlock {
  table @0 :UInt16;     # the table's index in the model's tables
  rows @1 :UInt32;
  keyBytes @2 :UInt32;
}

# A server's count of the records it applied in one epoch, with the sums of
# their ids: every record exactly once gives N, N(N-1)/2 and (N-1)N(2N-1)/6.
struct EpochAudit {
  epoch @0 :Int64;
  records @1 :Int64;
  idSum @2 :UInt64;
  idSquareSum @3 :UInt64;
}

# The last data position a server took in from a removed worker.
struct DataPosition {
  worker @0 :UInt32;
  lease @1 :UInt64;
  leaseOffset @2 :Int64;
  step @3 :Int64;       # the step of the push that brought it here; -1: none
}

struct PushAck {
  step @0 :Int64;
  duplicate @1 :Bool;   # already applied: this copy was ignored
}

struct Error {
  code @0 :UInt16;      # psforge::StatusCode
  message @1 :Text;
}

# To the coordinator; answered by Welcome plus one payload frame: the job as
# JSON ({"config": ..., "servers": [endpoint, ...], and under CURVE
# "server_keys": [public key, ...]}).
struct Register {
  role @0 :Role;
  endpoint @1 :Text;    # server: where workers reach it
  publicKey @2 :Text;   # server, under CURVE: its public key (Z85), which workers connect with
  pid @3 :UInt32;       # the member's process id, so that logs name a process one way
}
# The header's generation is the job's: the coordinator starts a new one each
# time the job (re)starts from a checkpoint. Workers start at `step`; servers
# load the weights of `step` (0: the initial weights) before serving.
struct Welcome {
  id @0 :UInt32;
  step @1 :Int64;
}

# Servers and workers to the coordinator, and back (the coordinator's answer
# carries the membership state, so a lost heartbeat loses nothing).
struct Heartbeat {
  step @0 :Int64;       # worker: steps pushed; server: its version
  epoch @1 :Int64;
  samples @2 :Int64;    # worker: records trained so far
  loss @3 :Float64;     # worker: mean training loss since its last heartbeat
  stop @4 :Bool;        # answer: the job is over (or you were removed): exit;
                        # from a member: its last heartbeat before it exits
  removed @5 :List(UInt32);  # answer: workers no longer in the job, from removedFrom on
  role @6 :Role;        # the sender's (ids are per role)
  # server only: records applied in its latest epochs, and where each
  # removed worker's data stopped (its unfinished leases resume from there).
  audit @7 :List(EpochAudit);
  positions @8 :List(DataPosition);
  # The membership's removed workers travel in pages: a member says how many
  # it knows, the answer lists the next ones from that index on.
  removedFrom @9 :UInt32;
  # server: the step of its latest durable checkpoint; answer: the latest
  # step every server has checkpointed (committed). 0: none.
  checkpoint @10 :Int64;
  # Restarting from a checkpoint. Answer to a server: load step `restore`
  # for the answer's generation. Server: the step it loaded for its
  # generation (-1: it could not; its log says why), and while the answer
  # says `collecting`, the restored workers' positions from index
  # positionsFrom on (in pages).
  restore @11 :Int64;
  restored @12 :Int64;
  positionsFrom @13 :UInt32;
  collecting @14 :Bool;
  # Answer to a server, checkpoints by time (checkpoint.interval_s): take a
  # checkpoint when your version reaches this step. 0: none planned.
  checkpointAt @15 :Int64;
  # worker: payload bytes it has pushed and pulled so far (gradients and
  # rows out; weights and rows in), through sockets or shared memory.
  bytesPushed @16 :Int64;
  bytesPulled @17 :Int64;
}

# A worker asks for its next data shard, reporting the shards it finished.
struct LeaseRequest {
  done @0 :List(UInt64);  # lease ids whose every record has been pushed
  step @1 :Int64;         # steps the worker has pushed
  finished @2 :Bool;      # the worker stops (its step budget is spent)
}
struct LeaseReply {
  status @0 :LeaseStatus;
  leaseId @1 :UInt64;
  epoch @2 :Int64;
  recordBegin @3 :Int64;  # [recordBegin, recordEnd) of the job's record permutation
  recordEnd @4 :Int64;
  evaluateEpoch @5 :Int64;  # > 0: epoch that just completed; evaluate and report it
  finalVersion @6 :Int64;   # finished, > 0: you are the evaluator; pull this version, evaluate, report
  recordOffset @7 :Int64;   # granted: the shard's first this many records are already trained; skip them
}

# A worker's evaluation, to the coordinator.
struct Report {
  epoch @0 :Int64;
  step @1 :Int64;
  metric @2 :Float64;
  final @3 :Bool;
  trainLoss @4 :Float64;  # the reporting worker's mean training loss over its steps of the epoch
  testLogloss @5 :Float64;  # ctr: the log loss of the test set's predicted click probabilities
}

# A worker's shared-memory region for payloads to and from one server
# (common/shared_region.h): a sealed memfd the server maps through
# /proc/<pid>/fd/<fd>; `token` is in its header.
struct SharedRegion {
  pid @0 :Int64;
  fd @1 :Int64;
  token @2 :UInt64;
  slotBytes @3 :Int64;
}

struct Control {
  kind @0 :ControlKind;
  value @1 :Int64;
  text @2 :Text;        # stats: a JSON object of counters
  region @3 :SharedRegion;  # shareMemory
}

struct Header {
  version @0 :UInt16;
  requestId @1 :UInt64; # echoed by the reply; retries reuse it
  senderId @2 :UInt32;  # worker index for pushes and pulls
  # The job's generation the sender is in (see Welcome); a server or the
  # coordinator refuses work from another generation (Aborted: rejoin).
  # 0: a peer outside any coordinated job (tests, tools).
  generation @15 :UInt32;
  body :union {
    register @3 :Register;
    heartbeat @4 :Heartbeat;
    push @5 :KeyBlock;
    pushAck @6 :PushAck;
    pull @7 :KeyBlock;
    pullReply @8 :KeyBlock;
    error @9 :Error;
    control @10 :Control;
    welcome @11 :Welcome;
    lease @12 :LeaseRequest;
    leaseReply @13 :LeaseReply;
    report @14 :Report;
  }
}
