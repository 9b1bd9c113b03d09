// PsClient's parts of a step that move one at a time (BSP through frames):
// pushes sent as backward makes them final (PushReady), and pulls whose
// later parts the next forward pass takes as it reaches them (PullFirst,
// AwaitWeights). The rest of PsClient is in ps_client.cc.
#include <algorithm>
#include <limits>

#include "worker/ps_client.h"

namespace psforge {

Status PsClient::PushReady(int64_t step, std::span<const float> gradient, int64_t samples, const DataMark& mark,
                           int64_t begin, int64_t end) {
  // Ahead of Push only where the gradient is sent in place and the
  // reply awaited before the next step computes (no overlap copy).
  if (overlap_ || !cluster_.push_during_backward || begin >= end) return Status::Ok();
  PSF_RETURN_IF_ERROR(FinishReceiving());
  if (!shared_) PSF_RETURN_IF_ERROR(ShareMemory());
  if (ahead_step_ != step) {
    ahead_step_ = step;
    ahead_ = Outstanding{step + 1, {}, step};
    final_.clear();
    for (Server& s : servers_) std::fill(s.sent_ahead.begin(), s.sent_ahead.end(), 0);
  }
  // Merge [begin, end) into the final ranges.
  KeyRange merged{begin, end};
  std::size_t keep = 0;
  for (const KeyRange& r : final_) {
    if (r.end < merged.begin || r.begin > merged.end) {
      final_[keep++] = r;
    } else {
      merged.begin = std::min(merged.begin, r.begin);
      merged.end = std::max(merged.end, r.end);
    }
  }
  final_.resize(keep);
  final_.insert(std::upper_bound(final_.begin(), final_.end(), merged,
                                 [](const KeyRange& a, const KeyRange& b) { return a.begin < b.begin; }),
                merged);
  // Send every part now wholly final (only those in the merged range can be new).
  for (uint32_t i = 0; i < servers_.size(); ++i) {
    Server& s = servers_[i];
    if (s.region || s.range.end <= merged.begin || s.range.begin >= merged.end) continue;
    for (int64_t k = 0; k < s.parts; ++k) {
      const KeyRange part = PartitionKeys(s.range.size(), s.parts, k);
      const int64_t b = s.range.begin + part.begin, e = s.range.begin + part.end;
      if (s.sent_ahead[k] || b < merged.begin || e > merged.end) continue;
      s.sent_ahead[k] = 1;
      ++parts_sent_ahead_;
      PSF_RETURN_IF_ERROR(
          PushPart(i, b, e, step, gradient, gradient, 0, samples, mark, {}, step + 1, false, &ahead_.requests));
    }
  }
  return Status::Ok();
}

std::vector<int64_t> PsClient::PartStarts(int64_t params, const ClusterOptions& cluster) {
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < cluster.servers; ++i) {
    const KeyRange range = PartitionKeys(params, cluster.servers, i);
    const int64_t parts = PartCount(range.size(), cluster.chunk_kb);
    for (int64_t k = 0; k < parts; ++k) starts.push_back(range.begin + PartitionKeys(range.size(), parts, k).begin);
  }
  return starts;
}

bool PsClient::AllThroughFrames() const {
  return shared_ && std::none_of(servers_.begin(), servers_.end(), [](const Server& s) { return s.region != nullptr; });
}

std::vector<int64_t> PsClient::part_starts() const {
  if (overlap_ || !(cluster_.push_during_backward || cluster_.priority_pulls) || !AllThroughFrames()) return {};
  const int64_t params = servers_.empty() ? 0 : servers_.back().range.end;
  return PartStarts(params, cluster_);
}

Status PsClient::PullFirst(int64_t step, std::span<float> weights) {
  // BSP only: the step counts as applied (applied_steps) once every part
  // is in, a step later than Pull would say, which the coordinator's
  // lockstep accounting does not depend on (lease_table.h) but an SSP
  // worker's list of finished shards does.
  if (overlap_ || cluster_.consistency != Consistency::kBsp || !cluster_.priority_pulls || !AllThroughFrames() || receiving_ ||
      outstanding_.empty() || outstanding_.front().version != step)
    return Pull(step, weights);
  receiving_ = Receiving{step, std::move(outstanding_.front()), {}, weights};
  outstanding_.pop_front();
  receiving_->got.assign(receiving_->asked.requests.size(), 0);
  // Each server's lowest part: its reply says how many workers the
  // server waited for (workers_in_step), and the next forward pass needs
  // the first keys first.
  const Deadline deadline = NewDeadline();
  for (uint32_t i = 0; i < servers_.size(); ++i) {
    std::size_t lowest = receiving_->got.size();
    for (std::size_t r = 0; r < receiving_->asked.requests.size(); ++r) {
      const PartRequest& q = receiving_->asked.requests[r];
      if (q.server == i && (lowest == receiving_->got.size() || q.begin < receiving_->asked.requests[lowest].begin))
        lowest = r;
    }
    if (lowest < receiving_->got.size()) PSF_RETURN_IF_ERROR(ReceivePart(lowest, deadline));
  }
  return Status::Ok();
}

Status PsClient::ReceivePart(std::size_t r, Deadline deadline) {
  const PartRequest q = receiving_->asked.requests[r];
  const int64_t version = receiving_->version;
  Server& s = servers_[q.server];
  Status got = AwaitReply(s, q.request, version, receiving_->weights.subspan(q.begin, q.end - q.begin), deadline);
  if (!got.ok()) {
    receiving_.reset();
    return got.WithContext("pull of version " + std::to_string(version) + " from " +
                           Describe(q.server, s.socket->endpoint()));
  }
  receiving_->got[r] = 1;
  return Status::Ok();
}

Status PsClient::AwaitWeights(int64_t end) {
  if (!receiving_) return Status::Ok();
  const Deadline deadline = NewDeadline();
  bool all = true;
  for (std::size_t r = 0; r < receiving_->got.size(); ++r) {
    if (receiving_->got[r]) continue;
    if (receiving_->asked.requests[r].begin < end) {
      PSF_RETURN_IF_ERROR(ReceivePart(r, deadline));
      ++parts_pulled_late_;
    } else {
      all = false;
    }
  }
  if (!all) return Status::Ok();
  applied_steps_ = std::max(applied_steps_, receiving_->asked.push_step + 1);
  receiving_.reset();
  return AwaitReleased(0, deadline);
}

Status PsClient::FinishReceiving() {
  return receiving_ ? AwaitWeights(std::numeric_limits<int64_t>::max()) : Status::Ok();
}

}  // namespace psforge
