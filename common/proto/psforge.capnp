# The one wire schema of psforge: every message between processes is a
# Header (this struct), optionally followed by one payload frame of raw
# little-endian tensor values (never inside the Cap'n Proto message, so
# tensors are not copied in or out of it).
@0xd1a4c6e2b3f50817;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("psforge::proto");

# Bumped whenever a message's meaning changes; a receiver answers a header of
# another version with an Error naming both versions.
const schemaVersion :UInt16 = 1;

enum DType { f32 @0; bf16 @1; fp16 @2; }
enum Role { worker @0; server @1; coordinator @2; }
enum ControlKind { shutdown @0; stats @1; setWorkers @2; }

struct KeyBlock {
  step @0 :Int64;       # push: the step the gradient was computed at; pull: the version wanted
  keyBegin @1 :Int64;   # [keyBegin, keyEnd) of the flattened key space
  keyEnd @2 :Int64;
  dtype @3 :DType;      # of the payload frame
  # push only: also a pull. The server answers with the pull reply for
  # pullVersion (once ready) instead of a push ack: one round trip a step.
  withPull @4 :Bool;
  pullVersion @5 :Int64;
}

struct PushAck {
  step @0 :Int64;
  duplicate @1 :Bool;   # already applied: this copy was ignored
}

struct Error {
  code @0 :UInt16;      # psforge::StatusCode
  message @1 :Text;
}

struct Register { role @0 :Role; }
struct Heartbeat { step @0 :Int64; }

struct Control {
  kind @0 :ControlKind;
  value @1 :Int64;
  text @2 :Text;        # stats: a JSON object of counters
}

struct Header {
  version @0 :UInt16;
  requestId @1 :UInt64; # echoed by the reply; retries reuse it
  senderId @2 :UInt32;  # worker index for pushes and pulls
  body :union {
    register @3 :Register;
    heartbeat @4 :Heartbeat;
    push @5 :KeyBlock;
    pushAck @6 :PushAck;
    pull @7 :KeyBlock;
    pullReply @8 :KeyBlock;
    error @9 :Error;
    control @10 :Control;
  }
}
