// Membership: who is in the job, as the coordinator sees it.
//
// A job has cluster.servers server places and cluster.workers worker
// places; a place keeps its id when a restarted member takes it. This class
// owns the places and their members' state (joining, active, finished,
// dead), the workers removed from the job (the list servers page through
// to stop waiting for them), the dead workers whose leases wait for the
// servers to say where their data stopped, and the registrations waiting
// for a place to free up (a restarted member can be quicker than its
// predecessor's heartbeat timeout).
//
// It decides; it sends nothing. The coordinator routes messages to it,
// answers the members and logs what it returns. Not thread-safe: the
// coordinator's loop owns it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/coordinator_link.h"
#include "common/wire.h"

namespace psforge {

class LeaseTable;

const char* RoleName(PeerRole role);
// " (pid N)" for a member that said its process id, else "": the logs of
// the coordinator and of a supervisor name a process the same way.
std::string PidSuffix(uint32_t pid);

enum class MemberState { kJoining, kActive, kFinished, kDead };
const char* MemberStateName(MemberState state);

struct Member {
  PeerRole role = PeerRole::kWorker;
  uint32_t id = 0;
  std::string endpoint;    // servers
  std::string public_key;  // servers, under CURVE
  uint32_t pid = 0;        // its process id, as it said (0: not said)
  MemberState state = MemberState::kJoining;
  Clock::time_point last_seen;
  MemberProgress progress;
  int64_t final_step = -1;
  std::string peer;  // joining: where to send the welcome
  uint64_t join_request = 0;
  bool told_stop = false;
  bool farewell = false;  // its last heartbeat arrived (it exits)
  // Servers: the steps of the checkpoints they reported durable (the
  // latest few). One that failed to write a checkpoint skips its step.
  std::set<int64_t> durable;
  // Servers: records applied per epoch, and where removed workers' data stopped.
  std::map<int64_t, EpochAudit> audit;
  std::map<uint32_t, DataPosition> positions;
  // Servers, while the job restarts: the step loaded for the current
  // generation (-1: could not; -2: not yet) and the loaded positions.
  int64_t restored = -2;
  std::map<uint32_t, DataPosition> restored_positions;
  int64_t removal = -1;             // workers: the index of its latest entry in removed()
  int64_t removals_known = 0;       // servers: how many entries of removed() they have taken in
  int64_t committed_when_seen = 0;  // the committed checkpoint at its latest heartbeat
};

// A registration: where to answer, and the request.
using Registration = std::pair<std::string, WireHeader>;

class Membership {
 public:
  Membership(int64_t servers, int64_t workers) : wanted_servers_(servers), wanted_workers_(workers) {}

  std::vector<Member>& servers() { return servers_; }
  const std::vector<Member>& servers() const { return servers_; }
  std::vector<Member>& workers() { return workers_; }
  const std::vector<Member>& workers() const { return workers_; }
  Member* Find(PeerRole role, uint32_t id);
  bool all_servers_registered() const { return static_cast<int64_t>(servers_.size()) >= wanted_servers_; }
  bool all_workers_registered() const { return static_cast<int64_t>(workers_.size()) >= wanted_workers_; }

  // Where a registration goes: a new place, the place of a dead member
  // (a server's, or a worker's whose leases are back and whom every server
  // has stopped waiting for), the waiting list, or nowhere (the job is
  // full and as many wait as there are places).
  enum class Placement { kNewPlace, kDeadPlace, kWaiting, kFull };
  struct Placed {
    Placement how = Placement::kFull;
    Member* place = nullptr;  // kNewPlace, kDeadPlace: joining, to be welcomed
  };
  // `collecting`: the servers are loading a checkpoint (no worker place frees up).
  Placed Place(const std::string& peer, const WireHeader& request, bool collecting);
  // The next waiting registration that has a place now, taken off its list.
  std::optional<Registration> NextAdmissible(bool collecting);
  // Every waiting registration of `role`, taken off its list.
  std::vector<Registration> TakeWaiting(PeerRole role);
  // The members to welcome once every server has registered (joining ones;
  // workers only when not `collecting`). Each is then marked active.
  std::vector<Member*> ToWelcome(bool collecting);
  void Welcomed(Member* m, Clock::time_point now);

  // The first member silent for too long, declared dead (nullopt: none).
  // A member that has missed 4 heartbeats while a restarted one waits for a
  // place is that one: no need to wait out the whole peer timeout. A worker
  // that had finished is declared dead without being reported (it had left
  // the servers and holds no leases).
  struct Silence {
    Member* member = nullptr;
    std::string why;  // "6.0 s (cluster.peer_timeout_s)" (the caller says "for")
  };
  std::optional<Silence> NextSilent(Clock::time_point now, double peer_timeout_s, double heartbeat_interval_s);

  // Worker `m` is dead: it joins the removed list (servers stop waiting for
  // it) and waits for every server's position of its data.
  void RemoveWorker(Member* m);
  // Worker places nobody took in a generation that started from a
  // rollback: each becomes a dead, removed worker. Returns them.
  std::vector<Member*> AddUntakenWorkerPlaces(Clock::time_point now);
  // Fills `answer`'s page of removed workers for a member that knows `known`.
  void FillRemoved(uint32_t known, msg::Heartbeat* answer) const;
  const std::vector<uint32_t>& removed() const { return removed_; }
  std::vector<uint32_t>& awaiting_positions() { return awaiting_positions_; }

  // Where dead worker `w`'s data stopped, once every server has said so.
  struct DeadWorkerData {
    DataPosition earliest;  // what every server has applied
    bool agree = true;      // every server stopped at the same record
    // The first step of w's that some server lacks (each server took in
    // w's pushes in order); -1 when a server has none of its steps.
    int64_t first_missing = -1;
    std::string reports;  // "server 0 lease 3 record 17, ..."
  };
  std::optional<DeadWorkerData> PositionsOf(uint32_t w, const LeaseTable& leases) const;

  // A new generation: every worker joins again; the servers' per-generation
  // state is cleared. Returns the workers that were waiting for a place
  // (they register again, in the new generation).
  std::vector<Registration> NewGeneration();

  bool AnyWorkerActive() const;
  // Active, joining or finished: a worker that may still train or evaluate.
  bool AnyWorkerAlive() const;
  // Every active member was told to stop (and servers said farewell).
  bool ShutdownComplete() const;

 private:
  Member* ReplaceableWorker(bool collecting);
  void TakePlace(Member* place, const std::string& peer, const WireHeader& h);

  const int64_t wanted_servers_, wanted_workers_;
  std::vector<Member> servers_, workers_;
  std::vector<uint32_t> removed_;
  std::vector<uint32_t> awaiting_positions_;  // dead workers whose leases are not yet returned
  std::vector<Registration> waiting_servers_, waiting_workers_;
};

}  // namespace psforge
