#include "coordinator/coordinator.h"
#include "coordinator/coordinator_util.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>

#include "common/dataset.h"
#include "common/init_source.h"
#include "common/text_dataset.h"
#include "common/model_spec.h"
#include "common/run_dir.h"

namespace psforge {
namespace {

using namespace coordinator_util;

// A member this coordinator does not know: it restarted (or the member's
// place was given to another). Aborted tells the member to join again.
Status NotAMember(const WireHeader& h, PeerRole role) {
  return Aborted(std::string(MessageKindName(h.kind())) + " from " + RoleName(role) + " " + std::to_string(h.sender) +
                 ", which is not a member of this job (the coordinator restarted?): join again");
}

// MemAvailable from /proc/meminfo, in bytes (0: unknown).
double MemoryAvailableBytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

}  // namespace

Coordinator::Coordinator(const JobConfig& config, int64_t records, int64_t params,
                         std::unique_ptr<ServerSocket> socket, const CoordinatorOptions& options)
    : config_(config),
      records_(records),
      params_(params),
      socket_(std::move(socket)),
      options_(options),
      plan_(ShardPlan::ForJob(config, records, config.cluster.workers)),
      leases_(&plan_, config.cluster.workers, config.training.epochs,
              /*lockstep=*/config.cluster.consistency == Consistency::kBsp),
      members_(config.cluster.servers, config.cluster.workers),
      commits_(config.checkpoint, config.cluster.heartbeat_interval_s),
      created_(Clock::now()),
      report_(config, records, options.progress_out, options.run_dir),
      limiter_({config.cluster.max_requests_per_s, config.cluster.max_registrations_per_s},
               std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(config.cluster.cutoff_s))) {}

Coordinator::~Coordinator() = default;

Result<std::unique_ptr<Coordinator>> Coordinator::Create(const JobConfig& given, Transport* transport,
                                                         const CoordinatorOptions& options) {
  // Checkpoints without a folder of their own go to the run directory (an
  // absolute path: the members resolve it on their hosts); with neither,
  // they are off.
  JobConfig config = given;
  if (config.checkpoint.enabled() && config.checkpoint.dir.empty()) {
    if (options.run_dir.empty()) {
      config.checkpoint.interval_s = config.checkpoint.interval_steps = 0;
    } else {
      config.checkpoint.dir = RunCheckpointDir(options.run_dir);
    }
  }
  // Evicted table rows go to the run directory too (without one: each
  // server's temporary folder).
  if (config.cluster.memory_budget_mb > 0 && config.cluster.spill_dir.empty() && !options.run_dir.empty())
    config.cluster.spill_dir = RunSpillDir(options.run_dir);
  // A trained job to start from becomes an .npz in the run directory; the
  // members get that file's path.
  PSF_RETURN_IF_ERROR(ResolveInitFrom("ps-coordinator", &config, options.run_dir));
  // The coordinator reads the training set once: a bad file is reported here,
  // before any worker starts, and the leases need its size.
  Dataset train;
  double majority_accuracy = std::numeric_limits<double>::quiet_NaN();
  if (config.data.format == DataFormat::kText) {  // one reading of the corpus makes both sets
    PSF_ASSIGN_OR_RETURN(TrainTestData both, LoadTrainTest(config));
    if (config.data.task == TextTask::kClassify) majority_accuracy = MajorityAccuracy(both.train, both.test);
    train = std::move(both.train);
  } else {
    PSF_ASSIGN_OR_RETURN(train, LoadDataset(config, /*train=*/true));
  }
  ResolveJobLength(&config, train.rows);
  // Every worker needs a shard of each epoch, and (SSP, ASP) a batch.
  const int64_t workers = config.cluster.workers;
  if (workers > train.rows)
    return InvalidArgument("cluster.workers: " + std::to_string(workers) + " workers for " +
                           std::to_string(train.rows) + " training records: some would get no data");
  if (config.cluster.consistency != Consistency::kBsp && workers * config.training.batch_size > train.rows)
    return InvalidArgument("cluster.workers: " + std::to_string(workers) + " workers with batches of " +
                           std::to_string(config.training.batch_size) + " need " +
                           std::to_string(workers * config.training.batch_size) + " records an epoch; the training "
                           "set has " + std::to_string(train.rows));
  if (options.members_on_this_host) {
    // ps-launch runs every member here: each worker holds the data sets
    // (about 1.2 times the training set as float32, with the test set;
    // click logs stay in their files) and the model; refuse a cluster this
    // machine cannot hold.
    const double data_bytes = 1.2 * (static_cast<double>(train.x.size() + train.targets.size()) * sizeof(float) +
                                             static_cast<double>(train.keys.size()) * sizeof(uint64_t));
    const double need = static_cast<double>(workers) * (data_bytes + 64e6) +
                        static_cast<double>(config.cluster.servers) * 64e6;
    const double available = MemoryAvailableBytes();
    if (available > 0 && need > available)
      return ResourceExhausted(
          std::to_string(workers) + " workers and " + std::to_string(config.cluster.servers) +
          " servers on this machine need about " + Fixed(need / 1e9, 1) + " GB (each worker holds the data, " +
          Fixed(data_bytes / 1e6, 0) + " MB here), and " + Fixed(available / 1e9, 1) +
          " GB is available: use fewer workers (--workers) or spread them over hosts (README: mpirun)");
  }
  PSF_ASSIGN_OR_RETURN(ModelSpec spec, ModelSpec::FromConfig(config.model, ShapeOf(config, train)));
  // The servers read model.init_from themselves; a file that does not fit
  // stops the job here, before any of them starts.
  PSF_RETURN_IF_ERROR(spec.LoadInitialValues(config.model));
  PSF_ASSIGN_OR_RETURN(auto socket, transport->Bind(options.bind));
  std::unique_ptr<Coordinator> c(
      new Coordinator(config, train.rows, spec.num_params(), std::move(socket), options));
  c->transport_ = transport;
  if (!c->report_.error().empty()) return Unavailable(c->report_.error());
  c->report_.set_majority_accuracy(majority_accuracy);
  c->report_.set_title(std::filesystem::path(config.path).filename().string() + ", " +
                            std::to_string(config.cluster.servers) + " servers, " +
                            std::to_string(config.cluster.workers) + " workers, " +
                            ConsistencyName(config.cluster.consistency) + "  (" + options.run_dir + ")");
  PSF_RETURN_IF_ERROR(c->OpenStore());
  c->UpdateProgress(true);  // the first snapshot, before anyone has joined
  return c;
}

