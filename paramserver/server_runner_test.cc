#include "paramserver/server_runner.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>

namespace psforge {
namespace {

TEST(AdvertisedEndpoint, AWildcardBecomesTheAddressWorkersCanReach) {
  // --advertise wins; then the route to the coordinator (loopback here).
  EXPECT_EQ(AdvertisedEndpoint("tcp://0.0.0.0:5000", "node7", "tcp://127.0.0.1:7070"), "tcp://node7:5000");
  EXPECT_EQ(AdvertisedEndpoint("tcp://*:5000", "", "tcp://127.0.0.1:7070"), "tcp://127.0.0.1:5000");
  EXPECT_EQ(AdvertisedEndpoint("tcp://0.0.0.0:5000", "", "tcp://[::1]:7070"), "tcp://[::1]:5000");
  // No route (not tcp): the host's name.
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  EXPECT_EQ(AdvertisedEndpoint("tcp://0.0.0.0:5000", "", "ipc:///tmp/c"), std::string("tcp://") + name + ":5000");
  // Anything else is reachable as it is.
  EXPECT_EQ(AdvertisedEndpoint("tcp://127.0.0.1:5000", "node7", "tcp://127.0.0.1:7070"), "tcp://127.0.0.1:5000");
  EXPECT_EQ(AdvertisedEndpoint("ipc:///tmp/s", "", "tcp://127.0.0.1:7070"), "ipc:///tmp/s");
}

TEST(AddressTowards, IsThisHostsAddressOnTheRoute) {
  EXPECT_EQ(AddressTowards("tcp://127.0.0.1:7070"), "127.0.0.1");
  EXPECT_EQ(AddressTowards("tcp://localhost:7070").empty(), false);
  for (const char* bad : {"ipc:///tmp/c", "tcp://", "tcp://nohostport", "tcp://no-such-host.invalid:1"})
    EXPECT_EQ(AddressTowards(bad), "") << bad;
}

// No coordinator at the address: the server gives up after its connect
// timeout, naming the coordinator.
TEST(RunServer, GivesUpOnACoordinatorThatIsNotThere) {
  ServerOptions options;
  options.member.coordinator = "tcp://127.0.0.1:9";  // discard: nothing answers
  options.member.connect_timeout_s = 0.5;
  std::atomic<bool> stop{false};
  Status s = RunServer(options, stop, stdout);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("tcp://127.0.0.1:9"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace psforge
