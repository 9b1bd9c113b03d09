// The coordinator's side of membership: registrations answered, welcomes
// sent, dead workers removed and their leases returned (coordinator.h).
// Membership (membership.h) decides who takes which place.
#include <algorithm>
#include <cstdio>

#include "common/clock.h"
#include "coordinator/coordinator.h"

namespace psforge {

void Coordinator::HandleRegister(const std::string& peer, const WireHeader& h) {
  const auto& r = std::get<msg::Register>(h.body);
  if (job_over_) return ReplyError(peer, h, Cancelled("the job is over"));
  const bool server = r.role == PeerRole::kServer;
  if (!server && r.role != PeerRole::kWorker)
    return ReplyError(peer, h, InvalidArgument("only servers and workers join a job"));
  if (server && r.endpoint.empty())
    return ReplyError(peer, h, InvalidArgument("a server must say where workers reach it"));
  // Under CURVE workers connect to a server with the key it registers with:
  // it must be one of the cluster's (and the server's, or they cannot connect).
  if (server && !transport_->public_key().empty() && !transport_->is_cluster_key(r.public_key))
    return ReplyError(peer, h, InvalidArgument("a server at " + r.endpoint + " registered with public key '" +
                                               r.public_key + "', which is not in the cluster key file"));
  const int64_t wanted = server ? config_.cluster.servers : config_.cluster.workers;
  const Membership::Placed placed = members_.Place(peer, h, commits_.collecting());
  const std::string role = RoleName(r.role);
  switch (placed.how) {
    case Membership::Placement::kDeadPlace:
      // A restarted member takes the place of the one that died.
      if (server)
        Log("server " + std::to_string(placed.place->id) + " joined again at " + r.endpoint + PidSuffix(r.pid));
      else
        Log("worker " + std::to_string(placed.place->id) +
            " joined again (it takes the place of the one declared dead" +
            (r.pid ? "; pid " + std::to_string(r.pid) : "") + ")");
      return WelcomeAll();
    case Membership::Placement::kWaiting:
      // A restarted member may be quicker than its predecessor's heartbeat
      // timeout: it waits for the next place to free up.
      Log("a " + role + " registered" + (server ? " at " + r.endpoint : "") + " while every " + role +
          " place is taken; it takes the place of the next one declared dead");
      return;
    case Membership::Placement::kFull:
      return ReplyError(peer, h, ResourceExhausted("the job already has its " + std::to_string(wanted) + " " + role +
                                                   "s (cluster." + role + "s)"));
    case Membership::Placement::kNewPlace: {
      const std::size_t joined = server ? members_.servers().size() : members_.workers().size();
      Log(role + " " + std::to_string(placed.place->id) + " joined" + (server ? " at " + r.endpoint : "") + " (" +
          std::to_string(joined) + " of " + std::to_string(wanted) +
          (r.pid ? "; pid " + std::to_string(r.pid) : "") + ")");
      return WelcomeAll();
    }
  }
}

void Coordinator::AdmitWaitingMembers() {
  while (auto r = members_.NextAdmissible(commits_.collecting())) HandleRegister(r->first, r->second);
}

void Coordinator::WelcomeAll() {
  if (!members_.all_servers_registered()) return;
  std::vector<std::string> endpoints, keys;
  for (const auto& s : members_.servers()) endpoints.push_back(s.endpoint);
  if (!transport_->public_key().empty())
    for (const auto& s : members_.servers()) keys.push_back(s.public_key);
  const std::string job = EncodeJob(config_, endpoints, keys);
  for (Member* m : members_.ToWelcome(commits_.collecting())) {
    WireHeader w;
    w.request_id = m->join_request;
    w.generation = commits_.generation();
    w.body = msg::Welcome{m->id, commits_.restore_step()};
    Reply(m->peer, w, {std::as_bytes(std::span<const char>(job.data(), job.size())), nullptr});
    const auto now = Clock::now();
    members_.Welcomed(m, now);
    if (m->role == PeerRole::kWorker && started_ == Clock::time_point{}) started_ = now;
  }
}

void Coordinator::RemoveWorker(Member* m, const std::string& why) {
  members_.RemoveWorker(m);
  leases_.SetAbsent(m->id, true);
  Log(why + "; servers stop waiting for it, and its " + std::to_string(leases_.HeldBy(m->id)) +
      " leases return to the pool from where the servers say its data stopped");
}

void Coordinator::DeclareUntakenPlacesDead() {
  const auto now = Clock::now();
  if (!commits_.RejoinDeadlinePassed(now)) return;
  for (Member* place : members_.AddUntakenWorkerPlaces(now)) {
    char why[192];
    std::snprintf(why, sizeof why,
                  "worker %u declared dead: nobody took its place in generation %u within %g s of its start "
                  "(cluster.peer_timeout_s)",
                  place->id, commits_.generation(), config_.cluster.peer_timeout_s);
    RemoveWorker(place, why);
  }
}

void Coordinator::ReturnDeadWorkersLeases() {
  auto& awaiting = members_.awaiting_positions();
  for (auto it = awaiting.begin(); it != awaiting.end();) {
    const uint32_t w = *it;
    const auto data = job_over_ ? std::nullopt : members_.PositionsOf(w, leases_);
    if (!data) {
      ++it;
      continue;
    }
    it = awaiting.erase(it);
    if (!data->agree && store_) {
      // Its last batch is in some servers' weights and not in others':
      // resuming from either position would apply it twice or never on
      // some server. A checkpoint committed before its last heartbeat
      // predates that batch (a later one may hold it on some servers only);
      // under BSP, so does every checkpoint up to the first step a server
      // lacks (version v holds the steps before v).
      int64_t before = members_.workers()[w].committed_when_seen;
      if (config_.cluster.consistency == Consistency::kBsp && data->first_missing > 0)
        before = std::max(before, data->first_missing);
      return RollBack("worker " + std::to_string(w) + " died between its pushes to different servers (" +
                          data->reports +
                          "); every server goes back to a checkpoint from before so that no record is applied twice",
                      before);
    }
    if (!data->agree)
      Log("worker " + std::to_string(w) + " died between its pushes to different servers (" + data->reports +
          "); its leases resume from the earliest, so some servers apply its last batch twice (with checkpoints "
          "on, the job would go back to the last committed one instead)");
    LeaseTable::Returned r = leases_.ReturnLeases(w, data->earliest);
    Log("worker " + std::to_string(w) + "'s leases: " + std::to_string(r.completed) + " complete, " +
        std::to_string(r.partial) + " resume at record " +
        std::to_string(r.partial > 0 ? data->earliest.lease_offset : 0) + " of the shard, " +
        std::to_string(r.whole) + " back to the pool whole");
    if (r.epoch_completed > 0) {
      Log("epoch " + std::to_string(r.epoch_completed) + "/" + std::to_string(config_.training.epochs) +
          " complete with worker " + std::to_string(w) + "'s last leases");
      if (r.epoch_completed < config_.training.epochs) pending_evaluation_ = r.epoch_completed;
    }
    RetryParkedLeases(false);
  }
}

}  // namespace psforge