double Coordinator::Elapsed() const {
  return started_ == Clock::time_point{} ? 0.0 : Since(started_);
}

void Coordinator::Log(const std::string& line) { report_.Log(Elapsed(), line); }

void Coordinator::Reply(const std::string& peer, const WireHeader& h, OutFrame payload) {
  EncodeHeader(h, &encode_buffer_);
  OutFrame frames[2] = {{encode_buffer_, nullptr}, payload};
  // A member that cannot take an answer is caught by its heartbeats.
  (void)socket_->Send(peer, std::span<const OutFrame>(frames, payload.bytes.empty() ? 1 : 2));
}

void Coordinator::ReplyError(const std::string& peer, const WireHeader& request, const Status& status,
                             const char* what) {
  // Aborted is the rejoin protocol (a member of an earlier generation, or
  // of a coordinator that restarted), not a bad message.
  if (status.code() != StatusCode::kAborted) {
    ++bad_messages_;
    // The first refusal from an address in a window is logged whole; the
    // rest are counted and summarised when the window ends
    // (SummariseRefusals): a flood of garbage is a few lines, not one each.
    std::string from = current_ && !current_->frames.empty() ? current_->frames[0]->peer_address() : "";
    if (from.empty()) from = "an unknown address";
    auto [it, first] = refusals_.try_emplace(refusals_.size() < kMaxRefusalSources ? from : "other addresses");
    if (first || it->second.logged == 0) {
      ++it->second.logged;
      std::fprintf(stderr, "ps-coordinator: refused a %s from %s: %s\n", what ? what : MessageKindName(request.kind()),
                   from.c_str(), status.message().c_str());
    } else {
      ++it->second.more;
    }
  }
  Reply(peer, ErrorReply(request, status));
}

void Coordinator::SummariseRefusals(bool force) {
  const auto now = Clock::now();
  if (!force && now < next_refusal_summary_) return;
  next_refusal_summary_ = now + std::chrono::seconds(10);
  for (const auto& [from, r] : refusals_)
    if (r.more > 0)
      std::fprintf(stderr, "ps-coordinator: refused %lld more messages from %s in the last 10 s (bad_messages counts them all)\n",
                   static_cast<long long>(r.more), from.c_str());
  refusals_.clear();
}

