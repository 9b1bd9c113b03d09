#include "paramserver/server.h"

#include "common/sparse_payload.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <sys/resource.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/fault_transport.h"
#include "paramserver/faulty_store.h"

namespace psforge {

std::string ServerStats::ToJson() const {
  nlohmann::json j = {{"pushes_applied", pushes_applied}, {"updates", updates},
                      {"duplicates", duplicates},         {"pulls_answered", pulls_answered},
                      {"pulls_parked", pulls_parked},     {"pulls_timed_out", pulls_timed_out},
                      {"replies_dropped", replies_dropped}, {"workers_removed", workers_removed},
                      {"shared_regions", shared_regions},
                      {"errors", errors}, {"checkpoints_skipped", checkpoints_skipped},
                      {"checkpoint_copy_ms_max", checkpoint_copy_ms_max},
                      {"version", version},               {"worker_steps", worker_steps}};
  return j.dump();
}

ParamServer::ParamServer(const JobConfig& config, const ModelSpec& spec, int64_t index,
                         std::shared_ptr<ParamShard> shard, std::unique_ptr<ServerSocket> socket)
    : config_(config), spec_(spec), index_(index), shard_(std::move(shard)), socket_(std::move(socket)) {
  for (uint32_t w = 0; w < config.cluster.workers; ++w) positions_.push_back({w, 0, 0});
}

ParamServer::~ParamServer() = default;

Result<std::unique_ptr<ParamShard>> ParamServer::NewShard(const JobConfig& config, const ModelSpec& spec,
                                                          int64_t index, KeyRange range) {
  PSF_ASSIGN_OR_RETURN(auto shard, ParamShard::Create(spec, range, config.optimizer, config.cluster));
  if (!spec.tables().empty()) {
    TableMemory memory;
    memory.budget_bytes = config.cluster.memory_budget_mb << 20;
    memory.spill_dir = SpillDir(config, index);
    PSF_ASSIGN_OR_RETURN(auto tables, TableShard::Create(spec.tables(), index, config.cluster.servers, memory));
    shard->AttachTables(std::move(tables));
  }
  return shard;
}

Result<std::unique_ptr<ParamServer>> ParamServer::Create(const JobConfig& config,
                                                         const ModelSpec& spec, int64_t index,
                                                         Transport* transport,
                                                         const std::string& bind) {
  if (index < 0 || index >= config.cluster.servers)
    return InvalidArgument("server index " + std::to_string(index) + " outside [0, " +
                           std::to_string(config.cluster.servers) + ") (cluster.servers)");
  PSF_ASSIGN_OR_RETURN(auto socket, transport->Bind(bind));
  return Create(config, spec, index, std::move(socket));
}

Result<std::unique_ptr<ParamServer>> ParamServer::Create(const JobConfig& config,
                                                         const ModelSpec& spec, int64_t index,
                                                         std::unique_ptr<ServerSocket> socket) {
  if (index < 0 || index >= config.cluster.servers)
    return InvalidArgument("server index " + std::to_string(index) + " outside [0, " +
                           std::to_string(config.cluster.servers) + ") (cluster.servers)");
  KeyRange range = PartitionKeys(spec.num_params(), config.cluster.servers, index);
  if (!spec.tables().empty() && config.cluster.memory_budget_mb > 0) RemoveDeadSpills(SpillDir(config, index));
  PSF_ASSIGN_OR_RETURN(auto shard, NewShard(config, spec, index, range));
  std::unique_ptr<ParamServer> server(
      new ParamServer(config, spec, index, std::shared_ptr<ParamShard>(std::move(shard)), std::move(socket)));
  // No folder (checkpoint.dir ""): off, as the coordinator has it without a
  // run directory; it names the run directory's otherwise.
  if (config.checkpoint.enabled() && !config.checkpoint.dir.empty()) {
    const std::string path = config.checkpoint.dir + "/server-" + std::to_string(index);
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) return Unavailable("checkpoint store " + path + ": cannot create it: " + ec.message());
    PSF_ASSIGN_OR_RETURN(auto store, ParamStore::OpenRocksDb(path));
    // Chaos testing (cluster.faults write_stall_ms): a slow or hung disk.
    FaultOptions faults;
    if (!config.cluster.faults.empty()) {
      PSF_ASSIGN_OR_RETURN(faults, ParseFaultOptions(config.cluster.faults));
    }
    server->checkpoints_ = std::make_unique<CheckpointWriter>(
        WithFaults(std::move(store), faults), config.checkpoint.keep,
        Milliseconds(config.checkpoint.write_timeout_s));
  }
  return server;
}

