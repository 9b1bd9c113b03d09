#include "coordinator/lease_table.h"

#include <algorithm>
#include <string>
#include <tuple>

namespace psforge {

LeaseState ReplayLeases(const ShardPlan& plan, int64_t epochs, const LeaseState& base,
                        const std::vector<GrantRecord>& grants,
                        const std::map<uint32_t, DataPosition>& positions) {
  if (base.epoch > epochs) return base;  // every epoch was complete
  auto size_of = [&](int64_t shard) { return plan.Positions(shard).size(); };
  // The records trained of each lease, as ranges of its shard.
  std::map<uint64_t, std::vector<std::pair<int64_t, int64_t>>> trained;
  for (int64_t shard : base.done) trained[plan.LeaseId(base.epoch, shard)].emplace_back(0, size_of(shard));
  for (const auto& [shard, offset] : base.partial) trained[plan.LeaseId(base.epoch, shard)].emplace_back(0, offset);
  // Per worker, the grant its position is in.
  std::map<uint32_t, std::size_t> at;
  for (std::size_t i = 0; i < grants.size(); ++i) {
    auto p = positions.find(grants[i].worker);
    if (p != positions.end() && p->second.lease == grants[i].lease) at[grants[i].worker] = i;
  }
  for (std::size_t i = 0; i < grants.size(); ++i) {
    const GrantRecord& g = grants[i];
    auto last = at.find(g.worker);
    if (last == at.end() || i > last->second) continue;  // granted after its position: untouched
    const int64_t size = size_of(plan.ShardOf(g.lease));
    const int64_t to = i == last->second ? std::min(size, positions.at(g.worker).lease_offset) : size;
    if (to > g.offset) trained[g.lease].emplace_back(g.offset, to);
  }
  // Epoch by epoch: each shard is trained as far as its ranges reach from record 0.
  for (int64_t e = base.epoch; e <= epochs; ++e) {
    LeaseState state{e, {}, {}, {}};
    for (int64_t shard = 0; shard < plan.shards(); ++shard) {
      auto it = trained.find(plan.LeaseId(e, shard));
      if (it == trained.end()) continue;
      std::sort(it->second.begin(), it->second.end());
      int64_t reach = 0;
      for (const auto& [from, to] : it->second)
        if (from <= reach) reach = std::max(reach, to);
      if (reach >= size_of(shard)) state.done.push_back(shard);
      else if (reach > 0) state.partial.emplace_back(shard, reach);
    }
    for (const auto& [worker, i] : at) {
      const uint64_t lease = grants[i].lease;
      const int64_t to = positions.at(worker).lease_offset;
      for (const auto& [shard, reach] : state.partial)
        if (plan.LeaseId(e, shard) == lease && reach == to) state.owner[shard] = worker;
    }
    if (static_cast<int64_t>(state.done.size()) < plan.shards()) return state;
  }
  return LeaseState{epochs + 1, {}, {}, {}};
}

LeaseTable::LeaseTable(const ShardPlan* plan, int64_t workers, int64_t epochs, bool lockstep)
    : plan_(plan), workers_(workers), epochs_(epochs), lockstep_(lockstep), own_(workers) {
  StartEpoch(1);
}

void LeaseTable::Restore(const LeaseState& state) {
  held_.clear();
  absent_.clear();  // every place is taken again (or declared dead anew)
  if (state.epoch > epochs_) {  // the data is done
    StartEpoch(epochs_);
    for (auto& q : own_) q.clear();
    completed_ = epochs_;
    return;
  }
  completed_ = state.epoch - 1;
  StartEpoch(state.epoch);
  std::set<int64_t> taken(state.done.begin(), state.done.end());
  for (const auto& [shard, offset] : state.partial) taken.insert(shard);
  for (auto& q : own_)
    q.erase(std::remove_if(q.begin(), q.end(), [&](int64_t shard) { return taken.count(shard) > 0; }), q.end());
  for (int64_t shard : state.done) {
    done_.insert(plan_->LeaseId(epoch_, shard));
    ++shards_done_;
    records_done_ += plan_->Positions(shard).size();
  }
  for (const auto& [shard, offset] : state.partial) {
    auto owner = state.owner.find(shard);
    if (owner == state.owner.end() || owner->second >= own_.size()) {
      returned_.emplace_back(shard, offset);
      continue;
    }
    own_[owner->second].push_front(shard);
    resume_at_[shard] = offset;
  }
}

void LeaseTable::StartEpoch(int64_t epoch) {
  epoch_ = epoch;
  shards_done_ = 0;
  records_done_ = 0;
  returned_.clear();
  done_.clear();
  resume_at_.clear();
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
    // Take over from the worker with the most left. In lockstep only from
    // one that is absent (dead, not yet replaced) or has 2 or more left:
    // without failures the workers' queues run out within a step of each
    // other, so this never happens and timing decides nothing.
    std::deque<int64_t>* most = nullptr;
    for (std::size_t w = 0; w < own_.size(); ++w) {
      auto& q = own_[w];
      if (q.empty() || (most && q.size() <= most->size())) continue;
      if (lockstep_ && !absent_.count(static_cast<uint32_t>(w)) && q.size() < 2) continue;
      most = &q;
    }
    if (most) {
      shard = most->back();
      most->pop_back();
    }
  }
  if (shard < 0) return g;  // wait: the epoch's last shards are held by others
  if (auto r = resume_at_.find(shard); r != resume_at_.end()) {
    g.offset = r->second;
    resume_at_.erase(r);
  }
  g.status = LeaseStatus::kGranted;
  g.lease = plan_->LeaseId(epoch_, shard);
  g.epoch = epoch_;
  g.positions = plan_->Positions(shard);
  held_[g.lease] = {worker, grants_++, g.offset};
  return g;
}

void LeaseTable::SetAbsent(uint32_t worker, bool absent) {
  if (absent) absent_.insert(worker);
  else absent_.erase(worker);
}

void LeaseTable::UsedUp(uint32_t worker, int64_t step) {
  for (auto& [lease, h] : held_)
    if (h.worker == worker && h.used_up < 0) h.used_up = step;
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
  struct Mine {
    int64_t order;
    uint64_t lease;
    int64_t granted_at;  // its first record when granted
    bool operator<(const Mine& o) const { return order < o.order; }
  };
  std::vector<Mine> mine;
  for (const auto& [lease, h] : held_)
    if (h.worker == worker) mine.push_back({h.order, lease, h.offset});
  std::sort(mine.begin(), mine.end());
  Returned r;
  for (const auto& [order, lease, granted_at] : mine) {
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
    } else if (const int64_t from = std::max(granted_at, order == at ? trained.lease_offset : int64_t{0});
               from > 0) {
      ++r.partial;
      returned_.emplace_back(shard, from);
    } else {
      ++r.whole;
      returned_.emplace_back(shard, 0);
    }
  }
  return r;
}

}  // namespace psforge
