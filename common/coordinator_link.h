// CoordinatorChannel: one member's (a server's or a worker's) socket to the
// coordinator of its job.
//
// A member knows only the coordinator's address. Join() registers and learns
// the job: its own id, the validated config, and the server map. Heartbeat()
// reports progress when one is due and takes in the coordinator's answers,
// which carry the membership state (stop, removed workers), so a lost
// message loses nothing. Call() is a request the coordinator answers (a data
// lease, an evaluation report). Farewell() is a member's last word. Every wait has a deadline, and an error names
// the coordinator's address. Not thread-safe: a member that heartbeats from
// another thread opens a second channel there (Attach).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/transport.h"
#include "common/wire.h"

namespace psforge {

struct JobAssignment {
  uint32_t id = 0;
  uint32_t generation = 0;  // the job's generation this member joined
  int64_t step = 0;         // worker: the step it starts at; server: the step to load
  JobConfig config;
  std::vector<std::string> servers;  // server i's endpoint; it owns the i-th key range
  std::vector<std::string> server_keys;  // CURVE: server i's public key (else empty)
};

// Payload bytes a worker moved: gradients and rows it pushed, weights and
// rows it pulled (headers excluded; through sockets or shared memory).
struct WireBytes {
  int64_t pushed = 0;
  int64_t pulled = 0;
};

// What a member reports in its heartbeats.
struct MemberProgress {
  int64_t step = 0;     // worker: steps pushed; server: version
  int64_t epoch = 0;
  int64_t samples = 0;  // worker: records trained so far; server: pushed records applied
  double loss = 0;      // worker: mean loss since the last heartbeat
  std::vector<EpochAudit> audit;        // server: records applied in its latest epochs
  std::vector<DataPosition> positions;  // server: where removed workers' data stopped
  int64_t checkpoint = 0;               // server: step of its latest durable checkpoint
  int64_t restored = 0;                 // server: the step it loaded for its generation (-1: failed)
  uint32_t positions_from = 0;          // server: `positions` are restored ones from this index
  WireBytes wire;                       // worker: payload bytes moved so far
};

// The job as the coordinator hands it to members: {"config": ..., "servers": [...]}.
std::string EncodeJob(const JobConfig& config, const std::vector<std::string>& servers,
                      const std::vector<std::string>& server_keys = {});
Result<JobAssignment> DecodeJob(std::span<const std::byte> payload, const std::string& origin);

class CoordinatorChannel {
 public:
  using Duration = std::chrono::steady_clock::duration;

  static Result<std::unique_ptr<CoordinatorChannel>> Open(Transport* transport,
                                                          const std::string& coordinator);

  // Registers as `role` (a server gives the `endpoint` workers reach it at).
  // Waits at most `timeout` for the answer; workers are answered once every
  // server has registered.
  Result<JobAssignment> Join(PeerRole role, const std::string& endpoint, Duration timeout);

  // A second channel of a member that already joined as `id` in `generation`.
  void Attach(uint32_t id, PeerRole role, uint32_t generation) {
    id_ = id, role_ = role, generation_ = coordinator_generation_ = generation;
  }
  // A server that has loaded the weights of `generation` (its removed list restarts).
  void set_generation(uint32_t generation) { generation_ = generation, removed_.clear(); }

  // Sends a heartbeat when `interval` has passed since the last one, and
  // reads every answer that has arrived. Unavailable once the coordinator has
  // not answered for `lost_after`; Aborted once it has said it does not know
  // this member (it restarted): join again.
  Status Heartbeat(const MemberProgress& progress, Duration interval, Duration lost_after);

  // Sends `request` and waits at most `timeout` for its answer (heartbeat
  // answers that arrive meanwhile are taken in). An Error answer becomes
  // the returned Status.
  Result<WireHeader> Call(WireHeader request, Duration timeout);
  // Checked while an answer is awaited (every 100 ms at most): a non-OK
  // status ends the wait with it (another channel heard the job restart).
  void SetInterrupt(std::function<Status()> interrupt) { interrupt_ = std::move(interrupt); }

  // The member's last heartbeat, before it exits (the job is over): its
  // final progress, answered within `timeout`.
  Status Farewell(const MemberProgress& progress, Duration timeout);

  bool stop_requested() const { return stop_; }
  int64_t heartbeats_answered() const { return heartbeats_answered_; }
  // The latest checkpoint step the coordinator has committed (0: none).
  int64_t committed_checkpoint() const { return committed_checkpoint_; }
  // Checkpoints by time: the step the coordinator wants the next one at (0: none).
  int64_t checkpoint_at() const { return checkpoint_at_; }
  // The member's generation, and the coordinator's as its latest answer says:
  // when they differ, the job has restarted from a checkpoint (a worker
  // rejoins; a server loads restore_step()).
  uint32_t generation() const { return generation_; }
  uint32_t coordinator_generation() const { return coordinator_generation_; }
  int64_t restore_step() const { return restore_; }
  // The coordinator still gathers the restored servers' worker positions.
  bool collecting() const { return collecting_; }
  // Every worker removed from the job so far, in the order of removal.
  const std::vector<uint32_t>& removed() const { return removed_; }
  const std::string& coordinator() const { return coordinator_; }

 private:
  CoordinatorChannel(std::unique_ptr<ClientSocket> socket, std::string coordinator);
  struct Answer {
    WireHeader header;
    InMessage message;
  };
  Status Send(const WireHeader& h);
  WireHeader ProgressHeader(const MemberProgress& progress) const;
  // Waits at most `timeout` for the answer to `request_id` (`what`, for the
  // error), taking in every other answer that arrives meanwhile.
  Result<Answer> Await(uint64_t request_id, Duration timeout, const std::string& what);
  // Takes in one answer: heartbeat answers update the membership state.
  void Absorb(const WireHeader& h);

  std::unique_ptr<ClientSocket> socket_;
  std::string coordinator_;
  std::string public_key_;  // CURVE: this process's, which a server registers with
  uint32_t id_ = 0;
  PeerRole role_ = PeerRole::kWorker;
  uint64_t next_request_ = 1;
  std::chrono::steady_clock::time_point last_sent_{}, last_answer_;
  bool stop_ = false;
  int64_t heartbeats_answered_ = 0;
  int64_t committed_checkpoint_ = 0;
  int64_t checkpoint_at_ = 0;
  uint32_t generation_ = 0, coordinator_generation_ = 0;
  int64_t restore_ = 0;
  bool collecting_ = false;
  std::vector<uint32_t> removed_;
  std::optional<std::string> forgotten_;
  std::function<Status()> interrupt_;  // why the coordinator no longer knows this member
  std::vector<std::byte> encode_buffer_;
  std::vector<uint64_t> decode_scratch_;
};

}  // namespace psforge
