#include "coordinator/run_report.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace psforge {
namespace {

// What one server reports for an epoch that applied each of `n` records once.
EpochAudit Once(int64_t epoch, uint64_t n) {
  EpochAudit a{epoch, static_cast<int64_t>(n), 0, 0};
  for (uint64_t id = 0; id < n; ++id) a.id_sum += id, a.id_square_sum += id * id;
  return a;
}

std::vector<Member> Servers(int n) {
  std::vector<Member> servers(n);
  for (int i = 0; i < n; ++i) {
    servers[i].role = PeerRole::kServer;
    servers[i].id = static_cast<uint32_t>(i);
    servers[i].farewell = true;
  }
  return servers;
}

TEST(AuditServers, EveryRecordOnceOnEveryServer) {
  auto servers = Servers(2);
  for (Member& s : servers)
    for (int64_t e = 1; e <= 2; ++e) s.audit[e] = Once(e, 1001);
  const AuditResult a = AuditServers(servers, 1001, 2);
  EXPECT_TRUE(a.exactly_once);
  ASSERT_EQ(a.lines.size(), 1u);
  EXPECT_EQ(a.lines[0], "audit: every server applied each of the 1001 records exactly once in each of the 2 epochs");
  EXPECT_EQ(a.json["epochs_checked"], 2);
  EXPECT_EQ(a.json["servers"].size(), 2u);
}

TEST(AuditServers, NamesARecordAppliedTwiceAMissingEpochAndASilentServer) {
  auto servers = Servers(2);
  servers[0].audit[1] = Once(1, 100);
  // Server 1 applied record 7 twice and record 8 never: the count is right, the sums are not.
  EpochAudit twice = Once(1, 100);
  twice.id_sum += 7 - 8;
  twice.id_square_sum += 49 - 64;
  servers[1].audit[1] = twice;
  servers[1].farewell = false;
  const AuditResult a = AuditServers(servers, 100, 2);
  EXPECT_FALSE(a.exactly_once);
  const std::string all = a.json["problems"].dump();
  EXPECT_NE(all.find("server 0 reported no records for epoch 2"), std::string::npos) << all;
  EXPECT_NE(all.find("server 1 sent no final report"), std::string::npos) << all;
  EXPECT_NE(all.find("server 1 applied 100 records in epoch 1 (expected 100), but not each one once"),
            std::string::npos) << all;
  EXPECT_EQ(a.lines.size(), a.json["problems"].size());
}

TEST(AuditServers, SumsWrapAsTheServersDo) {
  // Big enough that id_square_sum overflows 64 bits.
  constexpr uint64_t n = 5'000'000;
  auto servers = Servers(1);
  servers[0].audit[1] = Once(1, n);
  EXPECT_TRUE(AuditServers(servers, n, 1).exactly_once);
}

struct Report {
  JobConfig config;
  std::FILE* out = std::tmpfile();
  std::unique_ptr<RunReport> report;
  Report() {
    config.training.epochs = 2;
    config.training.progress_interval_s = 1;
    config.cluster.servers = 1;
    config.cluster.stall_report_s = 10;
    report = std::make_unique<RunReport>(config, 1000, out, "");
  }
  ~Report() { std::fclose(out); }
  std::string Printed() {
    std::fflush(out);
    std::rewind(out);
    std::string text;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, out)) > 0;) text.append(buf, n);
    return text;
  }
};

TEST(RunReport, TheRateFollowsTheSamplesAndUpdatesAreThrottled) {
  Report r;
  RunReport::Totals t{10, 100, 0.5};
  auto p = r.report->Update(1.0, 1.0, t, {1, 0, false}, true, false);
  ASSERT_TRUE(p);
  EXPECT_DOUBLE_EQ(r.report->rate(), 100);  // 100 samples in the first second
  EXPECT_DOUBLE_EQ(p->epoch_fraction, 0.1);
  EXPECT_EQ(p->epoch, 1);
  EXPECT_DOUBLE_EQ(p->eta_s, (2000 - 100) / 100.0);
  // Within a quarter of the interval (at least 0.2 s): nothing, unless forced.
  EXPECT_FALSE(r.report->Update(1.1, 1.1, t, {1, 0, false}, true, false));
  t.samples = 400;
  t.step = 20;
  ASSERT_TRUE(r.report->Update(2.0, 2.0, t, {1, 0, false}, true, false));
  EXPECT_DOUBLE_EQ(r.report->rate(), 0.7 * 100 + 0.3 * 300);
  EXPECT_TRUE(r.report->Update(2.05, 2.05, t, {1, 0, false}, true, true));
  EXPECT_EQ(r.report->timeline().Json()["points"].size(), 2u);  // a step's point is its latest
}

