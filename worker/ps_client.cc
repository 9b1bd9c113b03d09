#include "worker/ps_client.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "common/clock.h"
#include "common/ip_address.h"
#include "common/row_ids.h"
#include "common/sparse_payload.h"

namespace psforge {

std::string PsClient::Describe(int64_t index, const std::string& endpoint) {
  return "server " + std::to_string(index) + " at " + endpoint;
}

PsClient::PsClient(const ClusterOptions& cluster, uint32_t worker, std::vector<Server> servers,
                   int64_t params, uint32_t generation, int64_t first_step)
    : cluster_(cluster),
      worker_(worker),
      generation_(generation),
      first_step_(first_step),
      overlap_(cluster.consistency == Consistency::kAsp ||
               (cluster.consistency == Consistency::kSsp && cluster.staleness >= 1)),
      servers_(std::move(servers)),
      applied_steps_(first_step) {
  // (A server that takes shared memory later gets whole ranges.) Two
  // steps' parts may be outstanding at once (overlap), answered in any
  // order across steps.
  int64_t most = 1;
  for (Server& s : servers_) {
    s.parts = PartCount(s.range.size(), cluster.chunk_kb);
    s.sent_ahead.assign(static_cast<std::size_t>(s.parts), 0);
    most = std::max(most, s.parts);
  }
  max_early_replies_ = static_cast<std::size_t>(std::max<int64_t>(4, 2 * most + 2));
  if (overlap_ && cluster.wire_dtype == DType::kF32)
    for (auto& b : send_buffers_) b.resize(params);
  if (cluster.wire_dtype != DType::kF32) residual_.assign(static_cast<std::size_t>(params), 0.0f);
}

PsClient::~PsClient() {
  // Zero-copy sends call back into this object. Closing the sockets drops
  // what is still queued (to a dead server, say; linger is 0), and the
  // transport lets go of those slices at once; then wait (bounded) for it.
  for (Server& s : servers_) {
    s.pending.clear();
    s.socket.reset();
  }
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  (void)AwaitReleased(0, deadline);
  (void)AwaitReleased(1, deadline);
}

PsClient::Deadline PsClient::NewDeadline() const {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(cluster_.request_timeout_s));
}

Result<std::unique_ptr<PsClient>> PsClient::Connect(Transport* transport, const ModelSpec& spec,
                                                    const ClusterOptions& cluster, uint32_t worker,
                                                    const std::vector<std::string>& endpoints,
                                                    uint32_t generation, int64_t first_step,
                                                    const std::vector<std::string>& server_keys) {
  if (static_cast<int64_t>(endpoints.size()) != cluster.servers)
    return InvalidArgument(std::to_string(endpoints.size()) + " server endpoints given but cluster.servers is " +
                           std::to_string(cluster.servers));
  if (worker >= static_cast<uint64_t>(cluster.workers))
    return InvalidArgument("worker index " + std::to_string(worker) + " outside [0, " +
                           std::to_string(cluster.workers) + ") (cluster.workers)");
  std::vector<Server> servers;
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    PSF_ASSIGN_OR_RETURN(auto socket, transport->Connect(endpoints[i], i < server_keys.size() ? server_keys[i] : ""));
    Server s;
    s.socket = std::move(socket);
    s.endpoint = endpoints[i];
    s.range = PartitionKeys(spec.num_params(), cluster.servers, i);
    servers.push_back(std::move(s));
  }
  return std::unique_ptr<PsClient>(
      new PsClient(cluster, worker, std::move(servers), spec.num_params(), generation, first_step));
}

WireHeader PsClient::NewRequest(MessageBody body) {
  WireHeader h;
  h.request_id = next_request_++;
  h.sender = worker_;
  h.generation = generation_;
  h.body = std::move(body);
  return h;
}

Status PsClient::Send(Server& s, const WireHeader& h, OutFrame payload) {
  EncodeHeader(h, &encode_buffer_);
  OutFrame frames[2] = {{encode_buffer_, nullptr}, payload};
  PSF_RETURN_IF_ERROR(s.socket->Send(std::span<const OutFrame>(frames, payload.bytes.empty() ? 1 : 2)));
  const auto backoff = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(cluster_.retry_interval_s));
  s.pending[h.request_id] = {h, std::move(payload), Clock::now() + backoff, backoff};
  return Status::Ok();
}

