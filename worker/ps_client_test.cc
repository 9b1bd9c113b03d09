// PsClient against a scripted server (a bound socket this test answers by
// hand): the shared-memory offer, pushes through a slot, pull replies whose
// slot was overwritten, and the fall-back to frames when a server declines.
#include "worker/ps_client.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

namespace psforge {
namespace {

using namespace std::chrono_literals;

struct ScriptedServer {
  std::unique_ptr<Transport> transport = Transport::CreateZmq();
  std::unique_ptr<ServerSocket> socket = std::move(transport->Bind("tcp://127.0.0.1:0")).value();
  std::vector<uint64_t> scratch;
  std::vector<std::byte> encoded;

  // The next message: its peer, header and payload frame (if any).
  std::tuple<std::string, WireHeader, std::vector<float>> Next() {
    auto m = socket->Receive(10s);
    EXPECT_TRUE(m.ok() && m->has_value()) << "the client sent nothing";
    if (!m.ok() || !m->has_value()) return {};
    auto h = DecodeHeader((*m)->frames[0]->bytes(), &scratch);
    EXPECT_TRUE(h.ok());
    std::vector<float> payload;
    if ((*m)->frames.size() > 1) {
      auto b = (*m)->frames[1]->bytes();
      payload.resize(b.size() / sizeof(float));
      std::memcpy(payload.data(), b.data(), b.size());
    }
    return {(*m)->peer, *h, payload};
  }
  void Reply(const std::string& peer, const WireHeader& h, const std::vector<float>* payload = nullptr) {
    EncodeHeader(h, &encoded);
    OutFrame frames[2] = {{encoded, nullptr}, {}};
    if (payload) frames[1].bytes = std::as_bytes(std::span(*payload));
    EXPECT_TRUE(socket->Send(peer, std::span<const OutFrame>(frames, payload ? 2 : 1)).ok());
  }
};

// The pull reply to `request` (a pull, or a push with pull): the version
// and keys it asked for, the weights in a frame.
msg::PullReply PullReplyTo(const WireHeader& request) {
  msg::PullReply r;
  if (const auto* push = request.As<msg::Push>()) {
    r.version = push->pull_version;
    r.key_begin = push->key_begin;
    r.key_end = push->key_end;
  } else if (const auto* pull = request.As<msg::Pull>()) {
    r.version = pull->version;
    r.key_begin = pull->key_begin;
    r.key_end = pull->key_end;
  } else {
    ADD_FAILURE() << "a pull reply to a " << MessageKindName(request.kind());
  }
  return r;
}

struct Fixture {
  ModelSpec spec = std::move(ModelSpec::FromConfig(LinearRegressionOptions(), 7)).value();  // 8 keys
  ClusterOptions cluster;
  ScriptedServer server;
  std::unique_ptr<PsClient> client;
  Fixture() {
    cluster.servers = 1;
    cluster.workers = 1;
    cluster.request_timeout_s = 20;
    cluster.retry_interval_s = 10;  // a resend within the test's time is the client's own decision
    client = std::move(PsClient::Connect(server.transport.get(), spec, cluster, 0, {server.socket->endpoint()}))
                 .value();
  }
  static ModelOptions LinearRegressionOptions() {
    ModelOptions m;
    m.kind = ModelKind::kLinearRegression;
    return m;
  }
};

TEST(PsClient, PayloadsGoThroughTheOfferedRegionAndAnOverwrittenReplyIsAskedAgain) {
  Fixture f;
  const std::size_t keys = static_cast<std::size_t>(f.spec.num_params());
  std::vector<float> weights(keys, -1.0f), gradient(keys);
  for (std::size_t i = 0; i < keys; ++i) gradient[i] = 0.5f + static_cast<float>(i);
  std::unique_ptr<SharedRegion> region;
  std::thread server([&] {
    auto [peer, offer, none] = f.server.Next();
    const auto* share = offer.As<msg::Control>();
    ASSERT_TRUE(share);
    ASSERT_EQ(share->kind, ControlKind::kShareMemory);
    auto attached = SharedRegion::Attach(share->region);
    ASSERT_TRUE(attached.ok()) << attached.status().ToString();
    region = std::move(*attached);
    f.server.Reply(peer, ReplyTo(offer, msg::Control{ControlKind::kShareMemory, 1, {}, {}}));

    // The first pull: answered with a sequence the slot no longer holds
    // (as when a later reply overwrote it), then, asked again, properly.
    auto [p1, pull, none1] = f.server.Next();
    ASSERT_TRUE(pull.As<msg::Pull>());
    const int slot = pull.As<msg::Pull>()->reply_slot;
    ASSERT_EQ(slot, SharedRegion::kFirstWeightSlot);
    std::vector<float> stale(keys, 7.0f), fresh(keys, 3.0f);
    msg::PullReply reply = PullReplyTo(pull);
    reply.payload_slot = slot;
    reply.slot_sequence = region->Write(slot, std::as_bytes(std::span(stale)));
    region->Write(slot, std::as_bytes(std::span(stale)));
    f.server.Reply(p1, ReplyTo(pull, reply));
    auto [p2, again, none2] = f.server.Next();
    EXPECT_TRUE(again.As<msg::Pull>());
    EXPECT_EQ(again.request_id, pull.request_id) << "the same request, sent again";
    reply.slot_sequence = region->Write(slot, std::as_bytes(std::span(fresh)));
    f.server.Reply(p2, ReplyTo(pull, reply));

    // A push through slot 1, answered with the next weights in slot 3.
    auto [p3, push, payload] = f.server.Next();
    const auto* gradient_push = push.As<msg::Push>();
    ASSERT_TRUE(gradient_push);
    EXPECT_EQ(gradient_push->payload_slot, 1);
    EXPECT_TRUE(payload.empty()) << "a push through a slot has no payload frame";
    std::vector<float> pushed(keys);
    std::memcpy(pushed.data(), region->slot(gradient_push->payload_slot).data(), keys * sizeof(float));
    EXPECT_EQ(pushed, gradient);
    std::vector<float> next(keys, 4.0f);
    msg::PullReply r2 = PullReplyTo(push);
    r2.payload_slot = gradient_push->reply_slot;
    r2.slot_sequence = region->Write(gradient_push->reply_slot, std::as_bytes(std::span(next)));
    f.server.Reply(p3, ReplyTo(push, r2));
  });
  Status pulled = f.client->Pull(0, weights);
  EXPECT_TRUE(pulled.ok()) << pulled.ToString();
  EXPECT_EQ(weights, std::vector<float>(keys, 3.0f)) << "only the reply whose sequence held is taken";
  EXPECT_TRUE(f.client->Push(0, gradient, 1, DataMark{}).ok());
  EXPECT_TRUE(f.client->Pull(1, weights).ok());
  EXPECT_EQ(weights, std::vector<float>(keys, 4.0f));
  server.join();
}

TEST(PsClient, AServerThatDeclinesGetsPayloadsInFrames) {
  Fixture f;
  const std::size_t keys = static_cast<std::size_t>(f.spec.num_params());
  std::vector<float> weights(keys), gradient(keys, 0.25f);
  std::thread server([&] {
    auto [peer, offer, none] = f.server.Next();
    ASSERT_TRUE(offer.As<msg::Control>());
    ASSERT_EQ(offer.As<msg::Control>()->kind, ControlKind::kShareMemory);
    f.server.Reply(peer, ErrorReply(offer, FailedPrecondition("not on this host")));
    auto [p1, pull, none1] = f.server.Next();
    ASSERT_TRUE(pull.As<msg::Pull>());
    EXPECT_EQ(pull.As<msg::Pull>()->reply_slot, 0) << "no slot to answer in";
    std::vector<float> w(keys, 2.0f);
    f.server.Reply(p1, ReplyTo(pull, PullReplyTo(pull)), &w);
    auto [p2, push, payload] = f.server.Next();
    ASSERT_TRUE(push.As<msg::Push>());
    EXPECT_EQ(push.As<msg::Push>()->payload_slot, 0);
    EXPECT_EQ(payload, gradient) << "the gradient travels in a frame";
    std::vector<float> next(keys, 5.0f);
    f.server.Reply(p2, ReplyTo(push, PullReplyTo(push)), &next);
  });
  EXPECT_TRUE(f.client->Pull(0, weights).ok());
  EXPECT_EQ(weights, std::vector<float>(keys, 2.0f));
  EXPECT_TRUE(f.client->Push(0, gradient, 1, DataMark{}).ok());
  EXPECT_TRUE(f.client->Pull(1, weights).ok());
  EXPECT_EQ(weights, std::vector<float>(keys, 5.0f));
  server.join();
}

// Frames in parts (cluster.chunk_kb 4: 1,024 keys): a push of 2,600 keys
// goes as three pushes of equal parts, in order, each asking for its own
// keys' weights; replies that come in another order are each copied into
// their own keys.
TEST(PsClient, APushInFramesGoesInPartsAndEachReplyFillsItsOwnKeys) {
  ModelOptions m;
  m.kind = ModelKind::kLinearRegression;
  const ModelSpec spec = std::move(ModelSpec::FromConfig(m, 2599)).value();
  ClusterOptions cluster;
  cluster.servers = 1;
  cluster.workers = 1;
  cluster.shared_memory = false;
  cluster.chunk_kb = 4;
  cluster.request_timeout_s = 20;
  cluster.retry_interval_s = 10;
  ScriptedServer server;
  auto client = std::move(PsClient::Connect(server.transport.get(), spec, cluster, 0, {server.socket->endpoint()})).value();
  const std::size_t keys = 2600;
  std::vector<float> weights(keys), gradient(keys);
  for (std::size_t i = 0; i < keys; ++i) gradient[i] = static_cast<float>(i);
  std::thread scripted([&] {
    auto [p0, pull, none] = server.Next();
    ASSERT_TRUE(pull.As<msg::Pull>());
    std::vector<float> zeros(keys, 0.0f);
    server.Reply(p0, ReplyTo(pull, PullReplyTo(pull)), &zeros);
    std::vector<std::tuple<std::string, WireHeader, std::vector<float>>> parts;
    for (int i = 0; i < 3; ++i) parts.push_back(server.Next());
    const int64_t bounds[4] = {0, 867, 1734, 2600};
    for (int i = 0; i < 3; ++i) {
      const auto* push = std::get<1>(parts[i]).As<msg::Push>();
      ASSERT_TRUE(push);
      EXPECT_EQ(push->key_begin, bounds[i]);
      EXPECT_EQ(push->key_end, bounds[i + 1]);
      EXPECT_TRUE(push->with_pull);
      EXPECT_EQ(std::get<2>(parts[i]),
                std::vector<float>(gradient.begin() + bounds[i], gradient.begin() + bounds[i + 1]));
    }
    for (int i = 3; i-- > 0;) {  // the last part answered first
      std::vector<float> w(std::get<2>(parts[i]).size());
      for (std::size_t k = 0; k < w.size(); ++k) w[k] = -static_cast<float>(bounds[i] + static_cast<int64_t>(k));
      server.Reply(std::get<0>(parts[i]), ReplyTo(std::get<1>(parts[i]), PullReplyTo(std::get<1>(parts[i]))), &w);
    }
  });
  ASSERT_TRUE(client->Pull(0, weights).ok());
  ASSERT_TRUE(client->Push(0, gradient, 1, DataMark{}).ok());
  Status pulled = client->Pull(1, weights);
  EXPECT_TRUE(pulled.ok()) << pulled.ToString();
  for (std::size_t i = 0; i < keys; ++i) ASSERT_EQ(weights[i], -static_cast<float>(i)) << "key " << i;
  EXPECT_EQ(client->wire_bytes().pushed, static_cast<int64_t>(keys * sizeof(float)));
  scripted.join();
}


// Overlapping steps (SSP) through frames: the client hands out its two
// send buffers in turn (GradientBuffer), pushes what was written there as
// it is, and hands a buffer out again only once the push sent from it has
// been answered (a restarted server may need it again): until then, no
// buffer, with the reason.
TEST(PsClient, OverlappingStepsWriteTheGradientIntoSendBuffersHeldUntilAnswered) {
  ModelOptions m;
  m.kind = ModelKind::kLinearRegression;
  const ModelSpec spec = std::move(ModelSpec::FromConfig(m, 7)).value();  // 8 keys
  ClusterOptions cluster;
  cluster.servers = 1;
  cluster.workers = 1;
  cluster.shared_memory = false;
  cluster.consistency = Consistency::kSsp;
  cluster.staleness = 1;
  cluster.request_timeout_s = 1;
  cluster.retry_interval_s = 10;
  ScriptedServer server;
  auto client = std::move(PsClient::Connect(server.transport.get(), spec, cluster, 0, {server.socket->endpoint()})).value();
  std::mutex mu;
  std::condition_variable cv;
  bool refused = false;
  const std::vector<float> zeros(8, 0.0f);
  std::thread scripted([&] {
    for (int v = 0; v < 2; ++v) {  // step 0's weights, and step 1's (no push asks for them)
      auto [peer, pull, none] = server.Next();
      ASSERT_TRUE(pull.As<msg::Pull>());
      server.Reply(peer, ReplyTo(pull, PullReplyTo(pull)), &zeros);
    }
    auto push0 = server.Next();
    auto push1 = server.Next();
    for (int step = 0; step < 2; ++step) {
      const auto& [peer, h, payload] = step == 0 ? push0 : push1;
      ASSERT_TRUE(h.As<msg::Push>());
      EXPECT_EQ(h.As<msg::Push>()->step, step);
      EXPECT_EQ(payload, std::vector<float>(8, static_cast<float>(step + 1)));
    }
    {
      std::unique_lock lock(mu);
      ASSERT_TRUE(cv.wait_for(lock, 20s, [&] { return refused; }));
    }
    for (const auto* p : {&push0, &push1})
      server.Reply(std::get<0>(*p), ReplyTo(std::get<1>(*p), PullReplyTo(std::get<1>(*p))), &zeros);
  });
  std::vector<float> weights(8);
  ASSERT_TRUE(client->Pull(0, weights).ok());
  auto first = client->GradientBuffer();
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 8u);
  std::fill(first->begin(), first->end(), 1.0f);
  ASSERT_TRUE(client->Push(0, *first, 1, DataMark{}).ok());
  ASSERT_TRUE(client->Pull(1, weights).ok());
  auto second = client->GradientBuffer();
  ASSERT_TRUE(second.ok());
  EXPECT_NE(second->data(), first->data());
  std::fill(second->begin(), second->end(), 2.0f);
  ASSERT_TRUE(client->Push(1, *second, 1, DataMark{}).ok());
  // Push 0 is unanswered: its buffer is not handed out.
  auto held = client->GradientBuffer();
  EXPECT_EQ(held.status().code(), StatusCode::kDeadlineExceeded) << held.status().ToString();
  {
    std::lock_guard lock(mu);
    refused = true;
  }
  cv.notify_all();
  ASSERT_TRUE(client->Pull(2, weights).ok());  // takes push 0's answer
  auto again = client->GradientBuffer();
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->data(), first->data());
  EXPECT_EQ(client->wire_bytes().pushed, static_cast<int64_t>(2 * 8 * sizeof(float)));
  scripted.join();
}

}  // namespace
}  // namespace psforge
