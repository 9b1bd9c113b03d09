#include "common/fault_transport.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <random>
#include <sstream>

#include "common/clock.h"

namespace psforge {
namespace {


// A received frame's bytes, copied (a duplicate of a message).
class CopiedFrame final : public InFrame {
 public:
  explicit CopiedFrame(std::span<const std::byte> b) : bytes_(b.begin(), b.end()) {}
  std::span<const std::byte> bytes() const override { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

InMessage Copy(const InMessage& m) {
  InMessage c;
  c.peer = m.peer;
  for (const auto& f : m.frames) c.frames.push_back(std::make_unique<CopiedFrame>(f->bytes()));
  return c;
}

class FaultyClientSocket final : public ClientSocket {
 public:
  FaultyClientSocket(std::unique_ptr<ClientSocket> inner, const FaultOptions& f, uint64_t seed)
      : inner_(std::move(inner)), f_(f), random_(seed) {}

  const std::string& endpoint() const override { return inner_->endpoint(); }

  Status Send(std::span<const OutFrame> frames) override {
    PSF_RETURN_IF_ERROR(FlushOut());
    if (Chance(f_.drop)) return Status::Ok();  // the caller's owners release the bytes
    const int copies = Chance(f_.duplicate) ? 2 : 1;
    for (int i = 0; i < copies; ++i) {
      if (!Chance(f_.delay)) {
        PSF_RETURN_IF_ERROR(inner_->Send(frames));
        continue;
      }
      HeldOut held{Clock::now() + Delay(), {}};
      // A copy: the caller's bytes are released as if sent (it may wait for
      // that), and reused.
      for (const OutFrame& f : frames) {
        auto copy = std::make_shared<std::vector<std::byte>>(f.bytes.begin(), f.bytes.end());
        held.frames.push_back({std::span<const std::byte>(*copy), copy});
      }
      out_.push_back(std::move(held));
    }
    return Status::Ok();
  }

  Result<std::optional<InMessage>> Receive(std::chrono::milliseconds timeout) override {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      PSF_RETURN_IF_ERROR(FlushOut());
      const auto now = Clock::now();
      for (auto it = in_.begin(); it != in_.end(); ++it) {
        if (it->first > now) continue;
        InMessage m = std::move(it->second);
        in_.erase(it);
        return std::optional<InMessage>(std::move(m));
      }
      if (now >= deadline) return std::optional<InMessage>();
      auto until = deadline;
      for (const auto& h : out_) until = std::min(until, h.due);
      for (const auto& h : in_) until = std::min(until, h.first);
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(until - now);
      PSF_ASSIGN_OR_RETURN(auto m, inner_->Receive(std::max(wait, std::chrono::milliseconds(1))));
      if (!m || Chance(f_.drop)) continue;
      if (Chance(f_.duplicate)) in_.emplace_back(Clock::now(), Copy(*m));
      if (Chance(f_.delay)) {
        in_.emplace_back(Clock::now() + Delay(), std::move(*m));
        continue;
      }
      return m;
    }
  }

 private:
  struct HeldOut {
    Clock::time_point due;
    std::vector<OutFrame> frames;
  };

  bool Chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(random_) < p; }
  Clock::duration Delay() {
    return std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double, std::milli>(std::uniform_real_distribution<double>(0, f_.delay_ms)(random_)));
  }
  // Sends the held messages whose time has come.
  Status FlushOut() {
    const auto now = Clock::now();
    for (auto it = out_.begin(); it != out_.end();) {
      if (it->due > now) {
        ++it;
        continue;
      }
      Status s = inner_->Send(it->frames);
      it = out_.erase(it);
      PSF_RETURN_IF_ERROR(s);
    }
    return Status::Ok();
  }

  std::unique_ptr<ClientSocket> inner_;
  const FaultOptions f_;
  std::mt19937_64 random_;
  std::deque<HeldOut> out_;
  std::deque<std::pair<Clock::time_point, InMessage>> in_;
};

class FaultyTransport final : public Transport {
 public:
  FaultyTransport(std::unique_ptr<Transport> inner, const FaultOptions& f) : inner_(std::move(inner)), f_(f) {}
  Result<std::unique_ptr<ServerSocket>> Bind(const std::string& endpoint) override { return inner_->Bind(endpoint); }
  Result<std::unique_ptr<ClientSocket>> Connect(const std::string& endpoint, const std::string& server_key) override {
    PSF_ASSIGN_OR_RETURN(auto socket, inner_->Connect(endpoint, server_key));
    // Each socket its own stream of faults, fixed by the seed.
    const uint64_t seed = f_.seed * 0x9E3779B97F4A7C15ull + sockets_.fetch_add(1);
    return std::unique_ptr<ClientSocket>(new FaultyClientSocket(std::move(socket), f_, seed));
  }
  std::string public_key() const override { return inner_->public_key(); }
  std::string cluster_key(const std::string& name) const override { return inner_->cluster_key(name); }
  bool is_cluster_key(const std::string& key) const override { return inner_->is_cluster_key(key); }

 private:
  std::unique_ptr<Transport> inner_;
  const FaultOptions f_;
  std::atomic<uint64_t> sockets_{0};
};

}  // namespace

Result<FaultOptions> ParseFaultOptions(const std::string& spec) {
  FaultOptions f;
  if (spec == "none") return f;
  std::stringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    double v = 0;
    try {
      std::size_t used = 0;
      v = std::stod(value, &used);
      if (used != value.size()) throw std::invalid_argument(value);
    } catch (const std::exception&) {
      return InvalidArgument("faults: '" + item + "' is not field=number");
    }
    if (key == "drop" || key == "duplicate" || key == "delay") {
      if (v < 0 || v > 1) return InvalidArgument("faults: " + key + "=" + value + " is not a probability in [0, 1]");
      (key == "drop" ? f.drop : key == "duplicate" ? f.duplicate : f.delay) = v;
    } else if (key == "delay_ms" || key == "write_stall_ms") {
      if (v < 0) return InvalidArgument("faults: " + key + "=" + value + " is negative");
      (key == "delay_ms" ? f.delay_ms : f.write_stall_ms) = v;
    } else if (key == "seed") {
      f.seed = static_cast<uint64_t>(v);
    } else if (key == "die_mid_push") {
      if (v < 1 || v != std::floor(v)) return InvalidArgument("faults: die_mid_push=" + value + " is not a step >= 1");
      f.die_mid_push = static_cast<int64_t>(v);
    } else {
      return InvalidArgument("faults: unknown field '" + key + "' (drop, duplicate, delay, delay_ms, seed, write_stall_ms, die_mid_push)");
    }
  }
  return f;
}

std::unique_ptr<Transport> WithFaults(std::unique_ptr<Transport> inner, const FaultOptions& faults) {
  return std::make_unique<FaultyTransport>(std::move(inner), faults);
}

}  // namespace psforge