Status PsClient::Resend(Server& s) {
  const auto now = Clock::now();
  const auto longest = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(8 * cluster_.retry_interval_s));
  for (auto& [id, p] : s.pending) {
    if (p.resend_at > now) continue;
    EncodeHeader(p.header, &encode_buffer_);
    OutFrame frames[2] = {{encode_buffer_, nullptr}, p.payload};
    PSF_RETURN_IF_ERROR(s.socket->Send(std::span<const OutFrame>(frames, p.payload.bytes.empty() ? 1 : 2)));
    p.backoff = std::min(2 * p.backoff, longest);
    p.resend_at = now + p.backoff;
  }
  return Status::Ok();
}

std::shared_ptr<std::vector<std::byte>> PsClient::TakeFrame() {
  std::unique_ptr<std::vector<std::byte>> frame;
  {
    MutexLock lock(frame_pool_->mu);
    if (!frame_pool_->free.empty()) {
      frame = std::move(frame_pool_->free.back());
      frame_pool_->free.pop_back();
    }
  }
  if (!frame) frame = std::make_unique<std::vector<std::byte>>();
  frame->clear();
  return {frame.release(), [pool = frame_pool_](std::vector<std::byte>* f) {
            std::unique_ptr<std::vector<std::byte>> back(f);
            MutexLock lock(pool->mu);
            if (pool->free.size() < 8) pool->free.push_back(std::move(back));  // else freed here
          }};
}

Status PsClient::AssignRows(std::span<const SparseRows> rows) {
  const uint64_t servers = servers_.size();
  row_server_.clear();
  for (const SparseRows& r : rows) {
    if (r.dim < 1 || r.values.size() != r.rows.size() * static_cast<std::size_t>(r.dim))
      return InvalidArgument("rows of sparse table " + std::to_string(r.table) + ": " +
                             std::to_string(r.values.size()) + " values for " + std::to_string(r.rows.size()) +
                             " rows of dimension " + std::to_string(r.dim));
    for (uint64_t row : r.rows) row_server_.push_back(static_cast<uint32_t>(ServerOfRow(row, servers)));
  }
  return Status::Ok();
}

void PsClient::AppendRowsOf(uint32_t v, std::span<const SparseRows> rows, SparseLayout layout,
                            std::vector<std::byte>* frame, std::vector<SparseBlock>* blocks) {
  std::size_t at = 0;  // into row_server_
  for (const SparseRows& r : rows) {
    block_ids_.clear();
    block_values_.clear();
    const std::size_t d = static_cast<std::size_t>(r.dim);
    for (std::size_t k = 0; k < r.rows.size(); ++k, ++at) {
      if (row_server_[at] != v) continue;
      block_ids_.push_back(r.rows[k]);
      if (layout == SparseLayout::kPush)
        block_values_.insert(block_values_.end(), r.values.begin() + k * d, r.values.begin() + (k + 1) * d);
    }
    if (!block_ids_.empty()) blocks->push_back(AppendSparseSection(layout, r.table, block_ids_, block_values_, frame));
  }
}

