#include "common/peer_limiter.h"

#include <gtest/gtest.h>

namespace psforge {
namespace {

using namespace std::chrono_literals;
using V = PeerLimiter::Verdict;

TEST(PeerLimiter, APeerOverItsRateIsCutOffForTheCutoffAndOthersAreNot) {
  PeerLimiter limiter({100, 2}, 10s);
  const auto t0 = PeerLimiter::Clock::time_point{} + 1h;
  // A second's worth at once, then the next is one too many.
  for (int i = 0; i < 100; ++i) ASSERT_EQ(limiter.Admit("flood", 0, t0), V::kAdmit) << i;
  EXPECT_EQ(limiter.Admit("flood", 0, t0), V::kCutOff);
  EXPECT_EQ(limiter.Admit("flood", 0, t0 + 1s), V::kDropped);
  EXPECT_EQ(limiter.Admit("flood", 1, t0 + 9s), V::kDropped);
  EXPECT_EQ(limiter.Admit("member", 0, t0 + 1s), V::kAdmit);
  // The cutoff over, it may send again at its rate.
  EXPECT_EQ(limiter.Admit("flood", 0, t0 + 10s), V::kAdmit);
  EXPECT_EQ(limiter.peers_cut_off(), 1);
  EXPECT_EQ(limiter.messages_dropped(), 3);
}

TEST(PeerLimiter, EachClassHasItsOwnRateAndTokensRefill) {
  PeerLimiter limiter({1000, 2}, 5s);
  const auto t0 = PeerLimiter::Clock::time_point{} + 1h;
  EXPECT_EQ(limiter.Admit("w", 1, t0), V::kAdmit);
  EXPECT_EQ(limiter.Admit("w", 1, t0), V::kAdmit);
  EXPECT_EQ(limiter.Admit("w", 0, t0), V::kAdmit);
  // Half a second refills one registration.
  EXPECT_EQ(limiter.Admit("w", 1, t0 + 500ms), V::kAdmit);
  EXPECT_EQ(limiter.Admit("w", 1, t0 + 500ms), V::kCutOff);
  // A steady rate under the limit is never cut off.
  PeerLimiter steady({100}, 5s);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(steady.Admit("w", 0, t0 + i * 11ms), V::kAdmit) << i;
}

TEST(PeerLimiter, ThePeerTableStaysBounded) {
  PeerLimiter limiter({10}, 5s);
  const auto t0 = PeerLimiter::Clock::time_point{} + 1h;
  for (std::size_t i = 0; i < PeerLimiter::kMaxPeers + 10; ++i)
    ASSERT_EQ(limiter.Admit("peer" + std::to_string(i), 0, t0 + i * 1us), V::kAdmit);
  // Every one was admitted, none cut off: the table made room.
  EXPECT_EQ(limiter.peers_cut_off(), 0);
  EXPECT_LE(limiter.peers(), PeerLimiter::kMaxPeers);
}

}  // namespace
}  // namespace psforge