Status Coordinator::Run(const std::atomic<bool>& stop) {
  Log("ps-coordinator: job " + config_.path + ": " + std::to_string(params_) + " parameters, " +
      std::to_string(records_) + " training records in " + std::to_string(plan_.shards()) +
      " shards, " + std::to_string(config_.cluster.servers) + " servers, " +
      std::to_string(config_.cluster.workers) + " workers, " +
      ConsistencyName(config_.cluster.consistency) + "; waiting for members at " + endpoint());
  const CheckpointOptions& ck = config_.checkpoint;
  if (!ck.enabled())
    Log("checkpoints: off (checkpoint.interval_steps and interval_s are 0" +
        std::string(options_.run_dir.empty() && ck.dir.empty() ? ", or no run directory and no checkpoint.dir" : "") +
        "): a server that dies sends the job back to the initial weights");
  else
    Log("checkpoints: every " + (ck.interval_steps > 0 ? std::to_string(ck.interval_steps) + " steps"
                                                       : Fixed(ck.interval_s, 0) + " s") +
        " and at the end, in " + ck.dir);
  while (true) {
    if (stop.load(std::memory_order_relaxed) && !job_over_)
      EndJob(Cancelled("stopped by a signal before the job finished"));
    if (job_over_ && (members_.ShutdownComplete() || Clock::now() >= shutdown_deadline_)) break;
    // Each of these walks every member: not on every message's path, and
    // an idle coordinator wakes only for them.
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_housekeeping_ - Clock::now());
    PSF_ASSIGN_OR_RETURN(auto message, socket_->Receive(std::clamp(wait, std::chrono::milliseconds(0),
                                                                   std::chrono::milliseconds(50))));
    if (message) {
      current_ = &*message;  // its sender's address is looked up only if it is refused
      Handle(*message);
      current_ = nullptr;
    }
    if (const auto now = Clock::now(); now >= next_housekeeping_) {
      next_housekeeping_ = now + std::chrono::milliseconds(50);
      RetryParkedLeases(false);
      CheckLiveness();
      PlanCheckpoint();
      ReturnDeadWorkersLeases();
      AdmitWaitingMembers();
      ReportStall();
      SummariseRefusals(false);
      UpdateProgress(false);
    }
  }
  SummariseRefusals(true);
  UpdateProgress(true);
  if (outcome_.ok()) WriteSummary();
  if (!options_.run_dir.empty()) {
    // The dashboard of the finished run, to open from the run directory.
    const std::string page = options_.run_dir + "/dashboard.html";
    if (auto s = WriteStaticDashboard(page, Snapshot(), TimelineJson()); !s.ok()) Log(s.message());
    else Log("dashboard: " + page);
  }
  return outcome_;
}

bool Coordinator::Admitted(const InMessage& m, std::size_t message_class) {
  const PeerLimiter::Verdict v = limiter_.Admit(m.peer, message_class, Clock::now());
  if (v != PeerLimiter::Verdict::kCutOff) return v == PeerLimiter::Verdict::kAdmit;
  const std::string address = m.frames.empty() ? "" : m.frames[0]->peer_address();
  const bool registrations = message_class == kRegistration;
  Log("cut off a connection from " + (address.empty() ? std::string("an unknown address") : address) +
      ": more than " + Fixed(registrations ? config_.cluster.max_registrations_per_s : config_.cluster.max_requests_per_s, 0) +
      (registrations ? " registrations" : " messages") + " a second (cluster." +
      (registrations ? "max_registrations_per_s" : "max_requests_per_s") + "); its messages are dropped for " +
      Fixed(config_.cluster.cutoff_s, 0) + " s");
  return false;
}

