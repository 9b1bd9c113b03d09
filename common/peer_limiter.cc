#include "common/peer_limiter.h"

#include <algorithm>

namespace psforge {

PeerLimiter::PeerLimiter(std::vector<double> per_second, Clock::duration cutoff)
    : per_second_(std::move(per_second)), cutoff_(cutoff) {}

PeerLimiter::Verdict PeerLimiter::Admit(const std::string& peer, std::size_t message_class, Clock::time_point now) {
  if (now >= next_sweep_ || peers_.size() >= kMaxPeers) Forget(now);
  auto [it, fresh] = peers_.try_emplace(peer);
  Peer& p = it->second;
  if (fresh) p.tokens = per_second_;  // a full second's worth
  const double elapsed = std::chrono::duration<double>(now - p.last).count();
  if (!fresh && elapsed > 0)
    for (std::size_t c = 0; c < p.tokens.size(); ++c)
      p.tokens[c] = std::min(per_second_[c], p.tokens[c] + elapsed * per_second_[c]);
  p.last = now;
  if (now < p.cut_until) {
    ++messages_dropped_;
    return Verdict::kDropped;
  }
  double& tokens = p.tokens.at(message_class);
  if (tokens >= 1) {
    tokens -= 1;
    return Verdict::kAdmit;
  }
  p.cut_until = now + cutoff_;
  ++peers_cut_off_;
  ++messages_dropped_;
  return Verdict::kCutOff;
}

void PeerLimiter::Forget(Clock::time_point now) {
  next_sweep_ = now + std::chrono::seconds(10);
  std::erase_if(peers_, [&](const auto& e) {
    return e.second.cut_until <= now && now - e.second.last > std::chrono::minutes(1);
  });
  if (peers_.size() < kMaxPeers) return;
  // Still full: the longest silent half goes.
  std::vector<Clock::time_point> lasts;
  for (const auto& [peer, p] : peers_) lasts.push_back(p.last);
  std::nth_element(lasts.begin(), lasts.begin() + static_cast<std::ptrdiff_t>(lasts.size() / 2), lasts.end());
  const auto median = lasts[lasts.size() / 2];
  std::erase_if(peers_, [&](const auto& e) { return e.second.last < median; });
}

}  // namespace psforge