std::string ParamServer::StatsJson() const {
  nlohmann::json j = nlohmann::json::parse(stats_.ToJson());
  if (checkpoints_) {
    j["checkpoints_written"] = checkpoints_->written();
    j["checkpoint_failures"] = checkpoints_->failures();
    j["checkpoint_durable_step"] = checkpoints_->durable();
    j["checkpoint_write_ms_max"] = checkpoints_->write_ms_max();
  }
  rusage usage{};
  if (::getrusage(RUSAGE_SELF, &usage) == 0) j["peak_rss_mb"] = static_cast<double>(usage.ru_maxrss) / 1024.0;
  if (const TableShard* tables = shard_->tables()) {
    const SpillStats s = tables->spill_stats();
    j["table_rows_resident"] = tables->resident_rows();
    j["table_rows_created"] = s.created;
    if (config_.cluster.memory_budget_mb > 0) {
      j["table_rows_evicted"] = s.evicted;
      j["table_rows_written"] = s.written;
      j["table_rows_read_back"] = s.read_back;
      j["spill_write_errors"] = s.write_errors;
      j["spill_disk_bytes"] = tables->spill_disk_bytes();
    }
  }
  return j.dump();
}

void ParamServer::MaybeCheckpoint(bool at_end) {
  // Loading, or not loaded: the shard is the abandoned run's.
  if (!checkpoints_ || loading_ || restored_ < 0) return;
  const int64_t v = shard_->version();
  // By steps: every multiple of interval_steps. By time: the step the
  // coordinator picked (every server takes it at the same step; one that
  // learns of it too late skips it, and the coordinator picks a later one).
  const int64_t every = config_.checkpoint.interval_steps;
  // At the end of the job: the final weights (when no step is half taken in).
  const bool due = at_end ? !shard_->step_in_progress()
                          : every > 0 ? v % every == 0 : coordinator_ && v == coordinator_->checkpoint_at();
  if (v <= last_checkpoint_step_ || !due) return;
  if (at_end) {
    if (Status drained = checkpoints_->Drain(); !drained.ok()) {
      std::fprintf(stderr, "ps-server %lld: no checkpoint at the end of the job (step %lld): %s\n",
                   (long long)index_, static_cast<long long>(v), drained.message().c_str());
      return;
    }
  }
  ServerCheckpoint* c = checkpoints_->Begin();
  if (!c) {
    // Tried again on the next pass while the weights are still at step v
    // (the job's end drains the writer first, so its checkpoint is not lost).
    if (skipped_step_ != v) {
      skipped_step_ = v;
      ++stats_.checkpoints_skipped;
      std::fprintf(stderr, "ps-server: checkpoint at step %lld waits: the previous one is still being written\n",
                   static_cast<long long>(v));
    }
    return;
  }
  last_checkpoint_step_ = v;
  const auto start = Clock::now();
  c->id = v;
  // BSP: before any push of step v is taken in; the tables' rows changed
  // since the last checkpoint written.
  shard_->Snapshot(c, checkpoints_->durable());
  c->positions = positions_;
  c->audit.clear();
  for (const auto& [epoch, audit] : audit_) c->audit.push_back(audit);
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  stats_.checkpoint_copy_ms_max = std::max(stats_.checkpoint_copy_ms_max, ms);
  checkpoints_->Commit();
}

Status ParamServer::Serve(const std::atomic<bool>& stop) {
  // Wake at least this often to see `stop` and expire parked pulls.
  constexpr auto kTick = std::chrono::milliseconds(100);
  PSF_RETURN_IF_ERROR(TalkToCoordinator());  // loads the generation's weights before serving
  while (!stop.load(std::memory_order_relaxed) && !shutdown_) {
    auto wait = kTick;
    for (const auto& p : parked_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(p.deadline - Clock::now());
      wait = std::clamp(left, std::chrono::milliseconds(0), wait);
    }
    PSF_ASSIGN_OR_RETURN(auto message, socket_->Receive(wait));
    if (message) Handle(*message);
    ExpireParkedPulls();
    PSF_RETURN_IF_ERROR(TalkToCoordinator());
  }
  return Status::Ok();
}