void Coordinator::Handle(InMessage& m) {
  if (!Admitted(m, kAnyMessage)) return;
  if (m.frames.empty()) return ReplyError(m.peer, {}, InvalidArgument("empty message"), "message");
  auto decoded = DecodeHeader(m.frames[0]->bytes(), &decode_scratch_);
  if (!decoded.ok()) return ReplyError(m.peer, {}, decoded.status(), "message");
  const WireHeader& h = *decoded;
  if (h.kind() == MessageKind::kRegister && !Admitted(m, kRegistration)) return;
  if (m.frames.size() != 1)
    return ReplyError(m.peer, h, InvalidArgument(std::string(MessageKindName(h.kind())) + " with " +
                                                 std::to_string(m.frames.size()) + " frames, expected 1"));
  if (h.As<msg::Register>()) return HandleRegister(m.peer, h);
  if (const auto* b = h.As<msg::Heartbeat>()) return HandleHeartbeat(m.peer, h, *b);
  if (const auto* l = h.As<msg::LeaseRequest>()) return HandleLease(m.peer, h, *l);
  if (const auto* r = h.As<msg::Report>()) return HandleReport(m.peer, h, *r);
  ReplyError(m.peer, h, InvalidArgument(std::string("the coordinator does not take ") +
                                        MessageKindName(h.kind()) + " messages"));
}

void Coordinator::HandleHeartbeat(const std::string& peer, const WireHeader& h, const msg::Heartbeat& b) {
  if (b.role == PeerRole::kWorker && h.generation != commits_.generation()) {
    // A worker of an abandoned generation: the answer tells it to join again.
    msg::Heartbeat answer;
    answer.restore = commits_.restore_step();
    answer.stop = job_over_;
    WireHeader r = ReplyTo(h, std::move(answer));
    r.generation = commits_.generation();
    return Reply(peer, r);
  }
  Member* m = members_.Find(b.role, h.sender);
  if (!m) return ReplyError(peer, h, NotAMember(h, b.role));
  // A member beats only once welcomed: a heartbeat for a place still
  // joining comes from a member of the run before this coordinator's, whose
  // id was given to a newcomer. It joins again, in a place of its own.
  if (m->state == MemberState::kJoining) return ReplyError(peer, h, NotAMember(h, b.role));
  msg::Heartbeat answer;
  members_.FillRemoved(b.removed_from, &answer);
  answer.checkpoint = commits_.committed();
  answer.checkpoint_at = commits_.planned();
  answer.restore = commits_.restore_step();
  answer.collecting = commits_.collecting();
  answer.stop = job_over_ || m->state == MemberState::kDead;
  if (m->state != MemberState::kDead) {
    m->last_seen = Clock::now();
    m->committed_when_seen = commits_.committed();
    m->progress = {.step = b.step,
                   .epoch = b.epoch,
                   .samples = b.samples,
                   .loss = b.loss,
                   .wire = {b.bytes_pushed, b.bytes_pulled}};
    if (m->role == PeerRole::kWorker && m->state == MemberState::kFinished)
      m->progress.step = std::max(m->progress.step, m->final_step);
    if (m->role == PeerRole::kServer && h.generation == commits_.generation() && commits_.collecting()) {
      // Loading the generation's checkpoint: what it loaded, and its positions.
      m->restored = b.restored;
      if (b.restored == commits_.restore_step())
        for (const DataPosition& p : b.positions)
          if (p.worker < static_cast<uint64_t>(config_.cluster.workers)) m->restored_positions[p.worker] = p;
    } else if (m->role == PeerRole::kServer && h.generation == commits_.generation()) {
      m->removals_known = b.removed_from;
      if (b.checkpoint > commits_.committed() && m->durable.insert(b.checkpoint).second) {
        while (m->durable.size() > 16) m->durable.erase(m->durable.begin());
        CommitCheckpoint();
      }
      for (const EpochAudit& a : b.audit)
        if (a.epoch >= 1 && a.epoch <= config_.training.epochs) m->audit[a.epoch] = a;
      for (const DataPosition& p : b.positions)
        if (p.worker < members_.workers().size()) m->positions[p.worker] = p;
    }
    m->farewell = m->farewell || b.stop;
  }
  m->told_stop = m->told_stop || answer.stop;
  WireHeader r = ReplyTo(h, std::move(answer));
  r.generation = commits_.generation();
  Reply(peer, r);
  if (commits_.collecting() && m->role == PeerRole::kServer) FinishRestart();
}