Status PsClient::Push(int64_t step, std::span<const float> gradient, int64_t samples,
                      const DataMark& mark, std::span<const SparseRows> rows) {
  PSF_RETURN_IF_ERROR(FinishReceiving());
  if (!shared_) PSF_RETURN_IF_ERROR(ShareMemory());
  PSF_RETURN_IF_ERROR(AssignRows(rows));
  int slot = 0;
  std::span<const float> source = gradient;
  if (SendsFromBuffers()) {
    // Compute overwrites `gradient` while this push may still be on the wire
    // (or be sent again): send from a buffer the transport released two
    // steps ago, where the model wrote it (GradientBuffer) or a copy.
    slot = next_send_buffer_;
    next_send_buffer_ ^= 1;
    PSF_RETURN_IF_ERROR(AwaitReleased(slot, NewDeadline()));
    if (gradient.data() != send_buffers_[slot].data())
      std::copy(gradient.begin(), gradient.end(), send_buffers_[slot].begin());
    source = send_buffers_[slot];
  }
  // The weights this push asks for.
  const int64_t wanted = step + (overlap_ ? 2 : 1);
  const bool ahead = ahead_step_ == step;  // PushReady sent some parts already
  Outstanding asked = ahead ? std::move(ahead_) : Outstanding{wanted, {}, step};
  ahead_step_ = -1;
  // A server reached through frames gets its range in parts
  // (cluster.chunk_kb), every server's first part first: each server sums,
  // applies and answers a part while the next one travels. The last part
  // sent to a server carries its rows.
  std::vector<int64_t> final_part(servers_.size(), -1);
  for (uint32_t i = 0; i < servers_.size(); ++i) {
    const Server& s = servers_[i];
    const int64_t parts = s.region ? 1 : s.parts;
    for (int64_t k = parts; k-- > 0;)
      if (!(ahead && !s.region && s.sent_ahead[k])) {
        final_part[i] = k;
        break;
      }
    if (final_part[i] < 0 && !rows.empty())
      return Internal("the rows of step " + std::to_string(step) + " came after all its parts were sent");
  }
  for (int64_t k = 0;; ++k) {
    bool any = false;
    for (uint32_t i = 0; i < servers_.size(); ++i) {
      const Server& s = servers_[i];
      const int64_t parts = s.region ? 1 : s.parts;
      if (k >= parts) continue;
      any = true;
      if (ahead && !s.region && s.sent_ahead[k]) continue;
      const KeyRange part = PartitionKeys(s.range.size(), parts, k);
      PSF_RETURN_IF_ERROR(PushPart(i, s.range.begin + part.begin, s.range.begin + part.end, step, gradient, source,
                                   slot, samples, mark, rows, wanted, k == final_part[i], &asked.requests));
    }
    if (!any) break;
  }
  if (ahead)
    for (Server& s : servers_) std::fill(s.sent_ahead.begin(), s.sent_ahead.end(), 0);
  outstanding_.push_back(std::move(asked));
  return Status::Ok();
}

bool PsClient::SendsFromBuffers() const {
  return overlap_ && cluster_.wire_dtype == DType::kF32 &&
         std::any_of(servers_.begin(), servers_.end(), [](const Server& s) { return !s.region; });
}

Result<std::span<float>> PsClient::GradientBuffer() {
  if (!shared_) PSF_RETURN_IF_ERROR(ShareMemory());
  if (!SendsFromBuffers()) return std::span<float>();
  PSF_RETURN_IF_ERROR(AwaitReleased(next_send_buffer_, NewDeadline()));
  return std::span<float>(send_buffers_[next_send_buffer_]);
}

