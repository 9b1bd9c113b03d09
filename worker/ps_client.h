// PsClient: the ParameterClient of a worker in a cluster, over a Transport.
//
// Owns one ClientSocket per server; server i owns key range
// PartitionKeys(P, servers, i). Push sends each server its slice of the
// gradient, every server at once; Pull asks every server at once and copies
// each reply straight into its slice of the weight buffer.
//
// One round trip a step: the push of step t also asks for the weights the
// worker needs next, and the server answers it with them (no separate ack or
// pull request). BSP (and SSP with staleness 0): the push of step t asks for
// version t+1; the gradient is sent in place, without a copy, and Pull
// returns only once the transport has released it, so the caller may
// overwrite it. SSP with staleness >= 1 and ASP overlap communication with
// compute: the push of step t asks for the weights of step t+2, which travel
// while step t+1 computes; Pull(t+2) then only copies them in. Gradients are
// copied into one of two send buffers, so compute may overwrite its own
// while a push is on the wire. The first pull, and a pull no push asked for
// (the final evaluation's), are fresh requests. Leave() tells every server
// to stop waiting for this worker (servers drop its parked prefetches).
// The staleness bound holds either way: weights used at step t have version
// >= t - staleness, checked by the server and again here.
//
// A server reached through ZeroMQ frames gets its slice in equal parts of
// about cluster.chunk_kb (PartCount), each its own push asking for its own keys' weights
// (every server's first part first): the server checks, sums, applies and
// answers one part while the next travels, and the worker copies a part's
// weights in while later ones are on their way. The rows of sparse tables
// go with a server's last part.
//
// A server on this host (ipc://, loopback, an address of this host) is offered a shared-memory
// region (common/shared_region.h) before the first request: gradients are
// then copied into slot 1 (overlap: 1 or 2 by step parity) and pushes carry
// only the header; replies write the weights into slot 3 (overlap: 3 or 4
// by version parity), copied out and checked by the slot's seqlock.
//
// Sparse tables: PullRows fetches the rows a batch touches, each from the
// server that holds it (ServerOfRow), every server asked at once; a push
// carries each server the gradient of its rows after its dense slice, in
// one frame (common/sparse_payload.h), the dense part copied into it (or
// into the shared-memory slot).
//
// Every wait is bounded by cluster.request_timeout_s; a missing or failing
// server is an error naming its endpoint. Not thread-safe.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/model_spec.h"
#include "common/mutex.h"
#include "common/shared_region.h"
#include "common/sparse_payload.h"
#include "common/transport.h"
#include "common/wire.h"
#include "worker/parameter_client.h"

namespace psforge {

class PsClient final : public ParameterClient {
 public:
  static Result<std::unique_ptr<PsClient>> Connect(Transport* transport, const ModelSpec& spec,
                                                   const ClusterOptions& cluster, uint32_t worker,
                                                   const std::vector<std::string>& endpoints,
                                                   uint32_t generation = 0, int64_t first_step = 0,
                                                   const std::vector<std::string>& server_keys = {});
  // Checked while a reply is awaited (every 100 ms at most): a non-OK
  // status ends the wait with it (the job restarted, say).
  void SetInterrupt(std::function<Status()> interrupt) { interrupt_ = std::move(interrupt); }
  ~PsClient() override;

