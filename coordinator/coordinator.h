// Coordinator: runs one job. It owns the validated config, membership (who
// joined, who is alive), the data-shard leases, the job's progress, its
// evaluations and its result.
//
// Servers and workers know only its address. A member registers and is
// answered, once every server has registered, with its id, the config and
// the server map. Members heartbeat; the answers carry the membership state
// (removed workers, the end of the job). A member silent for
// cluster.peer_timeout_s is declared dead: servers stop waiting for it, and
// once every server has reported where its data stopped, its leases return
// to the pool from there; without one of its servers the job cannot go on
// and fails, naming it. Workers lease shards (lease_table.h);
// the worker that completes an epoch evaluates it; when the data is done,
// the last worker to finish pulls the final weights and evaluates them. Then
// every member is told to stop and the job's result is recorded, with the
// audit of the servers' final reports: every record applied exactly once in
// every completed epoch, on every server.
//
// The state machines it routes messages to are its own classes, each with
// its own tests: Membership (membership.h: places, liveness, waiting
// registrations, removed workers), LeaseTable (lease_table.h: the data),
// CheckpointCommits (checkpoint_commits.h: committed steps, picks by time,
// generations) and RunReport (run_report.h: progress, rates, stalls,
// evaluations, the summary and the audit). This class answers the members
// and records decisions in the job store.
//
// One thread runs Run(); Snapshot() may be called from any thread (the HTTP
// endpoint does).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/coordinator_link.h"
#include "common/mutex.h"
#include "common/peer_limiter.h"
#include "common/progress.h"
#include "common/shard_plan.h"
#include "common/transport.h"
#include "common/wire.h"
#include "coordinator/checkpoint_commits.h"
#include "coordinator/dashboard.h"
#include "coordinator/job_store.h"
#include "coordinator/lease_table.h"
#include "coordinator/membership.h"
#include "coordinator/run_records.h"
#include "coordinator/run_report.h"

namespace psforge {

struct CoordinatorOptions {
  std::string bind = "tcp://127.0.0.1:0";  // where members reach the coordinator
  std::string run_dir;                     // metrics, summary and plot go here ("" = none)
  std::string summary_path;                // the summary is also written here ("" = not)
  bool resume = false;                     // continue from the last committed checkpoint
  bool members_on_this_host = false;       // ps-launch: check the cluster fits this machine's memory
  std::FILE* progress_out = stdout;
};

class Coordinator {
 public:
  static Result<std::unique_ptr<Coordinator>> Create(const JobConfig& config, Transport* transport,
                                                     const CoordinatorOptions& options);
  ~Coordinator();

  const std::string& endpoint() const { return socket_->endpoint(); }

  // Runs the job to its end and the members' shutdown. Ok when the job
  // completed with a final evaluation; `stop` ends it early (an error).
  Status Run(const std::atomic<bool>& stop);

  // The dashboard's curve and events (any thread).
  nlohmann::json TimelineJson() const { return report_.timeline().Json(); }
  // The job's state as JSON (/api/status). Thread-safe.
  nlohmann::json Snapshot() const;

 private:
  struct ParkedLease {
    std::string peer;
    WireHeader request;      // a lease request
    int64_t evaluate_epoch;  // what its answer asks to evaluate
    std::chrono::steady_clock::time_point deadline;
  };