void ParamServer::AttachCoordinator(std::unique_ptr<CoordinatorChannel> channel, double lost_after_s) {
  coordinator_ = std::move(channel);
  lost_after_s_ = lost_after_s;
}

Status ParamServer::TalkToCoordinator() {
  if (!coordinator_) return Status::Ok();
  if (coordinator_->coordinator_generation() != generation_)
    Restart(coordinator_->coordinator_generation(), coordinator_->restore_step());
  ContinueLoading();
  const auto now = Clock::now();
  if (now < next_coordinator_check_) return Status::Ok();  // not on every message's path
  next_coordinator_check_ = now + std::chrono::milliseconds(50);
  // A checkpoint that has become durable is reported at once: the
  // coordinator commits a step only once every server has reported it.
  const int64_t durable = checkpoints_ ? checkpoints_->durable() : 0;
  const auto interval = durable != reported_durable_ ? Clock::duration::zero()
                                                     : Seconds(config_.cluster.heartbeat_interval_s);
  reported_durable_ = durable;
  PSF_RETURN_IF_ERROR(coordinator_->Heartbeat(Progress(static_cast<std::size_t>(coordinator_->heartbeats_answered())), interval, Seconds(lost_after_s_)));
  // Each entry once: a worker removed, then replaced (AdmitWorker), stays in.
  const auto& removed = coordinator_->removed();
  for (; removals_seen_ < removed.size(); ++removals_seen_) RemoveWorker(removed[removals_seen_]);
  if (checkpoints_) checkpoints_->SetCommitted(coordinator_->committed_checkpoint());
  if (coordinator_->stop_requested()) {
    shutdown_ = true;
    MaybeCheckpoint(/*at_end=*/true);
    if (checkpoints_) {
      // The last checkpoint is reported too, once written.
      if (Status drained = checkpoints_->Drain(); !drained.ok())
        std::fprintf(stderr, "ps-server %lld: the job's last checkpoint is not durable: %s\n", (long long)index_,
                     drained.message().c_str());
    }
    // The final audit: every push of the job has been applied by now.
    // (A job of more epochs than a heartbeat audits sends the older ones in
    // pages, the last with the latest epochs.)
    const std::size_t pages = AuditPages();
    for (std::size_t page = 0; page < pages; ++page) {
      Status s = coordinator_->Farewell(Progress(page), Seconds(std::min(2.0, config_.cluster.peer_timeout_s)));
      if (!s.ok()) {
        std::fprintf(stderr, "ps-server: final report not taken: %s\n", s.message().c_str());
        break;
      }
    }
  }
  return Status::Ok();
}

void ParamServer::Restart(uint32_t generation, int64_t step) {
  generation_ = generation;
  coordinator_->set_generation(generation);
  removals_seen_ = 0;
  next_coordinator_check_ = {};  // report at once
  for (const auto& p : parked_)
    ReplyError(p.peer, p.request, "aborted", Aborted("the job restarts from step " + std::to_string(step)));
  parked_.clear();
  restored_ = -2;  // loading
  restored_positions_.clear();
  loading_ = true;
  loading_step_ = step;
  loading_since_ = Clock::now();
  ContinueLoading();
}

void ParamServer::ContinueLoading() {
  if (!loading_) return;
  const int64_t step = loading_step_;
  const std::string what = step > 0 ? "the checkpoint at step " + std::to_string(step) : "the initial weights";
  auto fail = [&](const Status& s) {
    loading_ = false;
    restored_ = -1;
    std::fprintf(stderr, "ps-server %lld: generation %u: cannot load %s: %s\n", (long long)index_, generation_,
                 what.c_str(), s.message().c_str());
  };
  ServerCheckpoint c;
  if (checkpoints_) {
    // A checkpoint still being written holds the store: the serving loop
    // goes on (heartbeats, refusals) and tries again on its next pass, until
    // checkpoint.write_timeout_s has passed.
    if (checkpoints_->writing()) {
      if (Clock::now() - loading_since_ < checkpoints_->write_timeout()) return;
      if (Status drained = checkpoints_->Drain(std::chrono::milliseconds(0)); !drained.ok()) return fail(drained);
    }
    auto loaded = checkpoints_->RestoreTo(step);
    if (!loaded.ok()) return fail(loaded.status());
    c = std::move(*loaded);
  } else if (step > 0) {
    return fail(FailedPrecondition("this job writes no checkpoints (checkpoint.interval_steps and interval_s are 0)"));
  }
  if (step > 0 || shard_->version() > 0 || stats_.pushes_applied > 0) {
    auto shard = NewShard(config_, spec_, index_, shard_->range());
    if (!shard.ok()) return fail(shard.status());
    if (step > 0) {
      if (Status s = (*shard)->Restore(c); !s.ok()) return fail(s);
    }
    // In-flight replies keep the old shard alive until they are sent.
    shard_ = std::shared_ptr<ParamShard>(std::move(*shard));
  }
  audit_.clear();
  for (const EpochAudit& a : c.audit) audit_[a.epoch] = a;
  for (DataPosition& d : positions_) d = {d.worker, 0, 0};
  restored_positions_ = std::move(c.positions);
  last_checkpoint_step_ = step;
  restored_ = step;
  loading_ = false;
  next_coordinator_check_ = {};  // report at once
  std::fprintf(stderr, "ps-server %lld: generation %u: loaded %s\n", (long long)index_, generation_, what.c_str());
}

