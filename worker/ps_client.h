// PsClient: the ParameterClient of a worker in a cluster, over a Transport.
//
// Owns one ClientSocket per server; server i owns key range
// PartitionKeys(P, servers, i). Push sends each server its slice of the
// gradient buffer without copying (the transport reads the caller's buffer
// in place) and every server at once; Pull asks every server at once and
// copies each reply straight into its slice of the weight buffer. Before
// Pull returns, every gradient slice has been released by the transport
// and every push acknowledged, so the caller may overwrite the gradient.
// Every wait is bounded by cluster.request_timeout_s; a missing or failing
// server is an error naming its endpoint. Not thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/model_spec.h"
#include "common/transport.h"
#include "common/wire.h"
#include "worker/parameter_client.h"

namespace psforge {

class PsClient final : public ParameterClient {
 public:
  static Result<std::unique_ptr<PsClient>> Connect(Transport* transport, const ModelSpec& spec,
                                                   const ClusterOptions& cluster, uint32_t worker,
                                                   const std::vector<std::string>& endpoints);
  ~PsClient() override;

  Status Pull(int64_t step, std::span<float> weights) override;
  Status Push(int64_t step, std::span<const float> gradient) override;

 private:
  struct Server {
    std::unique_ptr<ClientSocket> socket;
    KeyRange range;
    int64_t unacked_pushes = 0;
    std::string last_push;  // what an error reply to a push refers to
  };

  PsClient(const ClusterOptions& cluster, uint32_t worker, std::vector<Server> servers);
  Status Send(Server& s, const WireHeader& h, OutFrame payload);
  // Receives from `s` until the reply to `request_id` (copied into `dest`
  // when it is a pull reply) has arrived and all pushes are acknowledged.
  // A pull reply older than the consistency bound for `wanted` is refused.
  Status AwaitReply(Server& s, uint64_t request_id, int64_t wanted, std::span<float> dest,
                    std::chrono::steady_clock::time_point deadline);
  Status AwaitReleasedGradients(std::chrono::steady_clock::time_point deadline);

  const ClusterOptions cluster_;
  const uint32_t worker_;
  std::vector<Server> servers_;
  uint64_t next_request_ = 1;
  std::vector<std::byte> encode_buffer_;
  std::vector<uint64_t> decode_scratch_;
  // Gradient slices the transport still holds (released from its I/O thread).
  std::mutex in_flight_mu_;
  std::condition_variable in_flight_cv_;
  int64_t in_flight_ = 0;  // guarded by in_flight_mu_
};

}  // namespace psforge
