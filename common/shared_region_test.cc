#include "common/shared_region.h"

#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "common/ip_address.h"

namespace psforge {
namespace {

TEST(LocalEndpoint, NamesThisHostOnly) {
  EXPECT_TRUE(LocalEndpoint("ipc:///tmp/psforge.sock"));
  EXPECT_TRUE(LocalEndpoint("tcp://127.0.0.1:7070"));
  EXPECT_TRUE(LocalEndpoint("tcp://localhost:7070"));
  EXPECT_TRUE(LocalEndpoint("tcp://[::1]:7070"));
  EXPECT_FALSE(LocalEndpoint("tcp://192.0.2.7:7070"));  // TEST-NET-1: no host has it
  EXPECT_FALSE(LocalEndpoint("tcp://node1:7070"));
  EXPECT_FALSE(LocalEndpoint("tcp://:7070"));
  EXPECT_FALSE(LocalEndpoint("udp://127.0.0.1:7070"));
  // An address of one of this host's interfaces.
  ifaddrs* list = nullptr;
  ASSERT_EQ(getifaddrs(&list), 0);
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    sockaddr_storage a{};
    std::memcpy(&a, i->ifa_addr, sizeof(sockaddr_in));
    EXPECT_TRUE(LocalEndpoint("tcp://" + IpText(a) + ":7070")) << IpText(a);
  }
  freeifaddrs(list);
}

TEST(SharedRegion, AnotherMappingSeesTheSlotsAndTheSeqlockRefusesOtherSequences) {
  auto created = SharedRegion::Create(1000);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  auto attached = SharedRegion::Attach((*created)->ref());
  ASSERT_TRUE(attached.ok()) << attached.status().ToString();
  auto& worker = **created;
  auto& server = **attached;
  ASSERT_EQ(server.slot(1).size(), 1000u);
  std::fill(worker.slot(2).begin(), worker.slot(2).end(), std::byte{7});
  EXPECT_EQ(server.slot(2)[999], std::byte{7}) << "the two mappings are one memory";
  EXPECT_EQ(server.slot(1)[0], std::byte{0});

  std::vector<std::byte> weights(1000, std::byte{3}), out(1000);
  const uint64_t sequence = server.Write(3, weights);
  EXPECT_EQ(sequence % 2, 0u);
  EXPECT_TRUE(worker.Read(3, sequence, out));
  EXPECT_EQ(out, weights);
  EXPECT_FALSE(worker.Read(3, sequence - 2, out)) << "a reply's sequence after a later write";
  EXPECT_FALSE(worker.Read(3, sequence - 1, out)) << "an odd sequence is a write in progress";
  EXPECT_FALSE(worker.Read(4, sequence, out)) << "another slot";
  std::vector<std::byte> too_big(1001);
  EXPECT_FALSE(worker.Read(3, sequence, too_big));
  const uint64_t next = server.Write(3, weights);
  EXPECT_GT(next, sequence);
  EXPECT_FALSE(worker.Read(3, sequence, out));
  EXPECT_TRUE(worker.Read(3, next, out));
}

TEST(SharedRegion, AttachRefusesWhatIsNotAnOfferedRegion) {
  auto created = SharedRegion::Create(64);
  ASSERT_TRUE(created.ok());
  SharedRegionRef ref = (*created)->ref();
  auto expect_refused = [](const SharedRegionRef& r, const std::string& why) {
    auto a = SharedRegion::Attach(r);
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), StatusCode::kFailedPrecondition);
    EXPECT_NE(a.status().message().find(why), std::string::npos) << a.status().message();
  };
  expect_refused({ref.pid, ref.fd, ref.token ^ 1, ref.slot_bytes}, "token");
  expect_refused({ref.pid, ref.fd, ref.token, ref.slot_bytes + 4096}, "does not hold");
  expect_refused({ref.pid, 10000, ref.token, ref.slot_bytes}, "cannot see");
  expect_refused({0, ref.fd, ref.token, ref.slot_bytes}, "not a shared region");
  expect_refused({ref.pid, ref.fd, ref.token, -1}, "not a shared region");
  char path[] = "/tmp/psforge-region-XXXXXX";
  const int plain = ::mkstemp(path);
  ASSERT_GE(plain, 0);
  ::unlink(path);
  expect_refused({ref.pid, plain, ref.token, ref.slot_bytes}, "not a psforge shared region");
  ::close(plain);
}

// A reader racing a writer: every read the seqlock accepts is one whole write.
TEST(SharedRegion, AcceptedReadsAreNeverTorn) {
  constexpr std::size_t kFloats = 1 << 16;
  auto created = SharedRegion::Create(kFloats * sizeof(float));
  ASSERT_TRUE(created.ok());
  auto attached = SharedRegion::Attach((*created)->ref());
  ASSERT_TRUE(attached.ok());
  std::atomic<uint64_t> last{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::vector<float> values(kFloats);
    for (int round = 1; !stop; ++round) {
      std::fill(values.begin(), values.end(), static_cast<float>(round));
      last = (*attached)->Write(3, std::as_bytes(std::span(values)));
    }
  });
  std::vector<float> out(kFloats);
  int accepted = 0, refused = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((accepted < 50 || accepted + refused < 500) && std::chrono::steady_clock::now() < deadline) {
    const uint64_t sequence = last.load();
    if (sequence == 0) continue;  // the first write is not done yet
    if (!(*created)->Read(3, sequence, std::as_writable_bytes(std::span(out)))) {
      ++refused;
      continue;
    }
    ++accepted;
    ASSERT_TRUE(std::all_of(out.begin(), out.end(), [&](float v) { return v == out[0]; }))
        << "a torn read was accepted";
  }
  stop = true;
  writer.join();
  EXPECT_GE(accepted, 50) << refused << " reads refused";
}

}  // namespace
}  // namespace psforge
