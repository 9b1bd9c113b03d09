// Writes the wire fuzzer's seed corpus: one header of every message kind,
// with its lists filled, from the real encoder (make_corpus.py runs it).
// Usage: fuzz_seed_wire DIR
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/wire.h"

int main(int argc, char** argv) {
  using namespace psforge;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  std::vector<std::byte> frame;
  msg::Heartbeat heartbeat;
  heartbeat.role = PeerRole::kServer;
  heartbeat.step = 250;
  heartbeat.epoch = 1;
  heartbeat.loss = 0.5;
  heartbeat.removed = {1};
  heartbeat.checkpoint = 200;
  heartbeat.audit = {{1, 60000, 1, 2}};
  heartbeat.positions = {{1, 5, 32, 249}};
  const MessageBody bodies[] = {
      msg::Register{PeerRole::kServer, "tcp://127.0.0.1:5555", "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID", 77},
      heartbeat,
      msg::Push{.step = 250, .key_begin = 100, .key_end = 200, .samples = 64, .mark = {5, 32, 1, 1234, 56789},
                .with_pull = true, .pull_version = 251, .sparse = {{0, 3, 4}, {2, 1, 1}}},
      msg::PushAck{250, false},
      msg::Pull{.version = 250, .key_begin = 100, .key_end = 200, .sparse = {{1, 2, 2}}},
      msg::PullReply{.version = 250, .key_begin = 100, .key_end = 200, .workers = 2, .sparse = {{1, 2, 0}}},
      msg::Error{StatusCode::kInvalidArgument, "a message"},
      msg::Control{ControlKind::kRemoveWorker, 3, "a message", {}},
      msg::Welcome{1, 250},
      msg::LeaseRequest{{4, 5}, 250, false},
      msg::LeaseReply{LeaseStatus::kGranted, 9, 1, 0, 64, 0, 0, 0},
      msg::Report{1, 250, 0.85, false, 0.5},
  };
  for (const MessageBody& body : bodies) {
    WireHeader h;
    h.request_id = 7;
    h.sender = 1;
    h.generation = 2;
    h.body = body;
    EncodeHeader(h, &frame);
    std::ofstream out(std::string(argv[1]) + "/" + MessageKindName(h.kind()), std::ios::binary);
    out.write(reinterpret_cast<const char*>(frame.data()), static_cast<std::streamsize>(frame.size()));
  }
  return 0;
}
