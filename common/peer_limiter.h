// PeerLimiter: rate limits per peer connection for a server loop (the
// coordinator's), so that one peer, abusive or broken, cannot make it spend
// its time or memory on that peer alone.
//
// Each peer (a ZeroMQ routing id: one connection) has a token bucket per
// class of message that refills at that class's rate and holds one second's
// worth. A peer that finds a bucket empty is cut off for `cutoff`: its
// messages are dropped unanswered (answering is work done for it), and the
// caller logs it once (Admit says kCutOff the first time). The peer table is
// bounded: peers silent for a minute are forgotten, and at most kMaxPeers are
// kept (the longest silent go first). Not thread-safe: the loop owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace psforge {

class PeerLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kMaxPeers = 65536;

  enum class Verdict {
    kAdmit,    // handle it
    kCutOff,   // drop it: this message cut the peer off (log it)
    kDropped,  // drop it: the peer was already cut off
  };

  // `per_second[c]`: the rate of class c.
  PeerLimiter(std::vector<double> per_second, Clock::duration cutoff);

  Verdict Admit(const std::string& peer, std::size_t message_class, Clock::time_point now);

  int64_t peers_cut_off() const { return peers_cut_off_; }
  int64_t messages_dropped() const { return messages_dropped_; }
  std::size_t peers() const { return peers_.size(); }

 private:
  struct Peer {
    std::vector<double> tokens;
    Clock::time_point last{}, cut_until{};
  };
  void Forget(Clock::time_point now);

  std::vector<double> per_second_;
  Clock::duration cutoff_;
  std::unordered_map<std::string, Peer> peers_;
  Clock::time_point next_sweep_{};
  int64_t peers_cut_off_ = 0, messages_dropped_ = 0;
};

}  // namespace psforge