std::size_t ParamServer::AuditPages() const {
  if (audit_.size() <= kMaxAuditEntries) return 1;
  constexpr std::size_t kOlder = kMaxAuditEntries - kLatestAudited;
  return (audit_.size() - kLatestAudited + kOlder - 1) / kOlder;
}

MemberProgress ParamServer::Progress(std::size_t page) const {
  MemberProgress p;
  p.step = shard_->version();
  p.samples = records_applied_;  // the server's load, for the dashboard
  p.restored = restored_;
  if (checkpoints_) p.checkpoint = checkpoints_->durable();
  if (audit_.size() <= kMaxAuditEntries) {
    for (const auto& [epoch, audit] : audit_) p.audit.push_back(audit);
  } else {
    // The latest epochs every time (the one in progress changes), and a page
    // of the older ones, the next each time: a coordinator that has started
    // afresh (or a server restored from a checkpoint) learns every epoch.
    constexpr std::size_t kOlder = kMaxAuditEntries - kLatestAudited;
    const std::size_t older = audit_.size() - kLatestAudited;
    const std::size_t from = page % AuditPages() * kOlder;
    auto it = audit_.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(from));
    for (std::size_t k = from; k < std::min(older, from + kOlder); ++k, ++it) p.audit.push_back(it->second);
    it = audit_.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(older));
    for (; it != audit_.end(); ++it) p.audit.push_back(it->second);
  }
  if (coordinator_ && coordinator_->collecting() && !restored_positions_.empty()) {
    // A page a heartbeat (the next one each time an answer comes back),
    // round and round until the coordinator has them all.
    const std::size_t pages = (restored_positions_.size() + kMaxListEntries - 1) / kMaxListEntries;
    const std::size_t from = static_cast<std::size_t>(coordinator_->heartbeats_answered()) % pages * kMaxListEntries;
    const std::size_t end = std::min(restored_positions_.size(), from + kMaxListEntries);
    p.positions_from = static_cast<uint32_t>(from);
    p.positions.assign(restored_positions_.begin() + static_cast<std::ptrdiff_t>(from),
                       restored_positions_.begin() + static_cast<std::ptrdiff_t>(end));
    return p;
  }
  for (const DataPosition& d : positions_)
    if (shard_->removed(d.worker) && p.positions.size() < kMaxListEntries) p.positions.push_back(d);
  return p;
}

void ParamServer::Account(uint32_t sender, const msg::Push& push) {
  const DataMark& mark = push.mark;
  if (mark.lease != 0) positions_[sender] = {sender, mark.lease, mark.lease_offset, push.step};
  if (mark.epoch <= 0 || push.samples <= 0) return;
  records_applied_ += push.samples;
  EpochAudit& a = audit_[mark.epoch];
  a.epoch = mark.epoch;
  a.records += push.samples;
  a.id_sum += mark.id_sum;
  a.id_square_sum += mark.id_square_sum;
}

