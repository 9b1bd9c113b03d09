// ParamServer: serves one ParamShard over a ServerSocket.
//
// One thread runs Serve(): it receives, decodes (bounded, checked), applies
// pushes, answers pulls, and parks pulls that must wait, each with a
// deadline. It never blocks on one peer: replies are non-blocking sends, and
// a peer that cannot take one is counted and skipped. A bad message gets an
// Error reply naming the problem, is counted, and changes nothing. When a
// parked pull times out, its Error names the step and the workers it was
// waiting for (the stall report). Owns the shard and the socket; Serve() is
// not re-entrant; stats() may be called from the serving thread only.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/coordinator_link.h"
#include "common/shared_region.h"
#include "common/sparse_payload.h"
#include "common/transport.h"
#include "common/wire.h"
#include "paramserver/checkpoint_writer.h"
#include "paramserver/param_shard.h"

namespace psforge {

struct ServerStats {
  int64_t pushes_applied = 0;   // pushes that entered the weights (or the BSP sum)
  int64_t updates = 0;          // optimizer steps taken
  int64_t duplicates = 0;       // pushes ignored as already applied
  int64_t pulls_answered = 0;
  int64_t pulls_parked = 0;     // pulls that had to wait
  int64_t pulls_timed_out = 0;
  int64_t replies_dropped = 0;  // peer gone or not reading
  int64_t shared_regions = 0;   // workers' shared-memory regions mapped
  int64_t workers_removed = 0;  // left the job, or declared dead by the coordinator
  int64_t checkpoints_skipped = 0;      // due while the previous one was still being written
  double checkpoint_copy_ms_max = 0;    // the longest the serving loop spent taking a snapshot
  std::map<std::string, int64_t> errors;  // bad messages by reason
  int64_t version = 0;                    // filled when reported
  std::vector<int64_t> worker_steps;      // filled when reported
  std::string ToJson() const;
};

class ParamServer {
 public:
  // Server `index` of cluster.servers, bound at `bind` (tcp://host:0 for an
  // OS-chosen port). With checkpoints on, it opens its store
  // <checkpoint.dir>/server-<index> and writes a checkpoint in the background
  // at every multiple of checkpoint.interval_steps, or at the steps the
  // coordinator picks (checkpoint.interval_s).
  static Result<std::unique_ptr<ParamServer>> Create(const JobConfig& config, const ModelSpec& spec,
                                                     int64_t index, Transport* transport,
                                                     const std::string& bind);
  // The same over a socket already bound (a server binds before it joins a job).
  static Result<std::unique_ptr<ParamServer>> Create(const JobConfig& config, const ModelSpec& spec,
                                                     int64_t index,
                                                     std::unique_ptr<ServerSocket> socket);

  // Reports to the job's coordinator from the serving loop and takes in its
  // membership state (removed workers, the end of the job). Each time the
  // job (re)starts the coordinator names a new generation and the step to
  // load: 0, the initial weights (a new job: stored checkpoints are
  // discarded), or a committed checkpoint (a resumed job, or all servers
  // rolling back after one died). The server loads it before serving the
  // generation's workers, refuses pushes and pulls of any other generation
  // (Aborted: rejoin), reports the step it loaded (or that it could not),
  // and the loaded workers' data positions. Heartbeats carry
  // what this server applied: records per epoch with their id sums, and
  // where each removed worker's data stopped. Serve() fails once the
  // coordinator has been silent for `lost_after_s`.
  void AttachCoordinator(std::unique_ptr<CoordinatorChannel> channel, double lost_after_s);
  ~ParamServer();

  const std::string& endpoint() const { return socket_->endpoint(); }
  KeyRange range() const { return shard_->range(); }
  const ServerStats& stats() const { return stats_; }
  std::string StatsJson() const;

  // Serves until `stop` becomes true or a shutdown control message arrives.
  Status Serve(const std::atomic<bool>& stop);

  // What a heartbeat reports (from the serving loop, or once it has
  // stopped); `page` picks the older epochs' page when the job has more
  // epochs than one heartbeat audits (AuditPages of them).
  MemberProgress Progress(std::size_t page) const;
  std::size_t AuditPages() const;

 private:
  struct ParkedPull {
    std::string peer;
    WireHeader request;  // the pull, or the push with pull it came in
    msg::Pull pull;
    std::vector<SparseSection> rows;  // sparse rows asked for (ids only)
    std::chrono::steady_clock::time_point deadline;
  };

