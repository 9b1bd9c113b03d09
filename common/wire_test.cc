#include "common/wire.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace psforge {
namespace {

WireHeader Push() {
  WireHeader h;
  h.kind = MessageKind::kPush;
  h.request_id = 77;
  h.sender = 3;
  h.step = 12;
  h.key_begin = 100;
  h.key_end = 200;
  h.with_pull = true;
  h.pull_version = 13;
  return h;
}

TEST(Wire, EveryKindRoundTrips) {
  std::vector<std::byte> buf;
  std::vector<uint64_t> scratch;
  for (MessageKind k : {MessageKind::kRegister, MessageKind::kHeartbeat, MessageKind::kPush,
                        MessageKind::kPushAck, MessageKind::kPull, MessageKind::kPullReply,
                        MessageKind::kError, MessageKind::kControl, MessageKind::kWelcome,
                        MessageKind::kLease, MessageKind::kLeaseReply, MessageKind::kReport}) {
    WireHeader h = Push();
    h.kind = k;
    h.duplicate = k == MessageKind::kPushAck;
    h.error_code = StatusCode::kDataLoss;
    h.text = k == MessageKind::kError || k == MessageKind::kControl ? "hello" : "";
    h.control = ControlKind::kRemoveWorker;
    h.value = 5;
    h.role = PeerRole::kServer;
    h.endpoint = "tcp://10.0.0.1:7000";
    h.samples = 64;
    h.epoch = 4;
    h.loss = 0.25;
    h.stop = true;
    h.removed = {1, 7};
    h.removed_from = 300;
    h.checkpoint = 500;
    h.checkpoint_at = 600;
    h.audit = {{2, 60000, 1799970000, 71996400010000}, {3, 64, 5, 9}};
    h.positions = {{1, 4097, 640}};
    h.mark = {4097, 640, 2, 123456, 789012};
    h.record_offset = 1024;
    h.done = {9, 10, 11};
    h.finished = true;
    h.lease_status = LeaseStatus::kFinished;
    h.lease_id = 99;
    h.record_begin = 2048;
    h.record_end = 4096;
    h.evaluate_epoch = 3;
    h.final_version = 468;
    h.metric = 0.875;
    h.final = true;
    EncodeHeader(h, &buf);
    auto d = DecodeHeader(buf, &scratch);
    ASSERT_TRUE(d.ok()) << MessageKindName(k) << ": " << d.status().ToString();
    EXPECT_EQ(d->kind, k);
    EXPECT_EQ(d->request_id, 77u);
    EXPECT_EQ(d->sender, 3u);
    if (k == MessageKind::kPush) {
      EXPECT_EQ(d->samples, 64);
      EXPECT_EQ(d->mark.lease, 4097u);
      EXPECT_EQ(d->mark.lease_offset, 640);
      EXPECT_EQ(d->mark.epoch, 2);
      EXPECT_EQ(d->mark.id_sum, 123456u);
      EXPECT_EQ(d->mark.id_square_sum, 789012u);
    }
    if (k == MessageKind::kHeartbeat) {
      EXPECT_EQ(d->step, 12);
      EXPECT_EQ(d->epoch, 4);
      EXPECT_EQ(d->samples, 64);
      EXPECT_EQ(d->loss, 0.25);
      EXPECT_TRUE(d->stop);
      EXPECT_EQ(d->removed, (std::vector<uint32_t>{1, 7}));
      EXPECT_EQ(d->removed_from, 300u);
      EXPECT_EQ(d->checkpoint, 500);
      EXPECT_EQ(d->checkpoint_at, 600);
      EXPECT_EQ(d->audit, h.audit);
      EXPECT_EQ(d->positions, h.positions);
    }
    if (k == MessageKind::kLease) {
      EXPECT_EQ(d->done, (std::vector<uint64_t>{9, 10, 11}));
      EXPECT_EQ(d->step, 12);
      EXPECT_TRUE(d->finished);
    }
    if (k == MessageKind::kLeaseReply) {
      EXPECT_EQ(d->lease_status, LeaseStatus::kFinished);
      EXPECT_EQ(d->lease_id, 99u);
      EXPECT_EQ(d->epoch, 4);
      EXPECT_EQ(d->record_begin, 2048);
      EXPECT_EQ(d->record_end, 4096);
      EXPECT_EQ(d->evaluate_epoch, 3);
      EXPECT_EQ(d->final_version, 468);
      EXPECT_EQ(d->record_offset, 1024);
    }
    if (k == MessageKind::kReport) {
      EXPECT_EQ(d->epoch, 4);
      EXPECT_EQ(d->step, 12);
      EXPECT_EQ(d->metric, 0.875);
      EXPECT_TRUE(d->final);
    }
    if (k == MessageKind::kPush || k == MessageKind::kPull || k == MessageKind::kPullReply) {
      EXPECT_EQ(d->step, 12);
      EXPECT_EQ(d->key_begin, 100);
      EXPECT_EQ(d->key_end, 200);
      EXPECT_TRUE(d->with_pull);
      EXPECT_EQ(d->pull_version, 13);
    }
    if (k == MessageKind::kError) {
      EXPECT_EQ(d->error_code, StatusCode::kDataLoss);
      EXPECT_EQ(d->text, "hello");
    }
    if (k == MessageKind::kControl) {
      EXPECT_EQ(d->control, ControlKind::kRemoveWorker);
      EXPECT_EQ(d->value, 5);
    }
    if (k == MessageKind::kPushAck) {
      EXPECT_TRUE(d->duplicate);
    }
    if (k == MessageKind::kRegister) {
      EXPECT_EQ(d->role, PeerRole::kServer);
      EXPECT_EQ(d->endpoint, "tcp://10.0.0.1:7000");
    }
  }
}

TEST(Wire, UnalignedFramesAreDecoded) {
  std::vector<std::byte> buf;
  EncodeHeader(Push(), &buf);
  std::vector<std::byte> shifted(buf.size() + 3);
  std::memcpy(shifted.data() + 3, buf.data(), buf.size());
  std::vector<uint64_t> scratch;
  auto d = DecodeHeader(std::span(shifted).subspan(3), &scratch);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->key_end, 200);
}