void ParamServer::RemoveWorker(uint32_t worker) {
  if (worker >= static_cast<uint64_t>(shard_->workers()) || shard_->removed(worker)) return;
  ++stats_.workers_removed;
  regions_.erase(worker);  // one that comes back offers a new region
  stats_.shared_regions = static_cast<int64_t>(regions_.size());
  bool stepped = shard_->RemoveWorker(worker);
  // Its waiting pulls are answered: if it is alive after all (declared dead
  // while silent), it learns why instead of waiting out its deadline.
  for (const ParkedPull& p : parked_)
    if (p.request.sender == worker)
      ReplyError(p.peer, p.request, "worker_removed",
                 Cancelled("worker " + std::to_string(worker) +
                           " was declared dead by the coordinator; this server no longer waits for it"));
  parked_.erase(std::remove_if(parked_.begin(), parked_.end(),
                               [&](const ParkedPull& p) { return p.request.sender == worker; }),
                parked_.end());
  if (stepped) {
    ++stats_.updates;
    MaybeCheckpoint();
    AnswerReadyPulls();
  }
}

void ParamServer::Handle(InMessage& m) {
  if (m.frames.empty()) return ReplyError(m.peer, {}, "no_frames", InvalidArgument("empty message"));
  auto decoded = DecodeHeader(m.frames[0]->bytes(), &decode_scratch_);
  if (!decoded.ok()) return ReplyError(m.peer, {}, "malformed_header", decoded.status());
  const WireHeader& h = *decoded;
  const auto* push = h.As<msg::Push>();
  const auto* control = h.As<msg::Control>();
  const auto* pull_request = h.As<msg::Pull>();
  // A payload frame: a push's gradient (unless it is in a slot), and the
  // sparse rows of a push or a pull.
  const std::size_t expected_frames =
      (push && (push->payload_slot == 0 || !push->sparse.empty())) || (pull_request && !pull_request->sparse.empty())
          ? 2 : 1;
  if (m.frames.size() != expected_frames)
    return ReplyError(m.peer, h, "wrong_frame_count",
                      InvalidArgument(std::string(MessageKindName(h.kind())) + " with " +
                                      std::to_string(m.frames.size()) + " frames, expected " +
                                      std::to_string(expected_frames)));
  const bool work = push || pull_request ||
                    (control && (control->kind == ControlKind::kRemoveWorker || control->kind == ControlKind::kAdmitWorker));
  if (coordinator_ && work && h.generation != generation_)
    return ReplyError(m.peer, h, "other_generation",
                      Aborted(std::string(MessageKindName(h.kind())) + " from generation " +
                              std::to_string(h.generation) + " of the job; this server serves generation " +
                              std::to_string(generation_) + " (the job restarted from step " +
                              std::to_string(restored_) + "): rejoin"));
  if (push) return HandlePush(m.peer, h, *push, m);
  if (pull_request) return HandlePull(m.peer, h, *pull_request, m, /*rows_in_frame=*/true);
  if (h.As<msg::Heartbeat>()) {
    msg::Heartbeat answer;
    answer.step = shard_->version();
    return Reply(m.peer, ReplyTo(h, std::move(answer)));
  }
  if (control) {
    const msg::Control& c = *control;
    if (c.kind == ControlKind::kShareMemory) return HandleShareMemory(m.peer, h, c);
    msg::Control r;
    r.kind = c.kind;
    r.value = shard_->version();
    if (c.kind == ControlKind::kStats) {
      stats_.version = shard_->version();
      stats_.worker_steps = shard_->WorkerSteps();
      r.text = StatsJson();
    } else if (c.kind == ControlKind::kShutdown) {
      shutdown_ = true;
    } else if (c.kind == ControlKind::kRemoveWorker) {
      if (c.value < 0 || c.value >= shard_->workers())
        return ReplyError(m.peer, h, "bad_control",
                          InvalidArgument("remove worker " + std::to_string(c.value) +
                                          " but the job has " + std::to_string(shard_->workers())));
      RemoveWorker(static_cast<uint32_t>(c.value));
    } else if (c.kind == ControlKind::kAdmitWorker) {
      if (h.sender >= static_cast<uint64_t>(shard_->workers()))
        return ReplyError(m.peer, h, "bad_control",
                          InvalidArgument("admit worker " + std::to_string(h.sender) + " but the job has " +
                                          std::to_string(shard_->workers())));
      const bool replacing = shard_->removed(h.sender);
      r.value = shard_->AdmitWorker(h.sender);
      if (replacing)
        std::fprintf(stderr, "ps-server %lld: worker %u joined again: its pushes count from step %lld\n",
                     (long long)index_, h.sender, (long long)r.value);
    } else {
      return ReplyError(m.peer, h, "unsupported_control",
                        InvalidArgument("control kind not supported by a server"));
    }
    return Reply(m.peer, ReplyTo(h, std::move(r)));
  }
  ReplyError(m.peer, h, "unexpected_kind",
             InvalidArgument(std::string("a server does not take ") + MessageKindName(h.kind()) + " messages"));
}