  ParamServer(const JobConfig& config, const ModelSpec& spec, int64_t index,
              std::shared_ptr<ParamShard> shard, std::unique_ptr<ServerSocket> socket);
  // Loads `step` (0: the initial weights) for `generation`.
  void Restart(uint32_t generation, int64_t step);
  void Handle(InMessage& message);
  void HandlePush(const std::string& peer, const WireHeader& h, const msg::Push& push, const InMessage& m);
  // `rows_in_frame`: the pull's own message, whose payload frame names
  // the sparse rows it wants (a push with pull asks for dense weights only).
  void HandlePull(const std::string& peer, const WireHeader& h, const msg::Pull& pull, const InMessage& m,
                  bool rows_in_frame);
  // Control kShareMemory: maps the sender's region, or says why not.
  void HandleShareMemory(const std::string& peer, const WireHeader& h, const msg::Control& c);
  // The bytes of `sender`'s push: its payload frame, or the slot of the
  // sender's region it names; an error says what is missing.
  Result<std::span<const std::byte>> PushPayload(uint32_t sender, const msg::Push& push,
                                                 const InMessage& m) const;
  void AnswerReadyPulls();
  void ExpireParkedPulls();
  Status TalkToCoordinator();
  // Exactly-once accounting of an applied push: the records per epoch, and
  // the data position it leaves its worker at.
  void Account(uint32_t sender, const msg::Push& push);
  void RemoveWorker(uint32_t worker);
  // After the version moved: a snapshot for the writer when a checkpoint is due.
  // Writes a checkpoint if one is due at the current version; `at_end`: the
  // job is over, the final weights are (after the one being written, if any).
  void MaybeCheckpoint(bool at_end = false);
  void ReplyPull(const std::string& peer, const WireHeader& request, const msg::Pull& pull,
                 std::span<const SparseSection> rows = {});
  static Result<std::unique_ptr<ParamShard>> NewShard(const JobConfig& config, const ModelSpec& spec, int64_t index,
                                                      KeyRange range);
  // Server `index`'s folder for its tables' evicted rows (cluster.spill_dir).
  static std::string SpillDir(const JobConfig& config, int64_t index);
  static void RemoveDeadSpills(const std::string& dir);
  void Reply(const std::string& peer, const WireHeader& h, OutFrame payload = {});
  void Reply(const std::string& peer, const WireHeader& h, std::span<const OutFrame> payloads);
  void ReplyError(const std::string& peer, const WireHeader& request, const std::string& reason,
                  const Status& status);

  const JobConfig config_;
  const ModelSpec spec_;
  const int64_t index_;
  // Shared with in-flight zero-copy replies, which read the weights in place.
  std::shared_ptr<ParamShard> shard_;
  std::unique_ptr<ServerSocket> socket_;
  std::vector<ParkedPull> parked_;
  // By worker: the shared-memory regions offered by workers on this host.
  std::map<uint32_t, std::unique_ptr<SharedRegion>> regions_;
  ServerStats stats_;
  std::vector<std::byte> encode_buffer_;
  std::vector<uint64_t> decode_scratch_;
  std::vector<float> reply_rows_;  // a pull reply's sparse rows (copied by the transport)
  // cluster.wire_dtype other than f32: a push's dense values in float32,
  // and a reply's weights rounded for the wire (copied by the transport).
  std::vector<float> push_values_;
  std::vector<std::byte> reply_values_;
  bool shutdown_ = false;
  std::unique_ptr<CoordinatorChannel> coordinator_;
  double lost_after_s_ = 0;
  std::chrono::steady_clock::time_point next_coordinator_check_{};
  std::map<int64_t, EpochAudit> audit_;  // every epoch's (32 bytes each)
  int64_t records_applied_ = 0;          // pushed records taken in since the process started
  std::vector<DataPosition> positions_;  // per worker
  std::unique_ptr<CheckpointWriter> checkpoints_;  // null: checkpoints off
  int64_t last_checkpoint_step_ = 0;
  int64_t skipped_step_ = -1;  // the step whose checkpoint last found the writer busy
  // A restart's load: the step to load, since when (it waits for a write in
  // progress, at most checkpoint.write_timeout_s).
  void ContinueLoading();
  bool loading_ = false;
  int64_t loading_step_ = 0;
  std::chrono::steady_clock::time_point loading_since_{};
  // The job generation served, the step loaded for it (-1: could not, -2: loading), and
  // the loaded workers' positions (reported page by page while the
  // coordinator collects them).
  uint32_t generation_ = 0;
  int64_t restored_ = 0;
  std::vector<DataPosition> restored_positions_;
  std::size_t removals_seen_ = 0;  // entries of the coordinator's removed list taken in
  int64_t reported_durable_ = 0;   // the durable checkpoint step last reported
};

}  // namespace psforge