Status PsClient::PushPart(uint32_t i, int64_t begin, int64_t end, int64_t step, std::span<const float> gradient,
                          std::span<const float> source, int source_slot, int64_t samples, const DataMark& mark,
                          std::span<const SparseRows> rows, int64_t wanted, bool final,
                          std::vector<PartRequest>* asked) {
  Server& s = servers_[i];
  const DType wire = cluster_.wire_dtype;
  if (!final) rows = {};
  msg::Push push;
  push.step = step;
  push.key_begin = begin;
  push.key_end = end;
  push.samples = samples;
  push.dtype = wire;
  push.mark = mark;
  push.with_pull = true;
  push.pull_version = wanted;
  push.reply_slot = ReplySlot(s, wanted);
  // Into the region, straight from the caller's gradient; the header
  // names the slot (the one of two steps ago has been taken by now).
  if (s.region) push.payload_slot = overlap_ ? 1 + static_cast<int>(step & 1) : 1;
  // The sparse rows this server holds follow the dense slice (which is
  // copied into the frame unless it goes into the slot).
  std::shared_ptr<std::vector<std::byte>> frame;
  const std::span<const float> dense = gradient.subspan(begin, end - begin);
  const std::size_t dense_bytes = dense.size() * DTypeBytes(wire);
  float* residual = residual_.empty() ? nullptr : residual_.data() + begin;
  push_bytes_ += static_cast<int64_t>(dense_bytes);
  if (!rows.empty() || (wire != DType::kF32 && !s.region)) {
    frame = TakeFrame();
    if (!s.region && wire == DType::kF32) {
      auto slice = std::as_bytes(dense);
      frame->assign(slice.begin(), slice.end());
    } else if (!s.region) {
      // Rounded, with the worker's error feedback; padded to whole floats
      // where the rows' blocks follow.
      frame->assign(rows.empty() ? dense_bytes : (dense_bytes + 3) / 4 * 4, std::byte{0});
      EncodeWithFeedback(wire, dense.data(), residual, static_cast<int64_t>(dense.size()), frame->data());
    }
    const std::size_t before = frame->size();
    AppendRowsOf(i, rows, SparseLayout::kPush, frame.get(), &push.sparse);
    push_bytes_ += static_cast<int64_t>(frame->size() - before);
  }
  WireHeader h = NewRequest(push);
  Status sent;
  if (s.region) {
    DetachPending(s, push.payload_slot);
    EncodeWithFeedback(wire, dense.data(), residual, static_cast<int64_t>(dense.size()),
                       s.region->slot(push.payload_slot).data());
    if (push.sparse.empty()) sent = Send(s, h, {});
    else sent = Send(s, h, {*frame, frame});
  } else if (frame) {
    sent = Send(s, h, {*frame, frame});
  } else {
    auto slice = source.subspan(begin, end - begin);
    {
      MutexLock lock(in_flight_mu_);
      ++in_flight_[source_slot];
    }
    // The owner's deleter runs when the transport is done with the slice.
    std::shared_ptr<const void> owner(slice.data(), [this, source_slot](const void*) {
      MutexLock lock(in_flight_mu_);
      if (--in_flight_[source_slot] == 0) in_flight_cv_.NotifyAll();
    });
    sent = Send(s, h, {std::as_bytes(slice), std::move(owner)});
  }
  if (!sent.ok()) return sent.WithContext("push of step " + std::to_string(step) + " to " +
                                          Describe(i, s.socket->endpoint()));
  s.last_push = "push of step " + std::to_string(step);
  asked->push_back({i, h.request_id, begin, end});
  if (die_mid_push_ > 0 && step == die_mid_push_ && i == 0 && final && servers_.size() > 1) {
    // A request sent after the push is answered once the server has taken it.
    WireHeader stats = NewRequest(msg::Control{ControlKind::kStats, 0, {}, {}});
    PSF_RETURN_IF_ERROR(Send(s, stats, {}));
    PSF_RETURN_IF_ERROR(AwaitReply(s, stats.request_id, 0, {}, NewDeadline()));
    std::fprintf(stderr, "ps-worker: dying between its pushes of step %lld to the servers (die_mid_push)\n",
                 static_cast<long long>(step));
    std::fflush(stderr);
    ::raise(SIGKILL);
  }
  return Status::Ok();
}

void PsClient::DetachPending(Server& s, int slot) {
  for (auto& [id, p] : s.pending) {
    auto* push = p.header.As<msg::Push>();
    if (!push || push->payload_slot != slot) continue;
    auto slice = s.region->slot(slot).first(static_cast<std::size_t>(push->key_end - push->key_begin) *
                                            DTypeBytes(push->dtype));
    auto copy = std::make_shared<std::vector<std::byte>>(slice.begin(), slice.end());
    copy->insert(copy->end(), p.payload.bytes.begin(), p.payload.bytes.end());  // its sparse rows, if any
    p.payload = {*copy, copy};
    push->payload_slot = 0;
  }
}