void ParamServer::HandlePush(const std::string& peer, const WireHeader& h, const msg::Push& push,
                             const InMessage& m) {
  if (push.mark.epoch < 0 || push.mark.lease_offset < 0)
    return ReplyError(peer, h, "bad_push",
                      InvalidArgument("push marked with epoch " + std::to_string(push.mark.epoch) +
                                      " and lease offset " + std::to_string(push.mark.lease_offset)));
  auto payload = PushPayload(h.sender, push, m);
  if (!payload.ok()) return ReplyError(peer, h, "bad_push", payload.status());
  std::span<const std::byte> dense = *payload;
  std::vector<SparseSection> sections;
  if (!push.sparse.empty()) {
    // The rows follow the dense values in the frame (which holds only
    // them when the dense part is in a shared-memory slot).
    TableShard* tables = shard_->tables();
    if (!tables)
      return ReplyError(peer, h, "bad_push",
                        InvalidArgument("push names rows of sparse table " + std::to_string(push.sparse[0].table) +
                                        "; this job's model has no sparse tables"));
    // (Dense values of 2 bytes are padded to whole floats before the rows.)
    const int64_t values = push.payload_slot == 0 ? std::max<int64_t>(0, push.key_end - push.key_begin) : 0;
    const auto dense_bytes = static_cast<int64_t>(values * static_cast<int64_t>(DTypeBytes(push.dtype)));
    auto split = SplitSparsePayload(SparseLayout::kPush, m.frames[1]->bytes(), (dense_bytes + 3) / 4, push.sparse,
                                    tables->dims(), tables->table_rows());
    if (!split.ok()) return ReplyError(peer, h, "bad_push", split.status());
    sections = std::move(*split);
    if (push.payload_slot == 0) dense = dense.first(static_cast<std::size_t>(dense_bytes));
  }
  if (push.dtype != DType::kF32) {
    // Rounded on the wire (cluster.wire_dtype): summed and applied in float32.
    const int64_t values = push.key_end - push.key_begin;
    if (values < 0 || dense.size() != static_cast<std::size_t>(values) * DTypeBytes(push.dtype))
      return ReplyError(peer, h, "bad_push",
                        InvalidArgument("push payload of " + std::to_string(dense.size()) + " bytes, expected " +
                                        std::to_string(std::max<int64_t>(values, 0) *
                                                       static_cast<int64_t>(DTypeBytes(push.dtype))) + " (" +
                                        std::to_string(values) + " " + DTypeName(push.dtype) + " values)"));
    push_values_.resize(static_cast<std::size_t>(values));
    DecodeValues(push.dtype, dense.data(), values, push_values_.data());
    dense = std::as_bytes(std::span<const float>(push_values_));
  }
  // A push with pull whose step completes sends the new dense weights
  // before its rows are updated (ParamShard::Push, defer_tables): the
  // worker takes them in and plans its next batch while this loop updates
  // the rows; a pull of rows waits for that.
  const bool defer_rows = push.with_pull && !sections.empty();
  auto outcome =
      shard_->Push(h.sender, push.step, push.samples, push.key_begin, push.key_end, dense, sections, defer_rows);
  if (!outcome.ok()) return ReplyError(peer, h, "bad_push", outcome.status());
  if (*outcome == PushOutcome::kDuplicate) {
    ++stats_.duplicates;
  } else if (*outcome != PushOutcome::kPart) {
    // The worker's step is all in (its last part): its records count once.
    ++stats_.pushes_applied;
    Account(h.sender, push);
  }
  auto answer = [&] {
    if (!push.with_pull) {
      Reply(peer, ReplyTo(h, msg::PushAck{push.step, *outcome == PushOutcome::kDuplicate}));
      return;
    }
    // Answered by the pull reply instead of an ack.
    msg::Pull pull;
    pull.version = push.pull_version;
    pull.key_begin = push.key_begin;
    pull.key_end = push.key_end;
    pull.dtype = push.dtype;
    pull.reply_slot = push.reply_slot;
    WireHeader request = h;
    request.body = pull;
    HandlePull(peer, request, pull, m, /*rows_in_frame=*/false);
  };
  if (*outcome != PushOutcome::kApplied) {
    // A part may complete parts of the step whose new weights are awaited.
    if (*outcome != PushOutcome::kDuplicate && shard_->parts() > 1) AnswerReadyPulls();
    return answer();
  }
  ++stats_.updates;
  if (shard_->tables_behind()) {
    AnswerReadyPulls();  // the dense ones
    answer();
    shard_->CatchUpTables();  // before anything else touches the shard: `sections` point into `m`
    MaybeCheckpoint();
    AnswerReadyPulls();
    return;
  }
  MaybeCheckpoint();
  AnswerReadyPulls();
  answer();
}

