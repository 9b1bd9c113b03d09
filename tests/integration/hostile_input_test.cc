// Hostile input against a real ps-server: every bad message gets an error
// reply (a duplicate push an ack marked duplicate), the server keeps serving,
// the bad messages are counted, and its weights stay bit-identical to a twin
// server that saw only the good messages.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <regex>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/shared_region.h"
#include "common/transport.h"
#include "common/wire.h"
#include "tests/integration/cluster_fixture.h"
#include "tests/integration/raw_client.h"

namespace psforge {
namespace {

using testing::RawClient;
using testing::Reply;

using namespace std::chrono_literals;

const std::string kConfig = PSFORGE_SOURCE_DIR "/configs/linear_regression.yaml";
constexpr int64_t kKeys = 9;  // 8 weights and a bias

// A request of worker 0 in a job that started afresh.
WireHeader Request(MessageBody body) {
  WireHeader h;
  h.request_id = 1;
  h.sender = 0;
  h.generation = 1;
  h.body = std::move(body);
  return h;
}

WireHeader PushOf(int64_t step, int64_t begin = 0, int64_t end = kKeys, int slot = 0) {
  return Request(msg::Push{.step = step, .key_begin = begin, .key_end = end, .samples = 1, .payload_slot = slot});
}

WireHeader PullOf(int64_t version, int64_t begin = 0, int64_t end = kKeys, int reply_slot = 0) {
  return Request(msg::Pull{.version = version, .key_begin = begin, .key_end = end, .reply_slot = reply_slot});
}

// The text of an error reply ("" for any other kind).
std::string ErrorText(const Reply& r) {
  const auto* e = r.header.As<msg::Error>();
  return e ? e->message : std::string();
}

std::vector<float> Gradient(int64_t step) {
  std::vector<float> g(kKeys);
  for (int64_t i = 0; i < kKeys; ++i) g[i] = 0.1f * static_cast<float>((i + 3 * step) % 7) - 0.3f;
  return g;
}

TEST(HostileInput, BadMessagesAreRefusedCountedAndChangeNothing) {
  const std::vector<std::string> sets{"cluster.workers=1"};
  auto attacked = testing::StartCluster(kConfig, 1, sets);
  auto twin = testing::StartCluster(kConfig, 1, sets);
  auto transport = Transport::CreateZmq();
  RawClient a(transport.get(), attacked.servers[0].endpoint), b(transport.get(), twin.servers[0].endpoint);

  int bad = 0;
  auto expect_error = [&](Reply r, const std::string& what) {
    ++bad;
    EXPECT_EQ(r.header.kind(), MessageKind::kError) << what;
    EXPECT_FALSE(ErrorText(r).empty()) << what;
    return ErrorText(r);
  };
  std::mt19937_64 rng(7);

  // Shared memory: offers that are not a region of this host's worker are
  // declined, naming why; then a real one, through which the attacked
  // server gets its good pushes (the twin gets them in frames).
  auto offer = [&](SharedRegionRef ref) {
    return a.Send(Request(msg::Control{ControlKind::kShareMemory, 0, {}, ref}));
  };
  auto region = SharedRegion::Create(kKeys * sizeof(float));
  ASSERT_TRUE(region.ok()) << region.status().ToString();
  SharedRegionRef ref = (*region)->ref();
  const int plain_file = ::open(PSFORGE_SOURCE_DIR "/README.md", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(plain_file, 0);
  EXPECT_NE(expect_error(offer({::getpid(), plain_file, ref.token, ref.slot_bytes}), "regular file")
                .find("not a psforge shared region"), std::string::npos);
  ::close(plain_file);
  EXPECT_NE(expect_error(offer({ref.pid, ref.fd, ref.token + 1, ref.slot_bytes}), "wrong token").find("token"),
            std::string::npos);
  EXPECT_NE(expect_error(offer({ref.pid, ref.fd, ref.token, ref.slot_bytes + 4}), "wrong size").find("needs"),
            std::string::npos);
  EXPECT_NE(expect_error(offer({ref.pid, 9999, ref.token, ref.slot_bytes}), "no such fd").find("cannot see"),
            std::string::npos);
  EXPECT_NE(expect_error(a.Send(PushOf(0, 0, kKeys, 1)), "slot before an offer").find("shared no memory"),
            std::string::npos);
  Reply accepted = offer(ref);
  ASSERT_TRUE(accepted.header.As<msg::Control>()) << ErrorText(accepted);
  EXPECT_EQ(accepted.header.As<msg::Control>()->value, 1);
  auto push_in_slot = [&](int64_t step, const std::vector<float>& g, int slot) {
    std::memcpy((*region)->slot(slot).data(), g.data(), g.size() * sizeof(float));
    return a.Send(PushOf(step, 0, kKeys, slot));
  };

  for (int64_t step = 0; step < 5; ++step) {
    std::vector<float> g = Gradient(step);
    // Attacks before the good push of this step.
    std::vector<std::byte> noise(8 * (1 + rng() % 20));
    for (auto& x : noise) x = static_cast<std::byte>(rng());
    expect_error(a.SendFrames({noise}), "random bytes");
    std::vector<std::byte> header;
    EncodeHeader(PushOf(step), &header);
    expect_error(a.SendFrames({std::vector<std::byte>(header.begin(), header.end() - 8)}), "truncated");
    expect_error(a.SendFrames({{}}), "empty frame");
    expect_error(a.SendFrames({std::vector<std::byte>(kMaxHeaderBytes + 64)}), "oversized header");
    expect_error(a.SendFrames({header}), "push without payload");
    std::vector<float> short_g(g.begin(), g.end() - 1);
    EXPECT_NE(expect_error(a.Send(PushOf(step), &short_g), "short").find("bytes, expected"),
              std::string::npos);
    EXPECT_NE(expect_error(a.Send(PushOf(step, 0, kKeys + 5), &g), "range").find("owns"),
              std::string::npos);
    auto nan_g = g;
    nan_g[step % kKeys] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_NE(expect_error(a.Send(PushOf(step), &nan_g), "nan").find("non-finite"),
              std::string::npos);
    auto inf_g = g;
    inf_g[0] = -std::numeric_limits<float>::infinity();
    expect_error(a.Send(PushOf(step), &inf_g), "inf");
    expect_error(a.Send(PushOf(step + 2), &g), "future step");
    WireHeader wrong_worker = PushOf(step);
    wrong_worker.sender = 9;
    expect_error(a.Send(wrong_worker, &g), "unknown worker");
    WireHeader stale = PushOf(step);
    stale.generation = 7;  // a worker of a generation the job abandoned (or never had)
    EXPECT_NE(expect_error(a.Send(stale, &g), "other generation").find("rejoin"), std::string::npos);
    WireHeader old = PushOf(step);
    old.version = kWireSchemaVersion + 1;
    EXPECT_NE(expect_error(a.Send(old, &g), "schema").find("schema version"), std::string::npos);
    expect_error(a.Send(Request(msg::PullReply{.version = step, .key_end = kKeys})), "reply kind to a server");
    // Rows of sparse tables this job does not have: refused by name, with
    // or without the payload frame they need.
    msg::Push sparse_push{.step = step, .key_end = kKeys, .samples = 1, .sparse = {{0, 2, 2}}};
    std::vector<float> with_rows = g;
    with_rows.insert(with_rows.end(), 33, 0.0f);
    EXPECT_NE(expect_error(a.Send(Request(sparse_push), &with_rows), "sparse push").find("no sparse tables"),
              std::string::npos);
    msg::Pull sparse_pull{.version = step, .key_end = kKeys, .sparse = {{1, 1, 1}}};
    EXPECT_NE(expect_error(a.Send(Request(sparse_pull)), "sparse pull without ids").find("with 1 frames, expected 2"),
              std::string::npos);
    std::vector<float> ids(1, 0.0f);
    EXPECT_NE(expect_error(a.Send(Request(sparse_pull), &ids), "sparse pull").find("no sparse tables"),
              std::string::npos);
    expect_error(a.Send(PullOf(step + 5)), "unreachable version");
    expect_error(a.Send(PullOf(step, 3, 100)), "pull outside range");
    EXPECT_NE(expect_error(push_in_slot(step, nan_g, 2), "nan in a slot").find("non-finite"), std::string::npos);
    expect_error(a.Send(PushOf(step, 0, kKeys + 1, 1)), "range beyond the slot");

    // The good push, to both; then its duplicate to the attacked one.
    Reply ra = step % 2 == 0 ? push_in_slot(step, g, 1 + static_cast<int>(step / 2 % 2))
                             : a.Send(PushOf(step), &g);
    Reply rb = b.Send(PushOf(step), &g);
    EXPECT_EQ(ra.header.kind(), MessageKind::kPushAck) << ErrorText(ra);
    EXPECT_EQ(rb.header.kind(), MessageKind::kPushAck) << ErrorText(rb);
    Reply dup = a.Send(PushOf(step), &g);
    ASSERT_TRUE(dup.header.As<msg::PushAck>()) << ErrorText(dup);
    EXPECT_TRUE(dup.header.As<msg::PushAck>()->duplicate);
  }

  Reply wa = a.Send(PullOf(5));
  Reply wb = b.Send(PullOf(5));
  ASSERT_TRUE(wa.header.As<msg::PullReply>()) << ErrorText(wa);
  ASSERT_TRUE(wb.header.As<msg::PullReply>()) << ErrorText(wb);
  EXPECT_EQ(wa.header.As<msg::PullReply>()->version, 5);
  ASSERT_EQ(wa.payload.size(), static_cast<std::size_t>(kKeys));
  EXPECT_EQ(std::memcmp(wa.payload.data(), wb.payload.data(), kKeys * sizeof(float)), 0)
      << "the attacked server's weights differ from its twin's";
  bool moved = false;
  for (float v : wb.payload) moved |= v != 0.0f;
  EXPECT_TRUE(moved) << "the good pushes were not applied";
  Reply ws = a.Send(PullOf(5, 0, kKeys, SharedRegion::kFirstWeightSlot));
  const auto* in_region = ws.header.As<msg::PullReply>();
  ASSERT_TRUE(in_region) << ErrorText(ws);
  ASSERT_EQ(in_region->payload_slot, SharedRegion::kFirstWeightSlot);
  EXPECT_TRUE(ws.payload.empty()) << "a reply in a slot carries no frame";
  std::vector<float> in_slot(kKeys);
  ASSERT_TRUE((*region)->Read(in_region->payload_slot, in_region->slot_sequence, std::as_writable_bytes(std::span(in_slot))));
  EXPECT_FALSE((*region)->Read(in_region->payload_slot, in_region->slot_sequence + 2,
                               std::as_writable_bytes(std::span(in_slot))))
      << "a sequence the slot was not written with reads as torn";
  EXPECT_EQ(std::memcmp(in_slot.data(), wb.payload.data(), kKeys * sizeof(float)), 0)
      << "the weights in the shared slot differ from the twin's";

  auto counters = testing::ServerStatsOf(a);
  int64_t counted = 0;
  for (const auto& [reason, n] : counters["errors"].items()) counted += n.get<int64_t>();
  EXPECT_EQ(counted, bad) << counters.dump();
  EXPECT_EQ(counters["duplicates"], 5);
  EXPECT_EQ(counters["updates"], 5);
  EXPECT_EQ(counters["shared_regions"], 1);
  testing::StopCluster(attacked);
  testing::StopCluster(twin);
}

}  // namespace
}  // namespace psforge

namespace psforge {
namespace {

// Sends `n` copies of `h` without waiting for replies, then drains what comes back.
void Flood(ClientSocket& socket, const WireHeader& h, int n) {
  std::vector<std::byte> frame;
  EncodeHeader(h, &frame);
  const OutFrame out{frame, nullptr};
  for (int i = 0; i < n; ++i) ASSERT_TRUE(socket.Send({&out, 1}).ok());
}

// Drains replies until none comes for `quiet`; how many there were.
int Drain(ClientSocket& socket, std::chrono::milliseconds quiet) {
  int n = 0;
  while (true) {
    auto m = socket.Receive(quiet);
    if (!m.ok() || !m->has_value()) return n;
    ++n;
  }
}

// Two connections abuse the coordinator of a running job, one with lease
// requests far over cluster.max_requests_per_s and one with registrations
// over cluster.max_registrations_per_s: each is cut off and logged with its
// address, gets no answer while cut off, and the job completes.
// 40 connections sending garbage to the coordinator: each refused and
// answered, counted in bad_messages, and logged as a few lines (the first
// refusal from an address, then a count every 10 s), not one line each.
TEST(HostileInput, RefusalsFromOneAddressAreSummarisedNotLoggedOneByOne) {
  auto cluster = testing::StartCluster(kConfig, 1, {"cluster.workers=1"});
  auto transport = Transport::CreateZmq();
  std::mt19937_64 rng(11);
  int refused = 0;
  for (int c = 0; c < 40; ++c) {
    RawClient garbage(transport.get(), cluster.coordinator_endpoint);
    for (int i = 0; i < 30; ++i) {
      std::vector<std::byte> noise(8 * (1 + rng() % 20));
      for (auto& x : noise) x = static_cast<std::byte>(rng());
      refused += garbage.SendFrames({noise}).header.kind() == MessageKind::kError;
    }
  }
  EXPECT_EQ(refused, 1200);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  std::smatch m;
  const std::regex summary("refused (\\d+) more messages from 127\\.0\\.0\\.1");
  std::string err = cluster.coordinator->Stderr();
  while (!std::regex_search(err, m, summary) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);  // polling a log file for a line, with a deadline
    err = cluster.coordinator->Stderr();
  }
  ASSERT_TRUE(std::regex_search(err, m, summary)) << err;
  int lines = 0;
  for (std::size_t at = err.find("refused a "); at != std::string::npos; at = err.find("refused a ", at + 1)) ++lines;
  EXPECT_GE(lines, 1);
  EXPECT_LE(lines, 4) << err;
  EXPECT_NE(err.find("refused a message from 127.0.0.1"), std::string::npos) << err;
  testing::StopCluster(cluster);
}

TEST(HostileInput, AFloodingConnectionIsCutOffAndTheJobCompletes) {
  auto cluster = testing::StartCluster(kConfig, 1,
                                       {"cluster.workers=1", "cluster.max_requests_per_s=300",
                                        "cluster.max_registrations_per_s=3", "cluster.cutoff_s=60"});
  auto transport = Transport::CreateZmq();
  auto leases = transport->Connect(cluster.coordinator_endpoint);
  auto registrations = transport->Connect(cluster.coordinator_endpoint);
  ASSERT_TRUE(leases.ok() && registrations.ok());
  WireHeader lease;
  lease.body = msg::LeaseRequest{};
  lease.generation = 1;
  Flood(**leases, lease, 2000);
  WireHeader join;  // a server that does not say where it listens: refused, but counted first
  join.body = msg::Register{.role = PeerRole::kServer};
  Flood(**registrations, join, 20);
  for (const char* what : {"messages", "registrations"}) {
    const std::regex cut(std::string("cut off a connection from (\\S+): more than \\d+ ") + what + " a second");
    auto address = cluster.coordinator->WaitForLine(cut, 30s);
    ASSERT_TRUE(address) << cluster.coordinator->Stdout();
    EXPECT_NE(address->find("127.0.0.1"), std::string::npos) << *address;
    std::printf("over its %s limit: cut off %s\n", what, address->c_str());
  }
  // Every answer it got came before the cut: a second's worth, and what
  // refilled while it sent, far from the 2000 sent.
  EXPECT_LE(Drain(**leases, 500ms), 450);
  Flood(**leases, lease, 1);
  EXPECT_EQ(Drain(**leases, 1000ms), 0) << "a cut-off connection was answered";
  // The coordinator serves everyone else: a worker joins and the job completes.
  auto worker = testing::StartWorker(cluster);
  EXPECT_EQ(worker->Wait(180s), std::optional<int>(0)) << worker->Stderr() << cluster.coordinator->Stdout();
  testing::ExpectClusterExits(cluster);
}

}  // namespace
}  // namespace psforge