  Coordinator(const JobConfig& config, int64_t records, int64_t params,
              std::unique_ptr<ServerSocket> socket, const CoordinatorOptions& options);
  void Handle(InMessage& m);
  // False when `m`'s sender is over its limit in `message_class` (or cut
  // off already): the message is dropped; a newly cut off peer is logged.
  bool Admitted(const InMessage& m, std::size_t message_class);
  // `h` has a Register body.
  void HandleRegister(const std::string& peer, const WireHeader& h);
  void HandleHeartbeat(const std::string& peer, const WireHeader& h, const msg::Heartbeat& b);
  // Commits the latest checkpoint step every server has written.
  void CommitCheckpoint();
  // Checkpoints by time: every checkpoint.interval_s picks the step the
  // servers take the next one at (far enough ahead to reach them first).
  void PlanCheckpoint();
  void HandleLease(const std::string& peer, const WireHeader& h, const msg::LeaseRequest& l);
  void HandleReport(const std::string& peer, const WireHeader& h, const msg::Report& r);
  // Answers lease request `h`; false when it should wait (ASP parks it).
  bool AnswerLease(const std::string& peer, const WireHeader& h, int64_t evaluate_epoch, bool may_park);
  void RetryParkedLeases(bool expire_all);
  void WelcomeAll();
  // Registrations waiting for a place: each takes the next one freed.
  void AdmitWaitingMembers();
  void CheckLiveness();
  // A worker declared dead: the servers stop waiting for it, and its leases
  // return to the pool once they say where its data stopped.
  void RemoveWorker(Member* m, const std::string& why);
  // After a rollback: worker places not taken again within the peer timeout
  // of the generation's start are dead (nobody restarted their worker).
  void DeclareUntakenPlacesDead();
  // Starts the generation commits_ has set up (a resumed job, every
  // server rolling back after one died, or a fallback to an older checkpoint).
  void Restart(const std::string& why);
  // A new generation from the last committed checkpoint (the initial
  // weights if none), or from the one committed at step `at_most` or
  // before: a server died, or servers disagree on a dead worker.
  void RollBack(const std::string& why, int64_t at_most = INT64_MAX);
  // Once every server has loaded the generation's step (and said where each worker's
  // data stood), rebuilds the leases and lets the workers in; falls back to
  // an older committed checkpoint when a server could not load it.
  void FinishRestart();
  Status Record(const Status& s);  // a store failure ends the job
  // With checkpoints on: opens the job store; a new job resets it, a
  // resumed one (options_.resume) starts from its last committed checkpoint.
  Status OpenStore();
  // Returns dead workers' leases once every server has said where their data stopped.
  void ReturnDeadWorkersLeases();
  void WriteSummary();
  void ReportStall();
  void UpdateProgress(bool force);
  void EndJob(Status outcome);
  void Reply(const std::string& peer, const WireHeader& h, OutFrame payload = {});
  // `what` names the request in the log ("message" when it could not be
  // decoded); default: its kind.
  void ReplyError(const std::string& peer, const WireHeader& request, const Status& status,
                  const char* what = nullptr);
  double Elapsed() const;
  void Log(const std::string& line);

  const JobConfig config_;
  const int64_t records_, params_;
  std::unique_ptr<ServerSocket> socket_;
  Transport* transport_ = nullptr;  // outlives this; says whether CURVE is on and which keys are the cluster's
  CoordinatorOptions options_;
  ShardPlan plan_;
  LeaseTable leases_;
  Membership members_;
  CheckpointCommits commits_;
  std::unique_ptr<JobStore> store_;            // null: checkpoints are off
  int64_t pending_evaluation_ = 0;             // an epoch completed by returning leases
  std::vector<ParkedLease> parked_leases_;
  int64_t evaluator_ = -1;  // the worker running the final evaluation
  std::chrono::steady_clock::time_point created_, started_{};
  bool job_over_ = false;
  Status outcome_ = Unavailable("the job has not finished");
  std::chrono::steady_clock::time_point shutdown_deadline_{};
  std::chrono::steady_clock::time_point next_housekeeping_{};
  // Progress, stalls, evaluations and the records of the run.
  RunReport report_;
  nlohmann::json summary_;  // written once the members have gone
  int64_t final_steps_ = 0;
  std::vector<std::byte> encode_buffer_;
  std::vector<uint64_t> decode_scratch_;
  int64_t bad_messages_ = 0;
  // Refusals per sending address in the current 10 s window (ReplyError).
  struct Refusals {
    int64_t logged = 0, more = 0;
  };
  static constexpr std::size_t kMaxRefusalSources = 64;
  std::map<std::string, Refusals> refusals_;
  std::chrono::steady_clock::time_point next_refusal_summary_{};
  const InMessage* current_ = nullptr;  // the message being handled (its sender, for refusals)
  void SummariseRefusals(bool force);
  // Per connection: any message (class 0) and registrations (class 1).
  enum : std::size_t { kAnyMessage = 0, kRegistration = 1 };
  PeerLimiter limiter_;

  mutable Mutex snapshot_mu_;
  nlohmann::json snapshot_ PSF_GUARDED_BY(snapshot_mu_);
  int64_t CheckpointBytes() const;  // what one checkpoint holds, all servers together
};

}  // namespace psforge