Status PsClient::ShareMemory() {
  shared_ = true;
  if (!cluster_.shared_memory) return Status::Ok();
  const Deadline deadline = NewDeadline();
  std::vector<uint64_t> requests(servers_.size(), 0);
  for (std::size_t i = 0; i < servers_.size(); ++i) {
    Server& s = servers_[i];
    if (!LocalEndpoint(s.endpoint)) continue;
    auto region = SharedRegion::Create(s.range.size() * static_cast<int64_t>(sizeof(float)));
    if (!region.ok()) {
      std::fprintf(stderr, "ps-worker: no shared memory for %s: %s; payloads go in ZeroMQ frames\n",
                   Describe(i, s.endpoint).c_str(), region.status().message().c_str());
      continue;
    }
    WireHeader h = NewRequest(msg::Control{ControlKind::kShareMemory, 0, {}, (*region)->ref()});
    requests[i] = h.request_id;
    Status sent = Send(s, h, {});
    if (!sent.ok()) return sent.WithContext("sharing memory with " + Describe(i, s.endpoint));
    s.region = std::move(*region);
  }
  for (std::size_t i = 0; i < servers_.size(); ++i) {
    Server& s = servers_[i];
    if (requests[i] == 0) continue;
    Status got = AwaitReply(s, requests[i], 0, {}, deadline);
    if (got.code() == StatusCode::kFailedPrecondition) {
      std::fprintf(stderr, "ps-worker: %s shares no memory: %s; payloads go in ZeroMQ frames\n",
                   Describe(i, s.endpoint).c_str(), got.message().c_str());
      s.region.reset();
    } else if (!got.ok()) {
      return got.WithContext("sharing memory with " + Describe(i, s.endpoint));
    }
  }
  return Status::Ok();
}

Status PsClient::SendPulls(int64_t version, std::vector<PartRequest>* requests) {
  if (!shared_) PSF_RETURN_IF_ERROR(ShareMemory());
  requests->clear();
  for (uint32_t i = 0; i < servers_.size(); ++i) {
    Server& s = servers_[i];
    msg::Pull pull;
    pull.version = version;
    pull.key_begin = s.range.begin;
    pull.key_end = s.range.end;
    pull.dtype = cluster_.wire_dtype;
    pull.reply_slot = ReplySlot(s, version);
    WireHeader h = NewRequest(pull);
    requests->push_back({i, h.request_id, s.range.begin, s.range.end});
    Status sent = Send(s, h, {});
    if (!sent.ok()) return sent.WithContext("pull of version " + std::to_string(version) + " from " +
                                            Describe(i, s.socket->endpoint()));
  }
  return Status::Ok();
}

Status PsClient::ReceivePulls(const std::vector<PartRequest>& requests, int64_t version,
                              std::span<float> weights, Deadline deadline) {
  for (const PartRequest& r : requests) {
    Server& s = servers_[r.server];
    Status got = AwaitReply(s, r.request, version, weights.subspan(r.begin, r.end - r.begin), deadline);
    if (!got.ok()) return got.WithContext("pull of version " + std::to_string(version) + " from " +
                                          Describe(r.server, s.socket->endpoint()));
  }
  return Status::Ok();
}

Status PsClient::Pull(int64_t step, std::span<float> weights) {
  PSF_RETURN_IF_ERROR(FinishReceiving());
  const Deadline deadline = NewDeadline();
  bool filled = false;
  if (!outstanding_.empty() && outstanding_.front().version == step) {
    PSF_RETURN_IF_ERROR(ReceivePulls(outstanding_.front().requests, step, weights, deadline));
    applied_steps_ = std::max(applied_steps_, outstanding_.front().push_step + 1);
    outstanding_.pop_front();
    filled = true;
  }
  if (!filled) {
    // The first weights, the final ones evaluated after training, or a pull
    // no push asked for: a fresh request.
    std::vector<PartRequest> requests;
    PSF_RETURN_IF_ERROR(SendPulls(step, &requests));
    PSF_RETURN_IF_ERROR(ReceivePulls(requests, step, weights, deadline));
  }
  if (overlap_ && step == first_step_) {
    // Step 1's weights: no push asks for them (push t asks for t + 2).
    Outstanding next{1, {}, -1};
    PSF_RETURN_IF_ERROR(SendPulls(1, &next.requests));
    outstanding_.push_back(std::move(next));
  }
  return overlap_ ? Status::Ok() : AwaitReleased(0, deadline);
}