  using ParameterClient::Push;
  Status Pull(int64_t step, std::span<float> weights) override;
  // Each server gets its slice of the dense gradient and, in the same
  // frame, the gradient of the sparse rows it holds.
  Status Push(int64_t step, std::span<const float> gradient, int64_t samples,
              const DataMark& mark, std::span<const SparseRows> rows) override;
  // Overlapping steps (SSP, ASP) through frames in float32: the send buffer
  // the next Push sends from, once the transport and every unanswered push
  // have let go of it (the push of two steps ago, which a restarted server
  // may need again).
  Result<std::span<float>> GradientBuffer() override;
  int64_t applied_steps() const override { return applied_steps_; }
  WireBytes wire_bytes() const override { return {push_bytes_, pull_bytes_}; }
  int64_t parts_sent_ahead() const override { return parts_sent_ahead_; }
  int64_t parts_pulled_during_forward() const override { return parts_pulled_late_; }
  int64_t workers_in_step() const override;
  // Chaos testing (cluster.faults or --faults die_mid_push): at `step` this process
  // SIGKILLs itself once its push has left for the first server only.
  void DieMidPush(int64_t step) { die_mid_push_ = step; }
  // Asks every server to count this worker from now on and returns the step
  // it starts at: the one it was connected with when it starts with the job,
  // the servers' current step when it takes the place of a worker the
  // coordinator removed. A server a step behind the others gets an empty
  // push (no records: no weight in the mean) for each step between, so that
  // every server waits for this worker from the same step.
  Result<int64_t> Admit();
  Status Leave() override;

  // The weights of the batch's rows at `version` (the consistency bound as
  // for Pull), from whichever servers hold them, all asked at once.
  Status PullRows(int64_t version, std::span<const SparseRows> rows) override;
  // BSP (and SSP with staleness 0) through frames, cluster.push_during_backward:
  // sends each server's parts that lie wholly within the keys reported
  // final so far and are not sent yet, lowest keys first; Push sends the rest.
  Status PushReady(int64_t step, std::span<const float> gradient, int64_t samples, const DataMark& mark,
                   int64_t begin, int64_t end) override;

  // Where the parts of every server begin, as a client with `cluster`
  // cuts a key space of `params` (the same for every worker of a job).
  static std::vector<int64_t> PartStarts(int64_t params, const ClusterOptions& cluster);
  // PartStarts where a step's parts can move one at a time: BSP (or SSP
  // with staleness 0), every server through frames, and
  // cluster.push_during_backward or cluster.priority_pulls on.
  std::vector<int64_t> part_starts() const override;
  // cluster.priority_pulls (BSP through frames): waits for each server's
  // first part only; AwaitWeights takes the others as the next forward
  // pass reaches their keys. Otherwise Pull.
  Status PullFirst(int64_t step, std::span<float> weights) override;
  Status AwaitWeights(int64_t end) override;

 private:
  using Deadline = std::chrono::steady_clock::time_point;
  // Replies kept for a later AwaitReply: at most two steps' parts are ever outstanding.
  std::size_t max_early_replies_ = 4;
  // A request not yet answered: sent again (same id, same payload) when no
  // reply comes in time; a server applies a repeated push once.
  struct Pending {
    WireHeader header;
    OutFrame payload;  // its owner keeps the bytes alive (and the slot in flight)
    std::chrono::steady_clock::time_point resend_at;
    std::chrono::steady_clock::duration backoff;
  };
  struct Server {
    std::unique_ptr<ClientSocket> socket;
    std::string endpoint;
    KeyRange range;
    std::unique_ptr<SharedRegion> region;  // null: payloads go in frames
    int64_t parts = 1;  // what a push in frames is cut into (PartCount)
    std::vector<char> sent_ahead;  // per part: sent by PushReady for step ahead_step_
    int64_t unacked_pushes = 0;
    std::string last_push;  // what an error reply to a push refers to
    int64_t workers = 0;    // BSP: the workers it waited for, as of its last pull reply
    std::map<uint64_t, Pending> pending;  // by request id
    std::map<uint64_t, InMessage> early;  // pull replies that came while another reply was awaited
  };