void Coordinator::HandleLease(const std::string& peer, const WireHeader& h, const msg::LeaseRequest& l) {
  if (h.generation != commits_.generation())
    return ReplyError(peer, h, Aborted("the job restarted from step " + std::to_string(commits_.restore_step()) + ": rejoin"));
  Member* m = members_.Find(PeerRole::kWorker, h.sender);
  if (!m) return ReplyError(peer, h, NotAMember(h, PeerRole::kWorker));
  // Not active: declared dead, or a member of the run before this
  // coordinator's (which reuses ids) mistaken for one that has joined but
  // not started. Either way it joins again, in a place of its own.
  if (m->state != MemberState::kActive && m->state != MemberState::kFinished)
    return ReplyError(peer, h, Aborted("lease request from worker " + std::to_string(h.sender) +
                                       ", which is not an active member of the job: join again"));
  m->last_seen = Clock::now();
  m->progress.step = std::max(m->progress.step, l.step);
  // A replacement trains from its first lease request on (it loads the data
  // first): until then the others may take over its shards.
  leases_.SetAbsent(h.sender, false);
  int64_t evaluate = 0;
  auto completed_epoch = [&](int64_t epoch) {
    Log("epoch " + std::to_string(epoch) + "/" + std::to_string(config_.training.epochs) + " complete at step " +
        std::to_string(l.step) + "; worker " + std::to_string(h.sender) + " evaluates it");
    // The final epoch is evaluated by the job's final evaluation.
    if (epoch < config_.training.epochs) evaluate = epoch;
  };
  for (uint64_t lease : l.done) {
    auto completed = leases_.Done(h.sender, lease);
    if (!completed.ok()) return ReplyError(peer, h, completed.status());
    if (*completed > 0) completed_epoch(*completed);
  }
  if (config_.cluster.consistency == Consistency::kBsp && !l.finished) {
    // Lockstep (lease_table.h): what this worker holds is used up, and
    // every step before this one is applied, so whatever was used up
    // before it is done, whichever worker's request comes first.
    leases_.UsedUp(h.sender, l.step);
    const int64_t completed = leases_.CompleteUsedUp(l.step, [&](uint32_t w) {
      const auto& workers = members_.workers();
      return w < workers.size() &&
             (workers[w].state == MemberState::kActive || workers[w].state == MemberState::kFinished);
    });
    if (completed > 0) completed_epoch(completed);
  }
  // An epoch completed by a dead worker's leases goes to the next worker still training.
  if (evaluate == 0 && pending_evaluation_ > 0 && m->state == MemberState::kActive && !l.finished)
    std::swap(evaluate, pending_evaluation_);
  if (!l.done.empty()) RetryParkedLeases(false);
  AnswerLease(peer, h, evaluate, /*may_park=*/true);
}

bool Coordinator::AnswerLease(const std::string& peer, const WireHeader& h, int64_t evaluate_epoch,
                              bool may_park) {
  const auto& l = std::get<msg::LeaseRequest>(h.body);
  Member* m = members_.Find(PeerRole::kWorker, h.sender);
  if (!m || (m->state != MemberState::kActive && m->state != MemberState::kFinished)) return true;
  msg::LeaseReply r;
  r.evaluate_epoch = evaluate_epoch;
  if (l.finished || leases_.finished() || m->state == MemberState::kFinished) {
    // A worker that finishes stops training at once (and leaves the
    // servers); which worker evaluates the final weights is the last one to
    // finish, or, if that one dies, one that finished before and asks again.
    const bool first = m->state == MemberState::kActive;
    if (first) {
      m->state = MemberState::kFinished;
      m->final_step = l.step;
    }
    r.status = LeaseStatus::kFinished;
    const bool none_active = !members_.AnyWorkerActive();
    if (evaluator_ == static_cast<int64_t>(h.sender)) {
      r.final_version = std::max<int64_t>(final_steps_, 1);
    } else if (evaluator_ >= 0 || job_over_) {
      r.final_version = -1;  // another worker evaluates
    } else if (none_active) {
      int64_t version = 0;
      for (const Member& w : members_.workers()) version = std::max(version, w.final_step);
      r.final_version = std::max<int64_t>(version, 1);
      final_steps_ = version;
      evaluator_ = h.sender;
      Log("training done at step " + std::to_string(version) + "; worker " + std::to_string(h.sender) +
          " runs the final evaluation");
    } else if (first) {
      r.final_version = 0;  // undecided: ask again after leaving the servers
    } else if (may_park) {
      parked_leases_.push_back({peer, h, evaluate_epoch, Clock::now() + Seconds(config_.cluster.request_timeout_s / 2)});
      return false;
    } else {
      r.status = LeaseStatus::kWait;  // still undecided: ask again
    }
    Reply(peer, ReplyTo(h, r));
    return true;
  }
  LeaseTable::Grant g = leases_.Next(h.sender);
  if (g.status == LeaseStatus::kWait && may_park && config_.cluster.consistency == Consistency::kAsp &&
      leases_.HeldBy(h.sender) == 0) {
    // Nothing keeps an ASP worker's pace: rather than spin through empty
    // steps, it waits here until a shard frees up or the epoch ends. (One
    // that still holds leases must push them first: it may not wait.)
    parked_leases_.push_back({peer, h, evaluate_epoch, Clock::now() + Seconds(config_.cluster.request_timeout_s / 2)});
    return false;
  }
  if (g.status == LeaseStatus::kGranted && store_ &&
      !Record(store_->AddGrant(commits_.generation(), {h.sender, g.lease, g.offset})).ok())
    return true;
  r.status = g.status;
  r.lease_id = g.lease;
  r.epoch = g.epoch;
  r.record_begin = g.positions.begin;
  r.record_end = g.positions.end;
  r.record_offset = g.offset;
  Reply(peer, ReplyTo(h, r));
  return true;
}

