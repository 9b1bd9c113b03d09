#include "common/transport.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <thread>

#include "common/fault_transport.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;

std::span<const std::byte> Bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }
std::string Text(const InFrame& f) { return {reinterpret_cast<const char*>(f.bytes().data()), f.bytes().size()}; }

class TransportTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TransportTest, RequestReplyWithZeroCopyPayload) {
  auto t = Transport::CreateZmq();
  auto server = t->Bind(GetParam());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto client = t->Connect((*server)->endpoint());
  ASSERT_TRUE(client.ok());

  auto payload = std::make_shared<std::vector<float>>(100000, 1.5f);
  std::weak_ptr<std::vector<float>> watch = payload;
  std::string header = "header";
  OutFrame frames[] = {{Bytes(header), nullptr},
                       {std::as_bytes(std::span(*payload)), payload}};
  payload.reset();  // the transport now keeps it alive
  ASSERT_TRUE((*client)->Send(frames).ok());
  frames[1].owner.reset();

  auto got = (*server)->Receive(5s);
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  InMessage& m = **got;
  ASSERT_EQ(m.frames.size(), 2u);
  EXPECT_EQ(Text(*m.frames[0]), "header");
  ASSERT_EQ(m.frames[1]->bytes().size(), 400000u);
  float v;
  std::memcpy(&v, m.frames[1]->bytes().data() + 4 * 99999, 4);
  EXPECT_EQ(v, 1.5f);
  // inproc:// hands the sender's buffer itself to the receiver, so the owner
  // lives until the received frame is dropped; tcp:// releases it from the
  // sender's I/O thread after its write, which may come after delivery.
  m.frames[1].reset();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!watch.expired() && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_TRUE(watch.expired()) << "payload owner not released within 5 s";

  std::string reply = "reply";
  OutFrame r[] = {{Bytes(reply), nullptr}};
  ASSERT_TRUE((*server)->Send(m.peer, r).ok());
  auto back = (*client)->Receive(5s);
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ(Text(*(*back)->frames[0]), "reply");
}

TEST_P(TransportTest, ReceiveTimesOutWithNothing) {
  auto t = Transport::CreateZmq();
  auto server = t->Bind(GetParam());
  ASSERT_TRUE(server.ok());
  auto got = (*server)->Receive(20ms);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
}

TEST_P(TransportTest, SendToAnUnknownPeerFailsWithoutBlocking) {
  auto t = Transport::CreateZmq();
  auto server = t->Bind(GetParam());
  ASSERT_TRUE(server.ok());
  std::string x = "x";
  OutFrame f[] = {{Bytes(x), nullptr}};
  Status s = (*server)->Send("nobody", f);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
}

INSTANTIATE_TEST_SUITE_P(Endpoints, TransportTest,
                         ::testing::Values("tcp://127.0.0.1:0", "inproc://transport-test"));

TEST(Transport, BindingAPortInUseIsNamed) {
  auto t = Transport::CreateZmq();
  auto a = t->Bind("tcp://127.0.0.1:0");
  ASSERT_TRUE(a.ok());
  auto b = t->Bind((*a)->endpoint());
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find((*a)->endpoint()), std::string::npos) << b.status().message();
}

TEST(FaultTransport, OptionsAreParsedAndBadOnesNamed) {
  auto f = ParseFaultOptions("drop=0.5,duplicate=0.25,delay=1,delay_ms=3,seed=9,write_stall_ms=40");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->drop, 0.5);
  EXPECT_EQ(f->duplicate, 0.25);
  EXPECT_EQ(f->delay_ms, 3);
  EXPECT_EQ(f->seed, 9u);
  EXPECT_EQ(f->write_stall_ms, 40);
  EXPECT_FALSE(ParseFaultOptions("write_stall_ms=40")->any()) << "not a message fault";
  EXPECT_EQ(ParseFaultOptions("die_mid_push=250")->die_mid_push, 250);
  EXPECT_FALSE(ParseFaultOptions("die_mid_push=250")->any()) << "not a message fault";
  EXPECT_FALSE(ParseFaultOptions("die_mid_push=0").ok());
  EXPECT_FALSE(ParseFaultOptions("die_mid_push=2.5").ok());
  for (const char* bad : {"drop=2", "lose=0.1", "delay=x", "delay_ms=-1", "write_stall_ms=-3"}) {
    auto r = ParseFaultOptions(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find(std::string(bad).substr(0, 4)), std::string::npos) << r.status().message();
  }
}

// Every message duplicated and delayed: each arrives twice, none is lost,
// and the caller's bytes are free as soon as Send returns.
TEST(FaultTransport, DuplicatesAndDelaysButLosesNothing) {
  FaultOptions f;
  f.duplicate = 1;
  f.delay = 1;
  f.delay_ms = 5;
  auto t = WithFaults(Transport::CreateZmq(), f);
  auto server = t->Bind("inproc://fault-test");
  ASSERT_TRUE(server.ok());
  auto client = t->Connect("inproc://fault-test");
  ASSERT_TRUE(client.ok());
  for (int i = 0; i < 10; ++i) {
    std::string x = std::to_string(i);
    OutFrame frame[] = {{Bytes(x), nullptr}};
    ASSERT_TRUE((*client)->Send(frame).ok());
    x = "overwritten";
  }
  std::map<std::string, int> seen;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (seen.size() < 10 || std::any_of(seen.begin(), seen.end(), [](const auto& s) { return s.second < 2; })) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "messages lost";
    (void)(*client)->Receive(1ms);  // held messages go out from the client's own calls
    auto got = (*server)->Receive(1ms);
    ASSERT_TRUE(got.ok());
    if (!got->has_value()) continue;
    auto b = (**got).frames[0]->bytes();
    ++seen[std::string(reinterpret_cast<const char*>(b.data()), b.size())];
  }
  EXPECT_EQ(seen.size(), 10u);
}

}  // namespace
}  // namespace psforge