  PsClient(const ClusterOptions& cluster, uint32_t worker, std::vector<Server> servers, int64_t params,
           uint32_t generation, int64_t first_step);
  Deadline NewDeadline() const;
  // A request of this worker and generation, with a fresh id.
  WireHeader NewRequest(MessageBody body);
  // Sends request `h` and keeps it until answered (Answered).
  Status Send(Server& s, const WireHeader& h, OutFrame payload);
  // Sends control `kind` (with `value`) to every server at once; their
  // answers' values. `what` names the errors ("joining server 1 at ...").
  Status ControlAll(ControlKind kind, int64_t value, const std::string& what, std::vector<int64_t>* answers);
  // Sends again what `s` has not answered in time.
  Status Resend(Server& s);
  // "server i at endpoint", for errors.
  static std::string Describe(int64_t index, const std::string& endpoint);
  // ShareMemory has run and every server takes its payloads in frames.
  bool AllThroughFrames() const;
  // Push sends the dense gradient from send_buffers_ (overlapping steps,
  // float32, some server through frames).
  bool SendsFromBuffers() const;
  // True once for each request: a second reply (to a resent one) is ignored.
  static bool Answered(Server& s, uint64_t request_id) { return s.pending.erase(request_id) > 0; }
  // Once, before the first request: offers every server on this host a
  // shared-memory region for payloads (cluster.shared_memory). A server
  // that declines says why; its payloads go in frames.
  Status ShareMemory();
  // The weight slot a reply carrying `version` is asked into (0: a frame):
  // one slot when a single reply is awaited at a time, by version parity
  // when two are (overlap).
  int ReplySlot(const Server& s, int64_t version) const {
    if (!s.region) return 0;
    return SharedRegion::kFirstWeightSlot + (overlap_ ? static_cast<int>(version & 1) : 0);
  }
  // Before gradient slot `slot` of `s` is overwritten: a push still
  // unanswered that names it keeps its bytes in a copy, sent as a frame
  // (ahead of its sparse rows, when it has some).
  static void DetachPending(Server& s, int slot);
  // Which server holds each row of `rows` (into row_server_), once their
  // sizes are checked.
  Status AssignRows(std::span<const SparseRows> rows);
  // Appends to `frame` the blocks (in `layout`) of the rows server `v`
  // holds, after AssignRows, and their SparseBlocks to `blocks`.
  void AppendRowsOf(uint32_t v, std::span<const SparseRows> rows, SparseLayout layout, std::vector<std::byte>* frame,
                    std::vector<SparseBlock>* blocks);
  // A request for keys [begin, end) of server `server`'s range (its whole
  // range, or a part of a push in frames), answered with their weights.
  struct PartRequest {
    uint32_t server;
    uint64_t request;
    int64_t begin, end;
  };
  Status SendPulls(int64_t version, std::vector<PartRequest>* requests);
  Status ReceivePulls(const std::vector<PartRequest>& requests, int64_t version, std::span<float> weights,
                      Deadline deadline);
  // Sends server `i` the push of keys [begin, end) of `gradient` (`source`
  // when sent in place), asking for their weights at `wanted`; the rows
  // it holds go with the last part of its range.
  // `final`: the last part of the step this worker sends `i` (it carries
  // the rows `i` holds).
  Status PushPart(uint32_t i, int64_t begin, int64_t end, int64_t step, std::span<const float> gradient,
                  std::span<const float> source, int source_slot, int64_t samples, const DataMark& mark,
                  std::span<const SparseRows> rows, int64_t wanted, bool final, std::vector<PartRequest>* asked);
  // Receives from `s` until the reply to `request_id` (copied into `dest`
  // when it is a pull reply) has arrived and all pushes are acknowledged.
  // A pull reply older than the consistency bound for `wanted` is refused.
  // A reply with sparse rows (to PullRows) is taken only with `rows`,
  // which receives its rows frame.
  Status AwaitReply(Server& s, uint64_t request_id, int64_t wanted, std::span<float> dest,
                    Deadline deadline, std::vector<std::byte>* rows = nullptr);
  // Waits until the transport has released every payload sent from buffer `slot`.
  Status AwaitReleased(int slot, Deadline deadline);