Status PsClient::AwaitReply(Server& s, uint64_t request_id, int64_t wanted, std::span<float> dest,
                            Deadline deadline, std::vector<std::byte>* rows) {
  bool answered = false;
  while (!answered || s.unacked_pushes > 0) {
    std::optional<InMessage> message;
    if (auto early = s.early.find(request_id); !answered && early != s.early.end()) {
      // Its reply came while another was awaited.
      message = std::move(early->second);
      s.early.erase(early);
    } else {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0)
        return DeadlineExceeded("no reply within " + std::to_string(cluster_.request_timeout_s) +
                                " s (cluster.request_timeout_s)");
      PSF_RETURN_IF_ERROR(Resend(s));
      PSF_ASSIGN_OR_RETURN(message, s.socket->Receive(std::min(left, std::chrono::milliseconds(100))));
      if (!message) {
        if (interrupt_) PSF_RETURN_IF_ERROR(interrupt_());
        continue;
      }
    }
    if (message->frames.empty()) return DataLoss("empty reply");
    PSF_ASSIGN_OR_RETURN(WireHeader h, DecodeHeader(message->frames[0]->bytes(), &decode_scratch_));
    if (h.As<msg::PushAck>()) {
      if (Answered(s, h.request_id)) --s.unacked_pushes;
    } else if (const auto* c = h.As<msg::Control>()) {
      if (h.request_id == request_id && Answered(s, h.request_id)) {
        answered = true;
        control_value_ = c->value;
      }
    } else if (const auto* e = h.As<msg::Error>()) {
      if (!Answered(s, h.request_id)) continue;  // a second answer to a resent request
      // Leaving: the servers drop the prefetches still parked for this
      // worker (their pushes were applied before they were parked).
      if (leaving_ && h.request_id != request_id && e->code == StatusCode::kCancelled) continue;
      // An error answers either this request or an earlier push.
      if (h.request_id != request_id) return Status(e->code, s.last_push + " rejected: " + e->message);
      return Status(e->code, e->message);
    } else if (const auto* reply = h.As<msg::PullReply>()) {
      // Another request's: one still waited for (the prefetch of a push,
      // while the rows of a batch are awaited) is kept for its turn; one
      // answered already is dropped.
      if (h.request_id != request_id) {
        if (s.pending.count(h.request_id) > 0 && s.early.size() < max_early_replies_)
          s.early.emplace(h.request_id, std::move(*message));
        continue;
      }
      if (s.pending.count(h.request_id) == 0) continue;
      const int64_t oldest = cluster_.consistency == Consistency::kBsp   ? wanted
                             : cluster_.consistency == Consistency::kSsp ? wanted - cluster_.staleness
                                                                         : 0;
      if (reply->version < oldest)
        return DataLoss("pull for version " + std::to_string(wanted) + " answered with version " +
                        std::to_string(reply->version) + ", older than the " +
                        ConsistencyName(cluster_.consistency) + " bound allows");
      if (!reply->sparse.empty() && !rows) return DataLoss("pull reply carries sparse rows that no pull asked for");
      if (!dest.empty() && reply->dtype != cluster_.wire_dtype)
        return DataLoss(std::string("pull reply in ") + DTypeName(reply->dtype) + ", asked for " +
                        DTypeName(cluster_.wire_dtype) + " (cluster.wire_dtype)");
      const std::size_t bytes = dest.size() * DTypeBytes(reply->dtype);
      const bool in_slot = reply->payload_slot != 0;
      const std::size_t frames = (in_slot ? 1u : 2u) + (rows ? 1u : 0u);
      if (message->frames.size() != frames || (rows && in_slot) ||
          (!in_slot && message->frames[1]->bytes().size() != bytes) || (in_slot && !s.region) ||
          reply->key_end - reply->key_begin != static_cast<int64_t>(dest.size()))
        return DataLoss("pull reply does not hold the " + std::to_string(dest.size()) +
                        " values asked for");
      const bool rounded = reply->dtype != DType::kF32;
      if (rounded) wire_values_.resize(bytes);
      std::span<std::byte> raw = rounded ? std::span<std::byte>(wire_values_) : std::as_writable_bytes(dest);
      if (in_slot) {
        if (!s.region->Read(reply->payload_slot, reply->slot_sequence, raw)) {
          // A later reply (to a resent request) overwrote the slot: ask again now.
          s.pending[h.request_id].resend_at = Clock::now();
          continue;
        }
        if (rounded) DecodeValues(reply->dtype, raw.data(), static_cast<int64_t>(dest.size()), dest.data());
      } else if (bytes > 0) {  // none: a pull of sparse rows only
        DecodeValues(reply->dtype, message->frames[1]->bytes().data(), static_cast<int64_t>(dest.size()), dest.data());
      }
      pull_bytes_ += static_cast<int64_t>(bytes);
      if (rows) {
        auto b = message->frames[2]->bytes();
        rows->assign(b.begin(), b.end());
        pull_bytes_ += static_cast<int64_t>(b.size());
        last_row_blocks_ = reply->sparse;
      }
      Answered(s, h.request_id);
      s.workers = reply->workers;
      answered = true;
    } else {
      return DataLoss(std::string("unexpected ") + MessageKindName(h.kind()) + " reply");
    }
  }
  return Status::Ok();
}

