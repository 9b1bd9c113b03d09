// A test client that speaks the wire protocol frame by frame, so tests can
// send anything, well-formed or not, to a real server.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/transport.h"
#include "common/wire.h"

namespace psforge::testing {

struct Reply {
  WireHeader header;
  std::vector<float> payload;
};

class RawClient {
 public:
  RawClient(Transport* t, const std::string& endpoint) : socket_(std::move(t->Connect(endpoint)).value()) {}

  Reply SendFrames(const std::vector<std::vector<std::byte>>& frames) {
    std::vector<OutFrame> out;
    for (const auto& f : frames) out.push_back({f, nullptr});
    EXPECT_TRUE(socket_->Send(out).ok());
    auto m = socket_->Receive(std::chrono::seconds(10));
    EXPECT_TRUE(m.ok() && m->has_value()) << "no reply: the server stopped serving";
    if (!m.ok() || !m->has_value()) return {};
    std::vector<uint64_t> scratch;
    auto h = DecodeHeader((*m)->frames[0]->bytes(), &scratch);
    EXPECT_TRUE(h.ok()) << h.status().ToString();
    Reply r{*h, {}};
    if ((*m)->frames.size() > 1) {
      auto b = (*m)->frames[1]->bytes();
      r.payload.resize(b.size() / 4);
      std::memcpy(r.payload.data(), b.data(), b.size());
    }
    return r;
  }

  Reply Send(const WireHeader& h, const std::vector<float>* payload = nullptr) {
    std::vector<std::vector<std::byte>> frames(1);
    EncodeHeader(h, &frames[0]);
    if (payload) {
      auto b = std::as_bytes(std::span(*payload));
      frames.emplace_back(b.begin(), b.end());
    }
    return SendFrames(frames);
  }

 private:
  std::unique_ptr<ClientSocket> socket_;
};

// The server's counters (ServerStats as JSON).
inline nlohmann::json ServerStatsOf(RawClient& client) {
  WireHeader h;
  h.body = msg::Control{ControlKind::kStats, 0, {}, {}};
  const Reply reply = client.Send(h);
  const auto* stats = reply.header.As<msg::Control>();
  EXPECT_TRUE(stats) << "stats answered with a " << MessageKindName(reply.header.kind());
  return nlohmann::json::parse(stats ? stats->text : std::string("{}"));
}

}  // namespace psforge::testing