  const ClusterOptions cluster_;
  const uint32_t worker_;
  const uint32_t generation_;  // of the job, on every request
  const int64_t first_step_;
  const bool overlap_;
  std::function<Status()> interrupt_;
  std::vector<Server> servers_;
  uint64_t next_request_ = 1;
  // Requests whose replies carry a weight version not yet collected by Pull,
  // oldest first (at most two: overlap asks two steps ahead).
  struct Outstanding {
    int64_t version;
    std::vector<PartRequest> requests;  // in the order sent
    int64_t push_step = -1;             // the push they answer (-1: a plain pull)
  };
  // A pull PullFirst began: its requests, which have been received, and
  // where the weights go.
  struct Receiving {
    int64_t version;
    Outstanding asked;
    std::vector<char> got;  // per request of `asked`
    std::span<float> weights;
  };
  std::optional<Receiving> receiving_;
  // Receives what PullFirst left for later, if anything (every other call
  // that talks to the servers does this first).
  Status FinishReceiving();
  // Receives request r of receiving_.
  Status ReceivePart(std::size_t r, Deadline deadline);
  int64_t control_value_ = 0;  // the value of the last control reply awaited
  int64_t applied_steps_ = 0;
  int64_t die_mid_push_ = 0;
  bool shared_ = false;   // ShareMemory has run
  bool leaving_ = false;  // Leave has begun
  std::deque<Outstanding> outstanding_;
  // The step whose parts PushReady has begun to send (-1: none), and
  // the requests they make; Push adds the rest.
  int64_t ahead_step_ = -1;
  int64_t parts_sent_ahead_ = 0;
  int64_t parts_pulled_late_ = 0;  // received by AwaitWeights
  Outstanding ahead_;
  std::vector<KeyRange> final_;  // the keys reported final for ahead_step_, merged, ascending
  // Overlap mode: the gradient send buffers.
  std::array<std::vector<float>, 2> send_buffers_;
  int next_send_buffer_ = 0;
  std::vector<std::byte> encode_buffer_;
  std::vector<uint64_t> decode_scratch_;
  std::vector<SparseBlock> last_row_blocks_;  // the blocks of the last reply with sparse rows
  // Sparse scratch, reused: per batch row, its server; one block's ids and values.
  std::vector<uint32_t> row_server_;
  std::vector<uint64_t> block_ids_;
  std::vector<float> block_values_;
  std::vector<std::byte> row_reply_;  // a reply's rows, as received
  // cluster.wire_dtype other than f32: what rounding took from each
  // gradient value, added to the next (error feedback), and a reply's
  // rounded weights as read from a shared-memory slot.
  std::vector<float> residual_;
  std::vector<std::byte> wire_values_;
  int64_t push_bytes_ = 0, pull_bytes_ = 0;  // payloads moved, either way (frames or shared memory)
  // Frames of sparse pushes and pulls (ids and gradients: a batch's rows
  // are ~0.5 MB): a frame the transport and the resend list have let go
  // of comes back here, so steps reuse the same few buffers (no allocation
  // and no page faults a step). Shared with the frames' owners, which the
  // transport may release after this client is gone.
  struct FramePool {
    Mutex mu;
    std::vector<std::unique_ptr<std::vector<std::byte>>> free PSF_GUARDED_BY(mu);
  };
  std::shared_ptr<FramePool> frame_pool_ = std::make_shared<FramePool>();
  // An empty frame (its capacity kept) owned by a shared_ptr that gives it back to the pool.
  std::shared_ptr<std::vector<std::byte>> TakeFrame();
  // Payloads the transport still holds, per send slot (slot 0 is the
  // caller's gradient in the in-place mode); released from its I/O thread.
  Mutex in_flight_mu_;
  CondVar in_flight_cv_;
  std::array<int64_t, 2> in_flight_ PSF_GUARDED_BY(in_flight_mu_){};
};

}  // namespace psforge