Status PsClient::PullRows(int64_t version, std::span<const SparseRows> rows) {
  PSF_RETURN_IF_ERROR(FinishReceiving());
  if (!shared_) PSF_RETURN_IF_ERROR(ShareMemory());
  PSF_RETURN_IF_ERROR(AssignRows(rows));
  const Deadline deadline = NewDeadline();
  const uint32_t servers = static_cast<uint32_t>(servers_.size());
  std::vector<uint64_t> requests(servers, 0);
  for (uint32_t v = 0; v < servers; ++v) {
    Server& s = servers_[v];
    auto frame = TakeFrame();
    msg::Pull pull;
    pull.version = version;
    pull.key_begin = pull.key_end = s.range.begin;  // rows only
    AppendRowsOf(v, rows, SparseLayout::kPull, frame.get(), &pull.sparse);
    if (pull.sparse.empty()) continue;
    WireHeader h = NewRequest(pull);
    requests[v] = h.request_id;
    Status sent = Send(s, h, {*frame, frame});
    if (!sent.ok()) return sent.WithContext("pull of sparse rows from " + Describe(v, s.socket->endpoint()));
  }
  // The tables as SplitSparsePayload wants them (a reply carries no ids).
  std::vector<int64_t> dims;
  for (const SparseRows& r : rows) {
    if (r.table >= dims.size()) dims.resize(r.table + 1, 0);
    dims[r.table] = r.dim;
  }
  const std::vector<uint64_t> table_rows(dims.size(), 0);
  std::vector<std::byte>& frame = row_reply_;
  for (uint32_t v = 0; v < servers; ++v) {
    if (requests[v] == 0) continue;
    Server& s = servers_[v];
    Status got = AwaitReply(s, requests[v], version, {}, deadline, &frame);
    if (!got.ok()) return got.WithContext("pull of sparse rows from " + Describe(v, s.socket->endpoint()));
    // The reply's blocks must be the pull's, in its order: one per table
    // with rows on this server, as many rows.
    std::size_t block = 0, at = 0;
    bool matches = true;
    for (const SparseRows& r : rows) {
      const uint32_t here = static_cast<uint32_t>(
          std::count(row_server_.begin() + static_cast<std::ptrdiff_t>(at),
                     row_server_.begin() + static_cast<std::ptrdiff_t>(at + r.rows.size()), v));
      at += r.rows.size();
      if (here == 0) continue;
      if (block == last_row_blocks_.size() || last_row_blocks_[block].table != r.table ||
          last_row_blocks_[block].rows != here)
        matches = false;
      ++block;
    }
    if (!matches || block != last_row_blocks_.size())
      return DataLoss(Describe(v, s.socket->endpoint()) + " answered with other rows than its pull asked for");
    auto split = SplitSparsePayload(SparseLayout::kPullReply, frame, 0, last_row_blocks_, dims, table_rows);
    if (!split.ok()) return DataLoss(Describe(v, s.socket->endpoint()) + ": " + split.status().message());
    std::size_t section = 0;
    at = 0;
    for (const SparseRows& r : rows) {
      const std::size_t d = static_cast<std::size_t>(r.dim);
      const std::byte* values = nullptr;
      std::size_t taken = 0;
      for (std::size_t k = 0; k < r.rows.size(); ++k, ++at) {
        if (row_server_[at] != v) continue;
        if (!values) values = (*split)[section++].values.data();
        std::memcpy(r.values.data() + k * d, values + taken++ * d * sizeof(float), d * sizeof(float));
      }
    }
  }
  return Status::Ok();
}

