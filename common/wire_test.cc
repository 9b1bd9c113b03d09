#include "common/wire.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace psforge {
namespace {

WireHeader Push() {
  WireHeader h;
  h.request_id = 77;
  h.sender = 3;
  h.generation = 2;
  h.body = msg::Push{.step = 12, .key_begin = 100, .key_end = 200, .with_pull = true, .pull_version = 13};
  return h;
}

// One message of every kind, each field set to a value other than its default.
std::vector<MessageBody> EveryKind() {
  msg::Heartbeat heartbeat;
  heartbeat.role = PeerRole::kServer;
  heartbeat.step = 12;
  heartbeat.epoch = 4;
  heartbeat.samples = 64;
  heartbeat.loss = 0.25;
  heartbeat.stop = true;
  heartbeat.removed = {1, 7};
  heartbeat.removed_from = 300;
  heartbeat.checkpoint = 500;
  heartbeat.audit = {{2, 60000, 1799970000, 71996400010000}, {3, 64, 5, 9}};
  heartbeat.positions = {{1, 4097, 640, 11}};
  heartbeat.restore = 400;
  heartbeat.restored = -1;
  heartbeat.bytes_pushed = 1 << 20;
  heartbeat.bytes_pulled = int64_t{3} << 33;
  heartbeat.positions_from = 2;
  heartbeat.collecting = true;
  heartbeat.checkpoint_at = 600;
  msg::Push push{.step = 12, .key_begin = 100, .key_end = 200, .dtype = DType::kBf16, .samples = 64,
                 .mark = {4097, 640, 2, 123456, 789012}, .with_pull = true, .pull_version = 13,
                 .payload_slot = 1, .reply_slot = 3, .sparse = {{0, 5, 9}, {3, 1, 10}}};
  msg::Pull pull{.version = 14, .key_begin = 100, .key_end = 200, .dtype = DType::kF16, .reply_slot = 4,
                 .sparse = {{2, 4096, 5000}}};
  msg::PullReply reply{.version = 15, .key_begin = 100, .key_end = 200, .dtype = DType::kBf16, .workers = 2,
                       .payload_slot = 3, .slot_sequence = 99, .sparse = {{2, 4096, 0}}};
  return {msg::Register{PeerRole::kServer, "tcp://10.0.0.1:7000", "public-key", 4242},
          heartbeat,
          push,
          msg::PushAck{12, true},
          pull,
          reply,
          msg::Error{StatusCode::kDataLoss, "hello"},
          msg::Control{ControlKind::kShareMemory, 5, "stats", {123, 7, 0xfeed, 4096}},
          msg::Welcome{9, 250},
          msg::LeaseRequest{{9, 10, 11}, 12, true},
          msg::LeaseReply{LeaseStatus::kFinished, 99, 4, 2048, 4096, 3, 468, 1024},
          msg::Report{4, 12, 0.875, true, 0.5}};
}

TEST(Wire, EveryKindRoundTripsWithEveryField) {
  std::vector<std::byte> buf;
  std::vector<uint64_t> scratch;
  const std::vector<MessageBody> bodies = EveryKind();
  ASSERT_EQ(bodies.size(), std::variant_size_v<MessageBody>);
  for (const MessageBody& body : bodies) {
    WireHeader h = Push();
    h.body = body;
    EncodeHeader(h, &buf);
    auto d = DecodeHeader(buf, &scratch);
    ASSERT_TRUE(d.ok()) << MessageKindName(h.kind()) << ": " << d.status().ToString();
    EXPECT_EQ(d->kind(), h.kind());
    EXPECT_EQ(d->request_id, 77u);
    EXPECT_EQ(d->sender, 3u);
    EXPECT_EQ(d->generation, 2u);
    EXPECT_TRUE(d->body == h.body) << MessageKindName(h.kind()) << " changed on the way";
  }
}

TEST(Wire, AHandlerSeesOnlyItsKindsBody) {
  WireHeader h = Push();
  ASSERT_NE(h.As<msg::Push>(), nullptr);
  EXPECT_EQ(h.As<msg::Pull>(), nullptr);
  EXPECT_EQ(h.kind(), MessageKind::kPush);
  WireHeader error = ErrorReply(h, NotFound("no such key"));
  EXPECT_EQ(error.request_id, 77u);
  ASSERT_NE(error.As<msg::Error>(), nullptr);
  EXPECT_EQ(error.As<msg::Error>()->code, StatusCode::kNotFound);
  EXPECT_EQ(error.As<msg::Error>()->message, "no such key");
}

TEST(Wire, SparseBlocksThatCannotBeRightAreRefusedByName) {
  std::vector<std::byte> buf;
  std::vector<uint64_t> scratch;
  auto refusal = [&](MessageBody body) {
    WireHeader h = Push();
    h.body = std::move(body);
    EncodeHeader(h, &buf);
    auto d = DecodeHeader(buf, &scratch);
    EXPECT_FALSE(d.ok());
    return d.status().message();
  };
  EXPECT_NE(refusal(msg::Push{.sparse = {{1, 2, 2}, {1, 3, 3}}}).find("table 1 appears twice"), std::string::npos);
  EXPECT_NE(refusal(msg::Push{.sparse = {{1, 0, 0}}}).find("has 0 rows"), std::string::npos);
  EXPECT_NE(refusal(msg::Pull{.sparse = {{1, 4, 3}}}).find("4 row ids cannot take 3 bytes"), std::string::npos);
  EXPECT_NE(refusal(msg::Pull{.sparse = {{1, 4, 41}}}).find("cannot take 41 bytes"), std::string::npos);
  EXPECT_NE(refusal(msg::PullReply{.sparse = {{1, 4, 4}}}).find("a reply's rows are its pull's"), std::string::npos);
  msg::Push many;
  for (uint16_t t = 0; t <= kMaxSparseBlocks; ++t) many.sparse.push_back({t, 1, 1});
  WireHeader h = Push();
  h.body = many;
  EncodeHeader(h, &buf);
  auto d = DecodeHeader(buf, &scratch);
  ASSERT_TRUE(d.ok()) << "the encoder sends at most kMaxSparseBlocks: " << d.status().ToString();
  EXPECT_EQ(d->As<msg::Push>()->sparse.size(), kMaxSparseBlocks);
}

TEST(Wire, OutOfRangeSlotsAndEnumsAreRefusedByName) {
  std::vector<std::byte> buf;
  std::vector<uint64_t> scratch;
  WireHeader h = Push();
  h.As<msg::Push>()->payload_slot = SharedRegion::kSlots + 1;
  EncodeHeader(h, &buf);
  auto d = DecodeHeader(buf, &scratch);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("payload slot"), std::string::npos) << d.status().message();
  h = Push();
  h.body = msg::Pull{.reply_slot = SharedRegion::kSlots + 1};
  EncodeHeader(h, &buf);
  d = DecodeHeader(buf, &scratch);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("reply slot"), std::string::npos) << d.status().message();
}