void Coordinator::RetryParkedLeases(bool expire_all) {
  if (parked_leases_.empty()) return;
  std::vector<ParkedLease> parked;
  parked.swap(parked_leases_);
  const auto now = Clock::now();
  for (auto& p : parked) {
    const bool expired = expire_all || now >= p.deadline;
    if (!AnswerLease(p.peer, p.request, p.evaluate_epoch, /*may_park=*/!expired))
      parked_leases_.back().deadline = p.deadline;
  }
}

void Coordinator::HandleReport(const std::string& peer, const WireHeader& h, const msg::Report& r) {
  if (h.generation != commits_.generation())
    return ReplyError(peer, h, Aborted("the job restarted from step " + std::to_string(commits_.restore_step()) + ": rejoin"));
  Member* m = members_.Find(PeerRole::kWorker, h.sender);
  if (!m) return ReplyError(peer, h, NotAMember(h, PeerRole::kWorker));
  if (!std::isfinite(r.metric))
    return ReplyError(peer, h, InvalidArgument("report with a non-finite metric"));
  m->last_seen = Clock::now();
  // The final evaluator may be a replacement that trained in no epoch of
  // its own: the epochs are the job's.
  const int64_t epoch = r.final ? std::max(r.epoch, leases_.epochs_completed()) : r.epoch;
  // A train loss that is not finite is unknown (the evaluator trained no step of the epoch).
  const double train_loss = std::isfinite(r.train_loss) ? r.train_loss : std::numeric_limits<double>::quiet_NaN();
  EvaluationRecord e{epoch, r.step, r.metric, Elapsed(), r.final, train_loss,
                     std::isfinite(r.test_logloss) ? r.test_logloss : 0.0};
  report_.Evaluation(e);
  if (store_ && !r.final) (void)Record(store_->PutEvaluation(e));
  const char* metric = MetricName(config_);
  const char* second = SecondMetricName(config_);
  Log(std::string(r.final ? "final" : "after") + " epoch " + std::to_string(epoch) + "/" +
      std::to_string(config_.training.epochs) + "  step " + std::to_string(r.step) + "  " + metric + " " +
      Fixed(r.metric, 4) + (second ? "  " + std::string(second) + " " + Fixed(e.test_logloss, 4) : std::string()) +
      "  (" + Fixed(e.time_s, 1) + " s)");
  Reply(peer, ReplyTo(h, msg::Heartbeat{}));
  if (r.final) EndJob(Status::Ok());
}