Status PsClient::ControlAll(ControlKind kind, int64_t value, const std::string& what, std::vector<int64_t>* answers) {
  PSF_RETURN_IF_ERROR(FinishReceiving());
  const Deadline deadline = NewDeadline();
  std::vector<uint64_t> requests(servers_.size());
  for (std::size_t i = 0; i < servers_.size(); ++i) {
    WireHeader h = NewRequest(msg::Control{kind, value, {}, {}});
    requests[i] = h.request_id;
    Status sent = Send(servers_[i], h, {});
    if (!sent.ok()) return sent.WithContext(what + " " + Describe(i, servers_[i].socket->endpoint()));
  }
  answers->resize(servers_.size());
  for (std::size_t i = 0; i < servers_.size(); ++i) {
    Status got = AwaitReply(servers_[i], requests[i], 0, {}, deadline);
    if (!got.ok()) return got.WithContext(what + " " + Describe(i, servers_[i].socket->endpoint()));
    (*answers)[i] = control_value_;
  }
  return Status::Ok();
}

int64_t PsClient::workers_in_step() const {
  // Servers that disagree (one has dropped a dead worker, the other not
  // yet): the larger count, so that no step exceeds the job's batch.
  int64_t workers = 0;
  for (const Server& s : servers_) workers = std::max(workers, s.workers);
  return workers > 0 ? workers : cluster_.workers;
}

Result<int64_t> PsClient::Admit() {
  if (!shared_) PSF_RETURN_IF_ERROR(ShareMemory());
  std::vector<int64_t> steps;
  PSF_RETURN_IF_ERROR(ControlAll(ControlKind::kAdmitWorker, 0, "joining", &steps));
  const int64_t start = *std::max_element(steps.begin(), steps.end());
  for (std::size_t i = 0; i < servers_.size(); ++i) {
    Server& s = servers_[i];
    if (steps[i] == start) continue;
    auto nothing = std::make_shared<std::vector<float>>(static_cast<std::size_t>(s.range.size()), 0.0f);
    for (int64_t step = steps[i]; step < start; ++step) {
      msg::Push push;
      push.step = step;
      push.key_begin = s.range.begin;
      push.key_end = s.range.end;
      push.samples = 0;
      WireHeader h = NewRequest(push);
      Status sent = Send(s, h, {std::as_bytes(std::span<const float>(*nothing)), nothing});
      if (!sent.ok()) return sent.WithContext("empty push of step " + std::to_string(step) + " to " +
                                              Describe(i, s.socket->endpoint()));
      s.last_push = "empty push of step " + std::to_string(step);
      ++s.unacked_pushes;
    }
  }
  // Asking again also waits for those pushes' acks; now every server agrees.
  PSF_RETURN_IF_ERROR(ControlAll(ControlKind::kAdmitWorker, 0, "joining", &steps));
  for (std::size_t i = 0; i < servers_.size(); ++i)
    if (steps[i] != start)
      return Internal(Describe(i, servers_[i].socket->endpoint()) + " counts this worker from step " +
                      std::to_string(steps[i]) + ", the others from " + std::to_string(start));
  applied_steps_ = start;
  return start;
}

Status PsClient::Leave() {
  std::vector<int64_t> versions;
  leaving_ = true;
  PSF_RETURN_IF_ERROR(ControlAll(ControlKind::kRemoveWorker, worker_, "leaving", &versions));
  outstanding_.clear();  // the servers dropped this worker's waiting prefetches
  return Status::Ok();
}

Status PsClient::AwaitReleased(int slot, Deadline deadline) {
  MutexLock lock(in_flight_mu_);
  while (in_flight_[slot] != 0)
    if (!in_flight_cv_.WaitUntil(in_flight_mu_, deadline)) break;
  if (in_flight_[slot] != 0)
    return DeadlineExceeded("the transport still holds " + std::to_string(in_flight_[slot]) +
                            " gradient slices");
  return Status::Ok();
}

}  // namespace psforge
