#include "coordinator/membership.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "coordinator/lease_table.h"

namespace psforge {

const char* RoleName(PeerRole role) { return role == PeerRole::kServer ? "server" : "worker"; }

std::string PidSuffix(uint32_t pid) { return pid == 0 ? "" : " (pid " + std::to_string(pid) + ")"; }

const char* MemberStateName(MemberState state) {
  switch (state) {
    case MemberState::kJoining: return "joining";
    case MemberState::kActive: return "active";
    case MemberState::kFinished: return "finished";
    case MemberState::kDead: return "dead";
  }
  return "?";
}

Member* Membership::Find(PeerRole role, uint32_t id) {
  auto& list = role == PeerRole::kServer ? servers_ : workers_;
  return id < list.size() ? &list[id] : nullptr;
}

void Membership::TakePlace(Member* place, const std::string& peer, const WireHeader& h) {
  const auto& r = std::get<msg::Register>(h.body);
  Member fresh;
  fresh.role = r.role;
  fresh.id = place->id;
  fresh.endpoint = r.endpoint;
  fresh.public_key = r.public_key;
  fresh.pid = r.pid;
  fresh.peer = peer;
  fresh.join_request = h.request_id;
  fresh.last_seen = Clock::now();
  *place = fresh;
}

Membership::Placed Membership::Place(const std::string& peer, const WireHeader& h, bool collecting) {
  const bool server = std::get<msg::Register>(h.body).role == PeerRole::kServer;
  auto& list = server ? servers_ : workers_;
  const int64_t wanted = server ? wanted_servers_ : wanted_workers_;
  Member* dead = nullptr;
  if (server) {
    // A restarted server takes the place of the one that died.
    auto it = std::find_if(list.begin(), list.end(), [](const Member& m) { return m.state == MemberState::kDead; });
    if (it != list.end()) dead = &*it;
  } else if (static_cast<int64_t>(list.size()) >= wanted) {
    dead = ReplaceableWorker(collecting);
  }
  if (dead) {
    TakePlace(dead, peer, h);
    return {Placement::kDeadPlace, dead};
  }
  if (static_cast<int64_t>(list.size()) >= wanted) {
    auto& waiting = server ? waiting_servers_ : waiting_workers_;
    if (static_cast<int64_t>(waiting.size()) >= wanted) return {Placement::kFull, nullptr};
    waiting.emplace_back(peer, h);
    return {Placement::kWaiting, nullptr};
  }
  Member member;
  member.id = static_cast<uint32_t>(list.size());
  list.push_back(member);
  TakePlace(&list.back(), peer, h);
  return {Placement::kNewPlace, &list.back()};
}

Member* Membership::ReplaceableWorker(bool collecting) {
  if (collecting) return nullptr;
  for (Member& w : workers_) {
    // Dead while training (not after it finished), its leases back in the
    // pool, and every server has stopped waiting for it: a newcomer in its
    // place starts clean.
    if (w.state != MemberState::kDead || w.final_step >= 0 || w.removal < 0) continue;
    if (std::find(awaiting_positions_.begin(), awaiting_positions_.end(), w.id) != awaiting_positions_.end()) continue;
    const bool known = std::all_of(servers_.begin(), servers_.end(), [&](const Member& s) {
      return s.state == MemberState::kActive && s.removals_known > w.removal;
    });
    if (known) return &w;
  }
  return nullptr;
}

std::optional<Registration> Membership::NextAdmissible(bool collecting) {
  const bool dead_server =
      std::any_of(servers_.begin(), servers_.end(), [](const Member& m) { return m.state == MemberState::kDead; });
  for (auto* waiting : {&waiting_servers_, &waiting_workers_}) {
    const bool place = waiting == &waiting_servers_ ? dead_server : ReplaceableWorker(collecting) != nullptr;
    if (waiting->empty() || !place) continue;
    Registration r = std::move(waiting->front());
    waiting->erase(waiting->begin());
    return r;
  }
  return std::nullopt;
}

std::vector<Registration> Membership::TakeWaiting(PeerRole role) {
  auto& waiting = role == PeerRole::kServer ? waiting_servers_ : waiting_workers_;
  std::vector<Registration> taken = std::move(waiting);
  waiting.clear();
  return taken;
}

std::vector<Member*> Membership::ToWelcome(bool collecting) {
  std::vector<Member*> welcome;
  if (!all_servers_registered()) return welcome;
  for (auto* list : {&servers_, &workers_})
    for (Member& m : *list) {
      if (m.state != MemberState::kJoining) continue;
      if (m.role == PeerRole::kWorker && collecting) continue;  // the servers load the checkpoint first
      welcome.push_back(&m);
    }
  return welcome;
}

void Membership::Welcomed(Member* m, Clock::time_point now) {
  m->state = MemberState::kActive;
  m->last_seen = now;
}

std::optional<Membership::Silence> Membership::NextSilent(Clock::time_point now, double peer_timeout_s,
                                                           double heartbeat_interval_s) {
  for (auto* list : {&servers_, &workers_}) {
    const bool replacement = !(list == &servers_ ? waiting_servers_ : waiting_workers_).empty();
    const double silent_s = replacement ? std::min(peer_timeout_s, 4 * heartbeat_interval_s) : peer_timeout_s;
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.1f", silent_s);
    for (Member& m : *list) {
      const bool finished_worker = m.role == PeerRole::kWorker && m.state == MemberState::kFinished;
      if ((m.state != MemberState::kActive && !finished_worker) || now - m.last_seen <= Seconds(silent_s)) continue;
      m.state = MemberState::kDead;
      if (finished_worker) continue;
      return Silence{&m, std::string(seconds) + (replacement ? " s (and a restarted one waits for a place)"
                                                             : " s (cluster.peer_timeout_s)")};
    }
  }
  return std::nullopt;
}

void Membership::RemoveWorker(Member* m) {
  m->state = MemberState::kDead;
  m->removal = static_cast<int64_t>(removed_.size());
  removed_.push_back(m->id);
  // Where its data stopped: the servers say so once they have removed it
  // (an earlier report is of its predecessor in this place).
  for (Member& s : servers_) s.positions.erase(m->id);
  awaiting_positions_.push_back(m->id);
}

std::vector<Member*> Membership::AddUntakenWorkerPlaces(Clock::time_point now) {
  const std::size_t first = workers_.size();
  while (static_cast<int64_t>(workers_.size()) < wanted_workers_) {
    Member place;
    place.id = static_cast<uint32_t>(workers_.size());
    place.last_seen = now;
    workers_.push_back(place);
  }
  std::vector<Member*> added;
  for (std::size_t i = first; i < workers_.size(); ++i) added.push_back(&workers_[i]);
  return added;
}

void Membership::FillRemoved(uint32_t known, msg::Heartbeat* answer) const {
  // One page at a time: a member that knows `known` removals gets the next ones.
  const std::size_t from = std::min<std::size_t>(known, removed_.size());
  const std::size_t to = std::min(removed_.size(), from + kMaxListEntries);
  answer->removed_from = static_cast<uint32_t>(from);
  answer->removed.assign(removed_.begin() + static_cast<std::ptrdiff_t>(from),
                         removed_.begin() + static_cast<std::ptrdiff_t>(to));
}

std::optional<Membership::DeadWorkerData> Membership::PositionsOf(uint32_t w, const LeaseTable& leases) const {
  // Each server's last position of w, ordered by w's leases: the earliest
  // one is what every server has applied.
  std::optional<DataPosition> earliest;
  DeadWorkerData d;
  int64_t first_missing = std::numeric_limits<int64_t>::max();
  auto key = [&](const DataPosition& p) { return std::make_pair(leases.GrantOrder(w, p.lease), p.lease_offset); };
  for (const Member& s : servers_) {
    auto p = s.positions.find(w);
    if (p == s.positions.end()) return std::nullopt;
    d.reports += (d.reports.empty() ? "" : ", ") + std::string("server ") + std::to_string(s.id) + " lease " +
                 std::to_string(p->second.lease) + " record " + std::to_string(p->second.lease_offset);
    if (earliest && key(*earliest) != key(p->second)) d.agree = false;
    if (!earliest || key(p->second) < key(*earliest)) earliest = p->second;
    first_missing = p->second.step < 0 ? -1 : std::min(first_missing, p->second.step + 1);
  }
  if (!earliest) return std::nullopt;
  d.earliest = *earliest;
  d.first_missing = first_missing;
  return d;
}

std::vector<Registration> Membership::NewGeneration() {
  for (Member& s : servers_) {
    s.restored = -2;
    s.restored_positions.clear();
    s.positions.clear();
    s.audit.clear();
    s.durable.clear();
    s.removals_known = 0;
  }
  workers_.clear();
  removed_.clear();
  awaiting_positions_.clear();
  return TakeWaiting(PeerRole::kWorker);
}

bool Membership::AnyWorkerActive() const {
  return std::any_of(workers_.begin(), workers_.end(), [](const Member& w) { return w.state == MemberState::kActive; });
}

bool Membership::AnyWorkerAlive() const {
  return std::any_of(workers_.begin(), workers_.end(), [](const Member& w) {
    return w.state == MemberState::kActive || w.state == MemberState::kJoining || w.state == MemberState::kFinished;
  });
}

bool Membership::ShutdownComplete() const {
  for (const Member& s : servers_)
    if (s.state == MemberState::kActive && (!s.told_stop || !s.farewell)) return false;
  for (const Member& w : workers_)
    if (w.state == MemberState::kActive && !w.told_stop) return false;
  return true;
}

}  // namespace psforge