TEST(Wire, UnalignedFramesAreDecoded) {
  std::vector<std::byte> buf;
  EncodeHeader(Push(), &buf);
  std::vector<std::byte> shifted(buf.size() + 3);
  std::memcpy(shifted.data() + 3, buf.data(), buf.size());
  std::vector<uint64_t> scratch;
  auto d = DecodeHeader(std::span(shifted).subspan(3), &scratch);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_NE(d->As<msg::Push>(), nullptr);
  EXPECT_EQ(d->As<msg::Push>()->key_end, 200);
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

// Why a heartbeat that encodes fine does not decode ("" if it does).
std::string HeartbeatRefusal(const msg::Heartbeat& b) {
  WireHeader h;
  h.body = b;
  std::vector<std::byte> buf;
  EncodeHeader(h, &buf);
  std::vector<uint64_t> scratch;
  auto d = DecodeHeader(buf, &scratch);
  return d.ok() ? std::string() : d.status().message();
}

TEST(Wire, ANegativeCheckpointStepIsRefusedByName) {
  const std::string why = HeartbeatRefusal(msg::Heartbeat{.checkpoint_at = -5});
  EXPECT_NE(why.find("heartbeat.checkpointAt is -5"), std::string::npos) << why;
}

TEST(Wire, NegativeByteCountsAreRefusedByName) {
  const std::string why = HeartbeatRefusal(msg::Heartbeat{.bytes_pulled = -1});
  EXPECT_NE(why.find("bytes pushed"), std::string::npos) << why;
}

// A server's heartbeat as full as it gets (found by fuzz_wire: the decoder
// read the positions list twice, which counted it twice against the
// traversal limit and refused the message).
TEST(Wire, AHeartbeatWithEveryListFullRoundTrips) {
  msg::Heartbeat b;
  b.role = PeerRole::kServer;
  for (uint32_t w = 0; w < kMaxListEntries; ++w) {
    b.positions.push_back({w, uint64_t{w} << 32, 64, 1000 + w});
    b.removed.push_back(w);
  }
  for (int64_t e = 1; e <= static_cast<int64_t>(kMaxAuditEntries); ++e) b.audit.push_back({e, 60000, 1, 2});
  WireHeader h;
  h.body = b;
  std::vector<std::byte> buf;
  EncodeHeader(h, &buf);
  ASSERT_LE(buf.size(), kMaxHeaderBytes);
  std::vector<uint64_t> scratch;
  auto d = DecodeHeader(buf, &scratch);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_NE(d->As<msg::Heartbeat>(), nullptr);
  EXPECT_TRUE(*d->As<msg::Heartbeat>() == b);
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
