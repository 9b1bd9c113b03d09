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
  for (int k = 0; k <= static_cast<int>(MessageKind::kReport); ++k) {
    WireHeader h;
    h.kind = static_cast<MessageKind>(k);
    h.request_id = 7;
    h.sender = 1;
    h.generation = 2;
    h.step = 250;
    h.key_begin = 100;
    h.key_end = 200;
    h.with_pull = true;
    h.pull_version = 251;
    h.error_code = StatusCode::kInvalidArgument;
    h.text = "a message";
    h.role = PeerRole::kServer;
    h.control = ControlKind::kRemoveWorker;
    h.value = 3;
    h.samples = 64;
    h.mark = {5, 32, 1, 1234, 56789};
    h.endpoint = "tcp://127.0.0.1:5555";
    h.public_key = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
    h.epoch = 1;
    h.loss = 0.5;
    h.removed = {1};
    h.checkpoint = 200;
    h.audit = {{1, 60000, 1, 2}};
    h.positions = {{1, 5, 32, 249}};
    h.done = {4, 5};
    h.lease_status = LeaseStatus::kGranted;
    h.lease_id = 9;
    h.record_end = 64;
    h.metric = 0.85;
    h.workers = 2;
    EncodeHeader(h, &frame);
    std::ofstream out(std::string(argv[1]) + "/" + MessageKindName(h.kind), std::ios::binary);
    out.write(reinterpret_cast<const char*>(frame.data()), static_cast<std::streamsize>(frame.size()));
  }
  return 0;
}