Result<std::span<const std::byte>> ParamServer::PushPayload(uint32_t sender, const msg::Push& push,
                                                             const InMessage& m) const {
  if (push.payload_slot == 0) return m.frames[1]->bytes();
  auto region = regions_.find(sender);
  if (region == regions_.end())
    return FailedPrecondition("push names shared-memory slot " + std::to_string(push.payload_slot) + " but worker " +
                              std::to_string(sender) + " has shared no memory with this server");
  std::span<const std::byte> slot = region->second->slot(push.payload_slot);
  const int64_t values = push.key_end - push.key_begin;
  if (push.key_begin < 0 || values < 0 || values > static_cast<int64_t>(slot.size() / DTypeBytes(push.dtype)))
    return InvalidArgument("push of keys [" + std::to_string(push.key_begin) + ", " + std::to_string(push.key_end) +
                           ") does not fit its shared-memory slot of " + std::to_string(slot.size()) + " bytes");
  return slot.first(static_cast<std::size_t>(values) * DTypeBytes(push.dtype));
}

void ParamServer::HandleShareMemory(const std::string& peer, const WireHeader& h, const msg::Control& c) {
  if (!config_.cluster.shared_memory)
    return ReplyError(peer, h, "shared_memory_declined",
                      FailedPrecondition("this job does not share memory (cluster.shared_memory is false)"));
  if (h.sender >= static_cast<uint64_t>(shard_->workers()))
    return ReplyError(peer, h, "bad_control",
                      InvalidArgument("shared memory from worker " + std::to_string(h.sender) +
                                      " but the job has " + std::to_string(shard_->workers())));
  const int64_t needed = shard_->range().size() * static_cast<int64_t>(sizeof(float));
  if (c.region.slot_bytes != needed)
    return ReplyError(peer, h, "bad_control",
                      InvalidArgument("shared-memory slots of " + std::to_string(c.region.slot_bytes) +
                                      " bytes; this server's key range needs " + std::to_string(needed)));
  auto region = SharedRegion::Attach(c.region);
  if (!region.ok()) return ReplyError(peer, h, "shared_memory_declined", region.status());
  regions_[h.sender] = std::move(*region);
  stats_.shared_regions = static_cast<int64_t>(regions_.size());
  Reply(peer, ReplyTo(h, msg::Control{c.kind, 1, {}, {}}));
}

void ParamServer::Reply(const std::string& peer, const WireHeader& h, std::span<const OutFrame> payloads) {
  EncodeHeader(h, &encode_buffer_);
  OutFrame frames[3] = {{encode_buffer_, nullptr}};
  for (std::size_t i = 0; i < payloads.size() && i < 2; ++i) frames[1 + i] = payloads[i];
  if (!socket_->Send(peer, std::span<const OutFrame>(frames, 1 + std::min<std::size_t>(payloads.size(), 2))).ok())
    ++stats_.replies_dropped;
}

void ParamServer::Reply(const std::string& peer, const WireHeader& h, OutFrame payload) {
  EncodeHeader(h, &encode_buffer_);
  OutFrame frames[2] = {{encode_buffer_, nullptr}, payload};
  std::size_t n = payload.bytes.empty() ? 1 : 2;
  if (!socket_->Send(peer, std::span<const OutFrame>(frames, n)).ok()) ++stats_.replies_dropped;
}

void ParamServer::ReplyError(const std::string& peer, const WireHeader& request,
                             const std::string& reason, const Status& status) {
  ++stats_.errors[reason];
  Reply(peer, ErrorReply(request, status));
}

}  // namespace psforge