TEST(RunReport, SumsTheWorkersAndAveragesTheActiveOnesLoss) {
  std::vector<Member> workers(3);
  workers[0].state = workers[1].state = MemberState::kActive;
  workers[2].state = MemberState::kDead;
  workers[0].progress = {5, 1, 100, 1.0, {}, {}};
  workers[1].progress = {7, 1, 120, 3.0, {}, {}};
  workers[2].progress = {3, 1, 60, 9.0, {}, {}};
  const RunReport::Totals t = RunReport::Sum(workers);
  EXPECT_EQ(t.step, 7);
  EXPECT_EQ(t.samples, 280);
  EXPECT_DOUBLE_EQ(t.loss, 2.0);
}

TEST(RunReport, AStalledStepNamesTheWorkersBehindAndTheServersWaiting) {
  Report r;
  Membership members(1, 2);
  for (PeerRole role : {PeerRole::kServer, PeerRole::kWorker, PeerRole::kWorker}) {
    WireHeader h;
    h.body = msg::Register{role, "tcp://127.0.0.1:1", {}, 0};
    members.Place("p", h, false);
  }
  const auto t0 = Clock::now();
  for (Member* m : members.ToWelcome(false)) members.Welcomed(m, t0);
  members.workers()[0].progress.step = 4;
  members.workers()[1].progress.step = 5;
  members.servers()[0].progress.step = 4;
  EXPECT_FALSE(r.report->CheckStall(t0, true, members, 100));  // step 4 starts waiting
  EXPECT_FALSE(r.report->CheckStall(t0 + Seconds(9), true, members, 100));
  auto stall = r.report->CheckStall(t0 + Seconds(10.5), true, members, 100);
  ASSERT_TRUE(stall);
  EXPECT_EQ(*stall, "step 4 has waited 10.5 s; workers behind: 0 (last heard 10.5 s ago); "
                    "servers waiting: 0 keys [0, 100) at version 4");
  EXPECT_EQ(r.report->stall(), *stall);
  EXPECT_FALSE(r.report->CheckStall(t0 + Seconds(11), true, members, 100));  // every stall_report_s
  members.workers()[0].progress.step = 5;  // it moves on
  EXPECT_FALSE(r.report->CheckStall(t0 + Seconds(12), true, members, 100));
  EXPECT_TRUE(r.report->stall().empty());
}

TEST(RunReport, TheSummaryHoldsTheFinalMetricAndEveryEvaluation) {
  Report r;
  r.report->Evaluation({1, 50, 0.8, 3.0, false, 0.6});
  r.report->Evaluation({2, 100, 0.85, 6.0, true, 0.4});
  const nlohmann::json s = r.report->Finish(6.0, 2000, 100, 1, "");
  const std::string metric = MetricName(r.config);
  EXPECT_DOUBLE_EQ(s[metric].get<double>(), 0.85);
  EXPECT_EQ(s["epochs"], 2);
  EXPECT_EQ(s["steps"], 100);
  EXPECT_EQ(s["workers_lost"], 1);
  EXPECT_DOUBLE_EQ(s["samples_per_s"].get<double>(), 2000 / 6.0);
  ASSERT_EQ(s["history"].size(), 2u);
  EXPECT_FALSE(s["history"][0].contains("final"));
  EXPECT_TRUE(r.report->HistoryJson(true)[1]["final"].get<bool>());
  EXPECT_NE(r.Printed().find("final " + metric + ": 0.8500 (2 epochs, 100 steps, 333 samples/s, 6.0 s)"),
            std::string::npos) << r.Printed();
}

TEST(RunReport, TheLatestAuditLineIsKept) {
  Report r;
  r.report->Log(1, "audit: server 0 sent no final report");
  r.report->Log(1, "something else");
  EXPECT_EQ(r.report->audit_line(), "audit: server 0 sent no final report");
  EXPECT_EQ(r.report->timeline().Json()["events"].size(), 2u);
}

}  // namespace
}  // namespace psforge