TEST(Wire, OtherSchemaVersionIsNamed) {
  WireHeader h = Push();
  h.version = 0;
  std::vector<std::byte> buf;
  EncodeHeader(h, &buf);
  std::vector<uint64_t> scratch;
  auto d = DecodeHeader(buf, &scratch);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("schema version 0"), std::string::npos) << d.status().message();
}

TEST(Wire, ANegativeCheckpointStepIsRefusedByName) {
  WireHeader h;
  h.kind = MessageKind::kHeartbeat;
  h.checkpoint_at = -5;
  std::vector<std::byte> buf;
  EncodeHeader(h, &buf);
  std::vector<uint64_t> scratch;
  auto d = DecodeHeader(buf, &scratch);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("heartbeat.checkpointAt is -5"), std::string::npos) << d.status().message();
}

// A server's heartbeat as full as it gets (found by fuzz_wire: the decoder
// read the positions list twice, which counted it twice against the
// traversal limit and refused the message).
TEST(Wire, AHeartbeatWithEveryListFullRoundTrips) {
  WireHeader h;
  h.kind = MessageKind::kHeartbeat;
  h.role = PeerRole::kServer;
  h.text = "";
  for (uint32_t w = 0; w < kMaxListEntries; ++w) {
    h.positions.push_back({w, uint64_t{w} << 32, 64, 1000 + w});
    h.removed.push_back(w);
  }
  for (int64_t e = 1; e <= static_cast<int64_t>(kMaxAuditEntries); ++e) h.audit.push_back({e, 60000, 1, 2});
  std::vector<std::byte> buf;
  EncodeHeader(h, &buf);
  ASSERT_LE(buf.size(), kMaxHeaderBytes);
  std::vector<uint64_t> scratch;
  auto d = DecodeHeader(buf, &scratch);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->positions, h.positions);
  EXPECT_EQ(d->removed, h.removed);
  EXPECT_EQ(d->audit, h.audit);
}

TEST(Wire, GarbageTruncationAndOversizeAreErrorsNotCrashes) {
  std::vector<std::byte> buf;
  EncodeHeader(Push(), &buf);
  std::vector<uint64_t> scratch;
  EXPECT_FALSE(DecodeHeader({}, &scratch).ok());
  EXPECT_FALSE(DecodeHeader(std::span(buf).first(buf.size() - 8), &scratch).ok());
  EXPECT_FALSE(DecodeHeader(std::span(buf).first(5), &scratch).ok());
  std::vector<std::byte> big(kMaxHeaderBytes + 8);
  EXPECT_NE(DecodeHeader(big, &scratch).status().message().find("exceeds the limit"), std::string::npos);
  std::mt19937_64 rng(1);
  for (int i = 0; i < 20000; ++i) {
    std::vector<std::byte> noise(8 * (1 + rng() % 32));
    for (auto& b : noise) b = static_cast<std::byte>(rng());
    if (i % 2) std::memcpy(noise.data(), buf.data(), std::min(noise.size(), std::size_t{8}));
    (void)DecodeHeader(noise, &scratch);  // must return, whatever it says
  }
  // Single-bit flips of a valid header: decoded or refused, never a crash.
  for (std::size_t bit = 0; bit < buf.size() * 8; ++bit) {
    auto flipped = buf;
    flipped[bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
    (void)DecodeHeader(flipped, &scratch);
  }
}

}  // namespace
}  // namespace psforge