void Coordinator::CheckLiveness() {
  if (job_over_) return;
  const auto now = Clock::now();
  const ClusterOptions& cluster = config_.cluster;
  if (commits_.collecting() &&
      now - commits_.collecting_since() > Seconds(cluster.connect_timeout_s + cluster.peer_timeout_s)) {
    std::string missing;
    for (const Member& s : members_.servers())
      if (s.state != MemberState::kActive || s.restored != commits_.restore_step())
        missing += (missing.empty() ? "" : ", ") + std::to_string(s.id);
    return EndJob(Unavailable("generation " + std::to_string(commits_.generation()) + ": servers " +
                              (missing.empty() ? std::string("?") : missing) + " did not load step " +
                              std::to_string(commits_.restore_step()) + " within " +
                              Fixed(cluster.connect_timeout_s + cluster.peer_timeout_s, 0) + " s"));
  }
  while (auto silent = members_.NextSilent(now, cluster.peer_timeout_s, cluster.heartbeat_interval_s)) {
    Member& m = *silent->member;
    const std::string who = std::string(RoleName(m.role)) + " " + std::to_string(m.id) + PidSuffix(m.pid);
    if (m.role == PeerRole::kServer) {
      // Its key range is lost: every server goes back to the last
      // committed checkpoint (the initial weights if none), with the
      // restarted one in its place.
      RollBack(who + " at " + m.endpoint + " sent no heartbeat for " + silent->why +
               "; waiting for it to be restarted");
      AdmitWaitingMembers();
      return;
    }
    RemoveWorker(&m, who + " declared dead: no heartbeat for " + silent->why);
  }
  DeclareUntakenPlacesDead();
  // Workers still waiting for their welcome (the servers are not all there
  // yet) are as much alive as those training.
  if (members_.all_workers_registered() && !members_.AnyWorkerAlive() && evaluator_ < 0)
    return EndJob(Unavailable("every worker is gone before the job finished"));
  if (evaluator_ >= 0 && now - members_.workers()[evaluator_].last_seen > Seconds(cluster.peer_timeout_s))
    EndJob(Unavailable("worker " + std::to_string(evaluator_) +
                       ", which was running the final evaluation, sent no heartbeat for " +
                       Fixed(cluster.peer_timeout_s, 1) + " s"));
}

void Coordinator::EndJob(Status outcome) {
  if (job_over_) return;
  job_over_ = true;
  outcome_ = outcome;
  RetryParkedLeases(true);
  // Restarted members still waiting for a place: there is none any more.
  for (PeerRole role : {PeerRole::kServer, PeerRole::kWorker})
    for (const auto& [peer, request] : members_.TakeWaiting(role))
      ReplyError(peer, request, Cancelled("the job is over"));
  // Members learn it from their next heartbeat's answer.
  shutdown_deadline_ = Clock::now() + Seconds(std::min(config_.cluster.peer_timeout_s,
                                                       4 * config_.cluster.heartbeat_interval_s + 2));
  if (!outcome.ok()) {
    Log("ps-coordinator: job failed: " + outcome.message());
    return;
  }
  int64_t samples = 0;
  for (const Member& w : members_.workers()) samples += w.progress.samples;
  // Heartbeats lag; every completed epoch trained each record once.
  samples = std::max(samples, leases_.epochs_completed() * records_);
  summary_ = report_.Finish(Elapsed(), samples, final_steps_, members_.removed().size(), options_.run_dir);
}

void Coordinator::WriteSummary() {
  AuditResult audit = AuditServers(members_.servers(), records_, leases_.epochs_completed());
  for (const std::string& line : audit.lines) Log(line);
  summary_["audit"] = std::move(audit.json);
  // The servers' last checkpoints are reported as they leave.
  summary_["checkpoints_committed"] = commits_.commits();
  summary_["checkpoint_committed_step"] = commits_.committed();
  summary_["generation"] = commits_.generation();
  summary_["restarts"] = commits_.restarts();
  // (The bytes each worker moved are in its own summary: the heartbeats'
  // counts, live in /api/status and /metrics, lag behind a job's end.)
  summary_["wire_dtype"] = DTypeName(config_.cluster.wire_dtype);
  if (commits_.resumed_from() >= 0) summary_["resumed_from_step"] = commits_.resumed_from();
  for (const std::string& path : {options_.summary_path,
                                  options_.run_dir.empty() ? std::string() : options_.run_dir + "/summary.json"}) {
    if (path.empty()) continue;
    std::ofstream out(path);
    out << summary_.dump(2) << "\n";
    if (!out) {
      outcome_ = Unavailable("cannot write the summary to " + path);
      Log("ps-coordinator: " + outcome_.message());
    }
  }
}

}  // namespace psforge
