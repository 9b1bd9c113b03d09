// The coordinator's membership: registration, welcomes, members that take
// the place of dead ones, and the leases of dead workers (coordinator.h).
#include <algorithm>
#include <cstdio>
#include <limits>

#include "common/clock.h"
#include "coordinator/coordinator.h"

namespace psforge {
namespace {


const char* RoleName(PeerRole r) { return r == PeerRole::kServer ? "server" : "worker"; }

}  // namespace

void Coordinator::HandleRegister(const std::string& peer, const WireHeader& h) {
  if (job_over_) return ReplyError(peer, h, Cancelled("the job is over"));
  const bool server = h.role == PeerRole::kServer;
  if (!server && h.role != PeerRole::kWorker)
    return ReplyError(peer, h, InvalidArgument("only servers and workers join a job"));
  if (server && h.endpoint.empty())
    return ReplyError(peer, h, InvalidArgument("a server must say where workers reach it"));
  // Under CURVE workers connect to a server with the key it registers with:
  // it must be one of the cluster's (and the server's, or they cannot connect).
  if (server && !transport_->public_key().empty() && !transport_->is_cluster_key(h.public_key))
    return ReplyError(peer, h, InvalidArgument("a server at " + h.endpoint + " registered with public key '" +
                                               h.public_key + "', which is not in the cluster key file"));
  auto& list = server ? servers_ : workers_;
  const int64_t wanted = server ? config_.cluster.servers : config_.cluster.workers;
  if (server) {
    // A restarted server takes the place of the one that died.
    auto dead = std::find_if(list.begin(), list.end(), [](const Member& m) { return m.state == MemberState::kDead; });
    if (dead != list.end()) {
      Log("server " + std::to_string(dead->id) + " joined again at " + h.endpoint + Pid(h.pid));
      TakePlace(&*dead, peer, h);
      return WelcomeAll();
    }
  } else if (static_cast<int64_t>(list.size()) >= wanted) {
    if (Member* dead = ReplaceableWorker()) {
      Log("worker " + std::to_string(dead->id) + " joined again (it takes the place of the one declared dead" +
          (h.pid ? "; pid " + std::to_string(h.pid) : "") + ")");
      TakePlace(dead, peer, h);
      return WelcomeAll();
    }
  }
  // A restarted member may be quicker than its predecessor's heartbeat
  // timeout: it waits for the next place to free up.
  auto& waiting = server ? waiting_servers_ : waiting_workers_;
  if (static_cast<int64_t>(list.size()) >= wanted && static_cast<int64_t>(waiting.size()) < wanted) {
    Log(std::string("a ") + RoleName(h.role) + " registered" + (server ? " at " + h.endpoint : "") +
        " while every " + RoleName(h.role) + " place is taken; it takes the place of the next one declared dead");
    waiting.emplace_back(peer, h);
    return;
  }
  if (static_cast<int64_t>(list.size()) >= wanted)
    return ReplyError(peer, h, ResourceExhausted(std::string("the job already has its ") +
                                                 std::to_string(wanted) + " " + RoleName(h.role) +
                                                 "s (cluster." + RoleName(h.role) + "s)"));
  Member member;
  member.id = static_cast<uint32_t>(list.size());
  list.push_back(member);
  TakePlace(&list.back(), peer, h);
  Log(std::string(RoleName(h.role)) + " " + std::to_string(member.id) + " joined" +
      (server ? " at " + h.endpoint : "") + " (" + std::to_string(list.size()) + " of " + std::to_string(wanted) +
      (h.pid ? "; pid " + std::to_string(h.pid) : "") + ")");
  WelcomeAll();
}

void Coordinator::TakePlace(Member* place, const std::string& peer, const WireHeader& h) {
  Member fresh;
  fresh.role = h.role;
  fresh.id = place->id;
  fresh.endpoint = h.endpoint;
  fresh.public_key = h.public_key;
  fresh.pid = h.pid;
  fresh.peer = peer;
  fresh.join_request = h.request_id;
  fresh.last_seen = Clock::now();
  *place = fresh;
}

Coordinator::Member* Coordinator::ReplaceableWorker() {
  if (collecting_) return nullptr;
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

void Coordinator::AdmitWaitingMembers() {
  if (!waiting_servers_.empty() &&
      std::any_of(servers_.begin(), servers_.end(), [](const Member& m) { return m.state == MemberState::kDead; })) {
    auto [peer, request] = waiting_servers_.front();
    waiting_servers_.erase(waiting_servers_.begin());
    HandleRegister(peer, request);
  }
  while (!waiting_workers_.empty() && ReplaceableWorker()) {
    auto [peer, request] = waiting_workers_.front();
    waiting_workers_.erase(waiting_workers_.begin());
    HandleRegister(peer, request);
  }
}

void Coordinator::WelcomeAll() {
  if (static_cast<int64_t>(servers_.size()) < config_.cluster.servers) return;
  std::vector<std::string> endpoints, keys;
  for (const auto& s : servers_) endpoints.push_back(s.endpoint);
  if (!transport_->public_key().empty())
    for (const auto& s : servers_) keys.push_back(s.public_key);
  const std::string job = EncodeJob(config_, endpoints, keys);
  for (auto* list : {&servers_, &workers_}) {
    for (Member& m : *list) {
      if (m.state != MemberState::kJoining) continue;
      if (m.role == PeerRole::kWorker && collecting_) continue;  // the servers load the checkpoint first
      WireHeader w;
      w.kind = MessageKind::kWelcome;
      w.request_id = m.join_request;
      w.sender = m.id;
      w.generation = generation_;
      w.step = restore_step_;
      Reply(m.peer, w, {std::as_bytes(std::span<const char>(job.data(), job.size())), nullptr});
      m.state = MemberState::kActive;
      m.last_seen = Clock::now();
      if (m.role == PeerRole::kWorker && started_ == Clock::time_point{}) started_ = Clock::now();
    }
  }
}

void Coordinator::RemoveWorker(Member* m, const std::string& why) {
  m->state = MemberState::kDead;
  leases_.SetAbsent(m->id, true);
  m->removal = static_cast<int64_t>(removed_.size());
  removed_.push_back(m->id);
  // Where its data stopped: the servers say so once they have removed it
  // (an earlier report is of its predecessor in this place).
  for (Member& s : servers_) s.positions.erase(m->id);
  awaiting_positions_.push_back(m->id);
  Log(why + "; servers stop waiting for it, and its " + std::to_string(leases_.HeldBy(m->id)) +
      " leases return to the pool from where the servers say its data stopped");
}

void Coordinator::DeclareUntakenPlacesDead() {
  if (rejoin_deadline_ == Clock::time_point{} || collecting_ || Clock::now() < rejoin_deadline_) return;
  rejoin_deadline_ = {};
  while (static_cast<int64_t>(workers_.size()) < config_.cluster.workers) {
    Member place;
    place.id = static_cast<uint32_t>(workers_.size());
    place.last_seen = Clock::now();
    workers_.push_back(place);
    char why[192];
    std::snprintf(why, sizeof why,
                  "worker %u declared dead: nobody took its place in generation %u within %g s of its start "
                  "(cluster.peer_timeout_s)",
                  place.id, generation_, config_.cluster.peer_timeout_s);
    RemoveWorker(&workers_.back(), why);
  }
}

void Coordinator::ReturnDeadWorkersLeases() {
  for (auto it = awaiting_positions_.begin(); it != awaiting_positions_.end();) {
    const uint32_t w = *it;
    // Each server's last position of w, ordered by w's leases: the earliest
    // one is what every server has applied.
    std::optional<DataPosition> earliest;
    std::string reports;
    bool all = true, agree = true;
    // The first step of w's that some server lacks (each server took in w's
    // pushes in order); unknown (-1) when a server has none of its steps.
    int64_t first_missing = std::numeric_limits<int64_t>::max();
    for (const Member& s : servers_) {
      auto p = s.positions.find(w);
      if (p == s.positions.end()) {
        all = false;
        break;
      }
      reports += (reports.empty() ? "" : ", ") + std::string("server ") + std::to_string(s.id) + " lease " +
                 std::to_string(p->second.lease) + " record " + std::to_string(p->second.lease_offset);
      auto key = [&](const DataPosition& d) {
        return std::make_pair(leases_.GrantOrder(w, d.lease), d.lease_offset);
      };
      if (earliest && key(*earliest) != key(p->second)) agree = false;
      if (!earliest || key(p->second) < key(*earliest)) earliest = p->second;
      first_missing = p->second.step < 0 ? -1 : std::min(first_missing, p->second.step + 1);
    }
    if (!all || job_over_) {
      ++it;
      continue;
    }
    it = awaiting_positions_.erase(it);
    if (!agree && store_) {
      // Its last batch is in some servers' weights and not in others':
      // resuming from either position would apply it twice or never on
      // some server. A checkpoint committed before its last heartbeat
      // predates that batch (a later one may hold it on some servers only);
      // under BSP, so does every checkpoint up to the first step a server
      // lacks (version v holds the steps before v).
      int64_t before = workers_[w].committed_when_seen;
      if (config_.cluster.consistency == Consistency::kBsp && first_missing > 0)
        before = std::max(before, first_missing);
      return RollBack("worker " + std::to_string(w) + " died between its pushes to different servers (" + reports +
                          "); every server goes back to a checkpoint from before so that no record is applied twice",
                      before);
    }
    if (!agree)
      Log("worker " + std::to_string(w) + " died between its pushes to different servers (" + reports +
          "); its leases resume from the earliest, so some servers apply its last batch twice (with checkpoints "
          "on, the job would go back to the last committed one instead)");
    LeaseTable::Returned r = leases_.ReturnLeases(w, *earliest);
    Log("worker " + std::to_string(w) + "'s leases: " + std::to_string(r.completed) + " complete, " +
        std::to_string(r.partial) + " resume at record " + std::to_string(r.partial > 0 ? earliest->lease_offset : 0) +
        " of the shard, " + std::to_string(r.whole) + " back to the pool whole");
    if (r.epoch_completed > 0) {
      Log("epoch " + std::to_string(r.epoch_completed) + "/" + std::to_string(config_.training.epochs) +
          " complete with worker " + std::to_string(w) + "'s last leases");
      if (r.epoch_completed < config_.training.epochs) pending_evaluation_ = r.epoch_completed;
    }
    RetryParkedLeases(false);
  }
}

}  // namespace psforge
