// A server's pulls: answered at once when their version is there, parked
// until it is (each with a deadline, and a stall report when it passes),
// and the replies (frames, a worker's shared-memory slot, or in place).
#include <algorithm>
#include <cstdio>

#include "common/clock.h"
#include "common/sparse_payload.h"
#include "paramserver/server.h"

namespace psforge {
namespace {

std::string Join(const std::vector<uint32_t>& v) {
  std::string s;
  for (uint32_t x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

}  // namespace

void ParamServer::HandlePull(const std::string& peer, const WireHeader& h, const msg::Pull& pull,
                             const InMessage& m, bool rows_in_frame) {
  std::vector<SparseSection> rows;
  if (rows_in_frame && !pull.sparse.empty()) {
    TableShard* tables = shard_->tables();
    if (!tables)
      return ReplyError(peer, h, "bad_pull",
                        InvalidArgument("pull names rows of sparse table " + std::to_string(pull.sparse[0].table) +
                                        "; this job's model has no sparse tables"));
    auto split = SplitSparsePayload(SparseLayout::kPull, m.frames[1]->bytes(), 0, pull.sparse, tables->dims(),
                                    tables->table_rows());
    if (!split.ok()) return ReplyError(peer, h, "bad_pull", split.status());
    if (Status mine = tables->CheckRowsOf(*split); !mine.ok()) return ReplyError(peer, h, "bad_pull", mine);
    rows = std::move(*split);
  }
  Status valid = shard_->ValidatePull(h.sender, pull.version, pull.key_begin, pull.key_end, !rows.empty());
  if (!valid.ok()) return ReplyError(peer, h, "bad_pull", valid);
  if (shard_->Ready(pull.version, pull.key_begin, pull.key_end, !rows.empty())) return ReplyPull(peer, h, pull, rows);
  // Counted per part of the range: a worker's step asks for each part.
  const int64_t most = config_.cluster.max_parked_pulls * shard_->parts();
  if (static_cast<int64_t>(parked_.size()) >= most)
    return ReplyError(peer, h, "too_many_parked_pulls",
                      ResourceExhausted("this server already holds " + std::to_string(parked_.size()) +
                                        " waiting pulls (cluster.max_parked_pulls, " +
                                        std::to_string(config_.cluster.max_parked_pulls) + " per part of " +
                                        std::to_string(shard_->parts()) + ")"));
  ++stats_.pulls_parked;
  auto timeout = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(config_.cluster.request_timeout_s));
  parked_.push_back({peer, h, pull, std::move(rows), Clock::now() + timeout});
}

void ParamServer::AnswerReadyPulls() {
  auto ready = [&](const ParkedPull& p) {
    return shard_->Ready(p.pull.version, p.pull.key_begin, p.pull.key_end, !p.rows.empty());
  };
  for (const auto& p : parked_)
    if (ready(p)) ReplyPull(p.peer, p.request, p.pull, p.rows);
  parked_.erase(std::remove_if(parked_.begin(), parked_.end(), ready), parked_.end());
}

void ParamServer::ExpireParkedPulls() {
  const auto now = Clock::now();
  auto expired = [&](const ParkedPull& p) { return p.deadline <= now; };
  for (const auto& p : parked_) {
    if (!expired(p)) continue;
    ++stats_.pulls_timed_out;
    std::string report = "pull for version " + std::to_string(p.pull.version) + " waited " +
                         std::to_string(config_.cluster.request_timeout_s) + " s; server at version " +
                         std::to_string(shard_->version()) + " over keys [" +
                         std::to_string(shard_->range().begin) + ", " +
                         std::to_string(shard_->range().end) + ") is waiting for workers " +
                         Join(shard_->Lagging());
    std::fprintf(stderr, "ps-server stall: %s\n", report.c_str());
    ReplyError(p.peer, p.request, "pull_timeout", DeadlineExceeded(report));
  }
  parked_.erase(std::remove_if(parked_.begin(), parked_.end(), expired), parked_.end());
}

void ParamServer::ReplyPull(const std::string& peer, const WireHeader& request, const msg::Pull& pull,
                            std::span<const SparseSection> rows) {
  msg::PullReply r;
  r.version = rows.empty() ? shard_->VersionOf(pull.key_begin, pull.key_end) : shard_->version();
  r.key_begin = pull.key_begin;
  r.key_end = pull.key_end;
  r.workers = shard_->workers_waited_for();
  r.dtype = pull.dtype;
  std::span<const float> w = shard_->Weights(pull.key_begin, pull.key_end);
  std::span<const std::byte> dense = std::as_bytes(w);
  if (pull.dtype != DType::kF32) {
    // Rounded for the wire (cluster.wire_dtype); this server's weights stay float32.
    reply_values_.resize(w.size() * DTypeBytes(pull.dtype));
    EncodeValues(pull.dtype, w.data(), static_cast<int64_t>(w.size()), reply_values_.data());
    dense = reply_values_;
  }
  if (!rows.empty()) {
    // The rows' weights in a frame after the dense one (which may be sent
    // in place); checked when the pull came in.
    reply_rows_.clear();
    for (const SparseSection& s : rows) {
      (void)shard_->tables()->Read(s.table, s.rows, &reply_rows_);
      r.sparse.push_back({s.table, static_cast<uint32_t>(s.rows.size()), 0});
    }
    OutFrame frames[2] = {{dense, nullptr}, {std::as_bytes(std::span(reply_rows_)), nullptr}};
    Reply(peer, ReplyTo(request, r), frames);
    ++stats_.pulls_answered;
    return;
  }
  auto region = pull.reply_slot != 0 ? regions_.find(request.sender) : regions_.end();
  if (region != regions_.end() && dense.size() <= region->second->slot(pull.reply_slot).size()) {
    // Into the worker's region; the reply names the slot and its sequence.
    r.payload_slot = pull.reply_slot;
    r.slot_sequence = region->second->Write(pull.reply_slot, dense);
    Reply(peer, ReplyTo(request, r));
    ++stats_.pulls_answered;
    return;
  }
  // BSP: the weights cannot change before every worker has received this
  // reply (the next update needs all their next pushes), so they are sent in
  // place. SSP/ASP: other workers' pushes may land while the reply is on its
  // way, so it is copied.
  std::shared_ptr<const void> owner;
  if (config_.cluster.consistency == Consistency::kBsp && pull.dtype == DType::kF32) owner = shard_;
  Reply(peer, ReplyTo(request, r), {dense, owner});
  ++stats_.pulls_answered;
}

}  // namespace psforge
