#include "coordinator/lease_table.h"

#include <string>

namespace psforge {

LeaseTable::LeaseTable(const ShardPlan* plan, int64_t workers, int64_t epochs)
    : plan_(plan), workers_(workers), epochs_(epochs), own_(workers) {
  StartEpoch(1);
}

void LeaseTable::StartEpoch(int64_t epoch) {
  epoch_ = epoch;
  shards_done_ = 0;
  records_done_ = 0;
  returned_.clear();
  done_.clear();
  for (auto& q : own_) q.clear();
  auto order = plan_->EpochOrder(epoch);
  for (std::size_t k = 0; k < order.size(); ++k) own_[k % workers_].push_back(order[k]);
}

Result<int64_t> LeaseTable::Done(uint32_t worker, uint64_t lease) {
  auto it = held_.find(lease);
  if (it == held_.end()) {
    if (plan_->EpochOf(lease) < epoch_ || done_.count(lease)) return int64_t{0};  // a repeat
    return InvalidArgument("worker " + std::to_string(worker) + " reports lease " +
                           std::to_string(lease) + " done, which was never granted");
  }
  if (it->second != worker)
    return InvalidArgument("worker " + std::to_string(worker) + " reports lease " + std::to_string(lease) +
                           " done, which is held by worker " + std::to_string(it->second));
  held_.erase(it);
  done_.insert(lease);
  ++shards_done_;
  records_done_ += plan_->Positions(plan_->ShardOf(lease)).size();
  if (shards_done_ < plan_->shards()) return int64_t{0};
  completed_ = epoch_;
  if (completed_ < epochs_) StartEpoch(epoch_ + 1);
  return completed_;
}

LeaseTable::Grant LeaseTable::Next(uint32_t worker) {
  Grant g;
  if (finished()) {
    g.status = LeaseStatus::kFinished;
    return g;
  }
  int64_t shard = -1;
  if (!returned_.empty()) {
    shard = returned_.front();
    returned_.pop_front();
  } else if (worker < own_.size() && !own_[worker].empty()) {
    shard = own_[worker].front();
    own_[worker].pop_front();
  } else {
    std::deque<int64_t>* most = nullptr;
    for (auto& q : own_)
      if (!q.empty() && (!most || q.size() > most->size())) most = &q;
    if (most) {
      shard = most->back();
      most->pop_back();
    }
  }
  if (shard < 0) return g;  // wait: the epoch's last shards are held by others
  g.status = LeaseStatus::kGranted;
  g.lease = plan_->LeaseId(epoch_, shard);
  g.epoch = epoch_;
  g.positions = plan_->Positions(shard);
  held_[g.lease] = worker;
  return g;
}

void LeaseTable::ReturnLeases(uint32_t worker) {
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->second == worker) {
      if (plan_->EpochOf(it->first) == epoch_) returned_.push_back(plan_->ShardOf(it->first));
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace psforge
