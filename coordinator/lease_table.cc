#include "coordinator/lease_table.h"

#include <algorithm>
#include <string>
#include <tuple>

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
  if (it->second.worker != worker)
    return InvalidArgument("worker " + std::to_string(worker) + " reports lease " + std::to_string(lease) +
                           " done, which is held by worker " + std::to_string(it->second.worker));
  held_.erase(it);
  return Complete(lease);
}

int64_t LeaseTable::Complete(uint64_t lease) {
  done_.insert(lease);
  ++shards_done_;
  records_done_ += plan_->Positions(plan_->ShardOf(lease)).size();
  if (shards_done_ < plan_->shards()) return 0;
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
    std::tie(shard, g.offset) = returned_.front();
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
  held_[g.lease] = {worker, grants_++};
  return g;
}

int64_t LeaseTable::GrantOrder(uint32_t worker, uint64_t lease) const {
  auto it = held_.find(lease);
  return it != held_.end() && it->second.worker == worker ? it->second.order : -1;
}

int64_t LeaseTable::HeldBy(uint32_t worker) const {
  int64_t n = 0;
  for (const auto& [lease, h] : held_) n += h.worker == worker;
  return n;
}

LeaseTable::Returned LeaseTable::ReturnLeases(uint32_t worker, const DataPosition& trained) {
  const int64_t at = GrantOrder(worker, trained.lease);
  // This worker's leases in the order it was granted them.
  std::vector<std::pair<int64_t, uint64_t>> mine;
  for (const auto& [lease, h] : held_)
    if (h.worker == worker) mine.emplace_back(h.order, lease);
  std::sort(mine.begin(), mine.end());
  Returned r;
  for (const auto& [order, lease] : mine) {
    held_.erase(lease);
    if (plan_->EpochOf(lease) != epoch_) continue;
    const int64_t shard = plan_->ShardOf(lease);
    const int64_t size = plan_->Positions(shard).size();
    if (at >= 0 && order < at) {  // the servers have its records up to a later lease
      ++r.completed;
      if (int64_t e = Complete(lease); e > 0) r.epoch_completed = e;
    } else if (order == at && trained.lease_offset >= size) {
      ++r.completed;
      if (int64_t e = Complete(lease); e > 0) r.epoch_completed = e;
    } else if (order == at && trained.lease_offset > 0) {
      ++r.partial;
      returned_.emplace_back(shard, trained.lease_offset);
    } else {
      ++r.whole;
      returned_.emplace_back(shard, 0);
    }
  }
  return r;
}

}  // namespace psforge
