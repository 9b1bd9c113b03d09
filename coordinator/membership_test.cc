#include "coordinator/membership.h"

#include <gtest/gtest.h>

#include "common/shard_plan.h"
#include "coordinator/lease_table.h"

namespace psforge {
namespace {

WireHeader Registration(PeerRole role, uint64_t request, const std::string& endpoint = "") {
  msg::Register r;
  r.role = role;
  r.endpoint = role == PeerRole::kServer && endpoint.empty() ? std::string("tcp://127.0.0.1:").append(std::to_string(request))
                                                              : endpoint;
  WireHeader h;
  h.request_id = request;
  h.body = r;
  return h;
}

// Registers and welcomes `servers` servers and `workers` workers at `now`.
void Fill(Membership* m, int servers, int workers, Clock::time_point now) {
  for (int i = 0; i < servers; ++i) m->Place(std::string("s").append(std::to_string(i)), Registration(PeerRole::kServer, i), false);
  for (int i = 0; i < workers; ++i)
    m->Place(std::string("w").append(std::to_string(i)), Registration(PeerRole::kWorker, 100 + i), false);
  for (Member* joined : m->ToWelcome(false)) m->Welcomed(joined, now);
}

TEST(Membership, PlacesThenAWaitingListThenFull) {
  Membership m(1, 2);
  auto a = m.Place("w0", Registration(PeerRole::kWorker, 1), false);
  auto b = m.Place("w1", Registration(PeerRole::kWorker, 2), false);
  ASSERT_EQ(a.how, Membership::Placement::kNewPlace);
  ASSERT_EQ(b.how, Membership::Placement::kNewPlace);
  EXPECT_EQ(b.place->id, 1u);
  EXPECT_EQ(b.place->join_request, 2u);
  EXPECT_TRUE(m.all_workers_registered());
  // Nobody is welcomed before every server is in.
  EXPECT_TRUE(m.ToWelcome(false).empty());
  // As many wait as there are places; then the job is full.
  EXPECT_EQ(m.Place("w2", Registration(PeerRole::kWorker, 3), false).how, Membership::Placement::kWaiting);
  EXPECT_EQ(m.Place("w3", Registration(PeerRole::kWorker, 4), false).how, Membership::Placement::kWaiting);
  EXPECT_EQ(m.Place("w4", Registration(PeerRole::kWorker, 5), false).how, Membership::Placement::kFull);
  m.Place("s0", Registration(PeerRole::kServer, 6), false);
  // Workers wait while the servers load a checkpoint; servers do not.
  ASSERT_EQ(m.ToWelcome(true).size(), 1u);
  EXPECT_EQ(m.ToWelcome(false).size(), 3u);
}

TEST(Membership, ARestartedServerTakesTheDeadOnesPlace) {
  Membership m(2, 1);
  const auto t0 = Clock::now();
  Fill(&m, 2, 1, t0);
  // Server 1 and the worker keep beating; server 0 goes silent.
  m.servers()[1].last_seen = m.workers()[0].last_seen = t0 + Seconds(5);
  EXPECT_FALSE(m.NextSilent(t0 + Seconds(5), 6, 0.5));
  auto silent = m.NextSilent(t0 + Seconds(6.5), 6, 0.5);
  ASSERT_TRUE(silent);
  EXPECT_EQ(silent->member->id, 0u);
  EXPECT_EQ(silent->member->role, PeerRole::kServer);
  EXPECT_EQ(silent->why, "6.0 s (cluster.peer_timeout_s)");
  EXPECT_FALSE(m.NextSilent(t0 + Seconds(6.5), 6, 0.5));  // declared once
  auto placed = m.Place("s0-again", Registration(PeerRole::kServer, 9, "tcp://10.0.0.1:7"), false);
  ASSERT_EQ(placed.how, Membership::Placement::kDeadPlace);
  EXPECT_EQ(placed.place->id, 0u);
  EXPECT_EQ(placed.place->endpoint, "tcp://10.0.0.1:7");
  EXPECT_EQ(placed.place->state, MemberState::kJoining);
}

TEST(Membership, AWaitingReplacementShortensTheTimeoutToFourHeartbeats) {
  Membership m(1, 1);
  const auto t0 = Clock::now();
  Fill(&m, 1, 1, t0);
  m.servers()[0].last_seen = t0 + Seconds(2.5);
  ASSERT_EQ(m.Place("s-new", Registration(PeerRole::kServer, 5), false).how, Membership::Placement::kWaiting);
  EXPECT_FALSE(m.NextSilent(t0 + Seconds(2.5), 6, 0.5));
  auto silent = m.NextSilent(t0 + Seconds(4.6), 6, 0.5);
  ASSERT_TRUE(silent);
  EXPECT_EQ(silent->member->role, PeerRole::kServer);
  EXPECT_EQ(silent->why, "2.0 s (and a restarted one waits for a place)");
  // The waiting server now has a place.
  auto next = m.NextAdmissible(false);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->first, "s-new");
  EXPECT_FALSE(m.NextAdmissible(false));
}

TEST(Membership, ADeadWorkersPlaceFreesUpOnceItsLeasesAreBackAndEveryServerKnows) {
  Membership m(2, 2);
  const auto t0 = Clock::now();
  Fill(&m, 2, 2, t0);
  for (Member& s : m.servers()) s.positions[1] = {1, 7, 3, 4};  // a predecessor's report
  Member* dead = &m.workers()[1];
  m.RemoveWorker(dead);
  EXPECT_EQ(dead->state, MemberState::kDead);
  EXPECT_EQ(m.removed(), std::vector<uint32_t>{1});
  EXPECT_EQ(m.awaiting_positions(), std::vector<uint32_t>{1});
  EXPECT_TRUE(m.servers()[0].positions.empty());  // only reports after its removal count
  // Its replacement waits: the servers have not said where its data stopped.
  ASSERT_EQ(m.Place("w1-again", Registration(PeerRole::kWorker, 50), false).how, Membership::Placement::kWaiting);
  EXPECT_FALSE(m.NextAdmissible(false));
  m.awaiting_positions().clear();  // its leases are back
  m.servers()[0].removals_known = 1;
  EXPECT_FALSE(m.NextAdmissible(false));  // server 1 still waits for it
  m.servers()[1].removals_known = 1;
  EXPECT_FALSE(m.NextAdmissible(true));  // not while a checkpoint loads
  auto next = m.NextAdmissible(false);
  ASSERT_TRUE(next);
  auto placed = m.Place(next->first, next->second, false);
  ASSERT_EQ(placed.how, Membership::Placement::kDeadPlace);
  EXPECT_EQ(placed.place->id, 1u);
}

TEST(Membership, AFinishedWorkerThatGoesSilentIsDeadButNotReported) {
  Membership m(1, 1);
  const auto t0 = Clock::now();
  Fill(&m, 1, 1, t0);
  m.servers()[0].last_seen = t0 + Seconds(10);
  m.workers()[0].state = MemberState::kFinished;
  EXPECT_FALSE(m.NextSilent(t0 + Seconds(10), 6, 0.5));
  EXPECT_EQ(m.workers()[0].state, MemberState::kDead);
  EXPECT_TRUE(m.removed().empty());
}

TEST(Membership, RemovedWorkersArePagedToTheServers) {
  const int kWorkers = static_cast<int>(kMaxListEntries) + 10;
  Membership m(1, kWorkers);
  Fill(&m, 1, kWorkers, Clock::now());
  for (Member& w : m.workers()) m.RemoveWorker(&w);
  msg::Heartbeat first, second;
  m.FillRemoved(0, &first);
  EXPECT_EQ(first.removed_from, 0u);
  ASSERT_EQ(first.removed.size(), kMaxListEntries);
  m.FillRemoved(static_cast<uint32_t>(kMaxListEntries), &second);
  EXPECT_EQ(second.removed_from, kMaxListEntries);
  ASSERT_EQ(second.removed.size(), 10u);
  EXPECT_EQ(second.removed.back(), static_cast<uint32_t>(kWorkers - 1));
}

TEST(Membership, WhereADeadWorkersDataStoppedOnEveryServer) {
  ShardPlan plan(100, 10, 1, false);
  LeaseTable leases(&plan, 1, 1);
  const auto a = leases.Next(0), b = leases.Next(0);
  Membership m(2, 1);
  Fill(&m, 2, 1, Clock::now());
  m.RemoveWorker(&m.workers()[0]);
  EXPECT_FALSE(m.PositionsOf(0, leases));  // no server has said yet
  m.servers()[0].positions[0] = {0, b.lease, 4, 8};
  EXPECT_FALSE(m.PositionsOf(0, leases));
  m.servers()[1].positions[0] = {0, b.lease, 4, 8};
  auto same = m.PositionsOf(0, leases);
  ASSERT_TRUE(same);
  EXPECT_TRUE(same->agree);
  EXPECT_EQ(same->first_missing, 9);
  // Server 1 missed the last push: it is one lease behind.
  m.servers()[1].positions[0] = {0, a.lease, 9, 7};
  auto split = m.PositionsOf(0, leases);
  ASSERT_TRUE(split);
  EXPECT_FALSE(split->agree);
  EXPECT_EQ(split->earliest.lease, a.lease);
  EXPECT_EQ(split->first_missing, 8);
  EXPECT_NE(split->reports.find("server 1 lease " + std::to_string(a.lease) + " record 9"), std::string::npos);
}

TEST(Membership, ANewGenerationStartsTheWorkersOver) {
  Membership m(1, 1);
  Fill(&m, 1, 1, Clock::now());
  Member& s = m.servers()[0];
  s.durable = {10};
  s.restored = 10;
  s.removals_known = 3;
  s.audit[1] = EpochAudit{};
  s.restored_positions[0] = DataPosition{};
  m.RemoveWorker(&m.workers()[0]);
  s.positions[0] = DataPosition{};  // reported after the removal
  m.Place("w-waiting", Registration(PeerRole::kWorker, 7), false);
  const auto waiting = m.NewGeneration();
  ASSERT_EQ(waiting.size(), 1u);
  EXPECT_EQ(waiting[0].first, "w-waiting");
  EXPECT_TRUE(m.workers().empty());
  EXPECT_TRUE(m.removed().empty());
  EXPECT_TRUE(m.awaiting_positions().empty());
  EXPECT_TRUE(s.durable.empty());
  EXPECT_TRUE(s.audit.empty());
  EXPECT_TRUE(s.positions.empty());
  EXPECT_TRUE(s.restored_positions.empty());
  EXPECT_EQ(s.restored, -2);
  EXPECT_EQ(s.removals_known, 0);
  EXPECT_EQ(s.state, MemberState::kActive);  // servers stay
  // Places nobody takes become dead, removed workers.
  const auto untaken = m.AddUntakenWorkerPlaces(Clock::now());
  ASSERT_EQ(untaken.size(), 1u);
  m.RemoveWorker(untaken[0]);
  EXPECT_EQ(m.removed(), std::vector<uint32_t>{0});
}

TEST(Membership, ShutdownWaitsForEveryActiveMembersStopAndTheServersFarewell) {
  Membership m(1, 1);
  Fill(&m, 1, 1, Clock::now());
  EXPECT_FALSE(m.ShutdownComplete());
  m.workers()[0].told_stop = true;
  m.servers()[0].told_stop = true;
  EXPECT_FALSE(m.ShutdownComplete());
  m.servers()[0].farewell = true;
  EXPECT_TRUE(m.ShutdownComplete());
}

}  // namespace
}  // namespace psforge
