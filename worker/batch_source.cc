#include "worker/batch_source.h"

#include <algorithm>

#include "common/clock.h"

namespace psforge {

LocalShardSource::LocalShardSource(const ShardPlan* plan, int64_t epochs, int64_t max_steps, int64_t first_step,
                                   int64_t batch_size)
    : plan_(plan), epochs_(epochs), max_steps_(max_steps) {
  std::vector<int64_t> rows;
  rows.reserve(static_cast<std::size_t>(std::max<int64_t>(batch_size, 0)));
  for (int64_t step = 0; step < first_step; ++step) {
    auto plan_of_step = Next(step, batch_size, &rows);
    if (!plan_of_step.ok() || plan_of_step->stop) break;
  }
  first_step_ = first_step;
}

Result<BatchPlan> LocalShardSource::Next(int64_t step, int64_t max_rows, std::vector<int64_t>* rows) {
  BatchPlan plan;
  rows->clear();
  if (epoch_ == 0 || (next_shard_ == order_.size() && shard_pos_ == shard_records_.size())) {
    if (epoch_ > 0) plan.evaluate_epoch = epoch_;
    if (epoch_ == epochs_ || (max_steps_ > 0 && step >= max_steps_)) {
      plan.stop = true;
      plan.evaluate_epoch = 0;  // the final evaluation covers it
      return plan;
    }
    order_ = plan_->EpochOrder(++epoch_);
    next_shard_ = 0;
    shard_records_.clear();
    shard_pos_ = 0;
    epoch_done_ = 0;
  }
  if (max_steps_ > 0 && step >= max_steps_) {
    plan.stop = true;
    return plan;
  }
  while (static_cast<int64_t>(rows->size()) < max_rows) {
    if (shard_pos_ == shard_records_.size()) {
      if (next_shard_ == order_.size()) break;  // the epoch's last batch is short
      plan_->Records(epoch_, order_[next_shard_++], &shard_records_);
      shard_pos_ = 0;
    }
    std::size_t take = std::min<std::size_t>(max_rows - rows->size(), shard_records_.size() - shard_pos_);
    rows->insert(rows->end(), shard_records_.begin() + shard_pos_, shard_records_.begin() + shard_pos_ + take);
    shard_pos_ += take;
  }
  epoch_done_ += static_cast<int64_t>(rows->size());
  plan.rows = static_cast<int64_t>(rows->size());
  plan.epoch = epoch_;
  plan.epoch_fraction = static_cast<double>(epoch_done_) / std::max<int64_t>(1, plan_->records());
  return plan;
}

HeartbeatThread::HeartbeatThread(std::unique_ptr<CoordinatorChannel> channel,
                                 const ClusterOptions& cluster, double lost_after_s)
    : channel_(std::move(channel)),
      interval_(Seconds(cluster.heartbeat_interval_s)),
      lost_after_(Seconds(lost_after_s)),
      thread_([this] { Run(); }) {}

HeartbeatThread::~HeartbeatThread() {
  {
    MutexLock lock(mu_);
    closing_ = true;
  }
  cv_.NotifyAll();
  thread_.join();
}

void HeartbeatThread::Publish(const MemberProgress& progress) {
  MutexLock lock(mu_);
  progress_ = progress;
}

Status HeartbeatThread::status() const {
  MutexLock lock(mu_);
  return status_;
}

void HeartbeatThread::Run() {
  while (true) {
    MemberProgress p;
    {
      MutexLock lock(mu_);
      if (closing_) return;
      p = progress_;
    }
    Status s = channel_->Heartbeat(p, interval_, lost_after_);
    if (s.ok() && channel_->stop_requested())
      s = Cancelled("the coordinator at " + channel_->coordinator() + " stopped the job");
    if (s.ok() && channel_->coordinator_generation() != channel_->generation())
      s = Aborted("the job restarted from the checkpoint at step " + std::to_string(channel_->restore_step()) +
                  " (generation " + std::to_string(channel_->coordinator_generation()) + ")");
    MutexLock lock(mu_);
    if (!s.ok() && status_.ok()) status_ = s;
    // Wakes early only to close; answers are read on the next beat.
    const auto next = Clock::now() + std::min<Clock::duration>(interval_, std::chrono::milliseconds(100));
    while (!closing_ && cv_.WaitUntil(mu_, next)) {
    }
  }
}

LeaseSource::LeaseSource(const ShardPlan* plan, const JobConfig& config, CoordinatorChannel* channel,
                         std::unique_ptr<HeartbeatThread> heartbeat, int64_t first_step)
    : plan_(plan),
      channel_(channel),
      epochs_(config.training.epochs),
      max_steps_(config.training.max_steps),
      first_step_(first_step),
      timeout_(Seconds(config.cluster.request_timeout_s)),
      lockstep_(config.cluster.consistency == Consistency::kBsp),
      heartbeat_(std::move(heartbeat)) {}

Result<msg::LeaseReply> LeaseSource::Lease(int64_t step, bool finished) {
  msg::LeaseRequest request;
  request.step = step;
  request.finished = finished;
  // Done: every record handed out in a step that has been applied.
  for (auto it = consumed_.begin(); it != consumed_.end() && request.done.size() < kMaxListEntries;) {
    if (it->second < applied_steps_) {
      request.done.push_back(it->first);
      it = consumed_.erase(it);
    } else {
      ++it;
    }
  }
  WireHeader h;
  h.body = std::move(request);
  PSF_ASSIGN_OR_RETURN(WireHeader answer, channel_->Call(std::move(h), timeout_));
  auto* reply = answer.As<msg::LeaseReply>();
  if (!reply)
    return DataLoss("the coordinator at " + channel_->coordinator() + " answered a lease with " +
                    MessageKindName(answer.kind()));
  return std::move(*reply);
}

Result<BatchPlan> LeaseSource::Next(int64_t step, int64_t max_rows, std::vector<int64_t>* rows) {
  PSF_RETURN_IF_ERROR(heartbeat_->status());
  BatchPlan plan;
  rows->clear();
  if (stopped_) {
    plan.stop = true;
    return plan;
  }
  if (max_steps_ > 0 && step >= max_steps_) {
    PSF_ASSIGN_OR_RETURN(msg::LeaseReply r, Lease(step, /*finished=*/true));
    stopped_ = plan.stop = true;
    final_version_ = r.final_version;
    last_step_ = step;
    return plan;
  }
  int64_t rows_epoch = epoch_;
  while (true) {
    if (holding_ && shard_pos_ < shard_records_.size()) {
      if (static_cast<int64_t>(rows->size()) >= max_rows) break;
      std::size_t take = std::min<std::size_t>(max_rows - rows->size(), shard_records_.size() - shard_pos_);
      rows->insert(rows->end(), shard_records_.begin() + shard_pos_, shard_records_.begin() + shard_pos_ + take);
      shard_pos_ += take;
      plan.lease = lease_;
      plan.lease_offset = static_cast<int64_t>(shard_pos_);
      rows_epoch = epoch_;
      continue;
    }
    // The lease is used up (or none is held). Under BSP the next one is
    // asked for at once, even with this step's batch full: the coordinator
    // then knows in this step that this lease ends in it (lease_table.h).
    if (static_cast<int64_t>(rows->size()) >= max_rows && (!lockstep_ || !holding_)) break;
    if (holding_) {  // its last records are in this step's batch or an earlier one
      consumed_.emplace_back(lease_, rows->empty() ? step - 1 : step);
      holding_ = false;
    }
    PSF_ASSIGN_OR_RETURN(msg::LeaseReply r, Lease(step, /*finished=*/false));
    if (r.evaluate_epoch > 0) plan.evaluate_epoch = r.evaluate_epoch;
    if (r.status == LeaseStatus::kWait) break;  // an empty or short step keeps pace
    if (r.status == LeaseStatus::kFinished) {
      stopped_ = true;
      final_version_ = r.final_version;
      last_step_ = step;
      plan.stop = rows->empty();
      break;
    }
    const int64_t shard = plan_->ShardOf(r.lease_id);
    const KeyRange positions = plan_->Positions(shard);
    if (shard >= plan_->shards() || r.epoch < 1 || r.epoch > epochs_ || plan_->EpochOf(r.lease_id) != r.epoch ||
        positions.begin != r.record_begin || positions.end != r.record_end || r.record_offset < 0 ||
        r.record_offset >= positions.size())
      return DataLoss("the coordinator at " + channel_->coordinator() + " granted lease " +
                      std::to_string(r.lease_id) + " of records [" + std::to_string(r.record_begin) +
                      ", " + std::to_string(r.record_end) + ") from offset " + std::to_string(r.record_offset) +
                      ", which is not a shard of this job's plan");
    lease_ = r.lease_id;
    epoch_ = r.epoch;
    plan_->Records(epoch_, shard, &shard_records_);
    shard_pos_ = static_cast<std::size_t>(r.record_offset);  // a dead worker's lease resumes where it stopped
    holding_ = true;
    if (rows->empty()) rows_epoch = epoch_;
  }
  plan.rows = static_cast<int64_t>(rows->size());
  plan.epoch = rows_epoch;  // the epoch of this step's records (a lease asked for ahead may be the next one's)
  plan.epoch_fraction = holding_ ? static_cast<double>(shard_pos_) / std::max<std::size_t>(1, shard_records_.size()) : 1.0;
  return plan;
}

void LeaseSource::Pushed(int64_t step, double loss, int64_t rows, int64_t applied_steps, const WireBytes& wire) {
  applied_steps_ = applied_steps;
  progress_.wire = wire;
  progress_.step = step + 1;
  progress_.epoch = epoch_;
  progress_.samples += rows;
  if (rows > 0) {  // a moving average: the recent loss, smoothed
    progress_.loss = trained_steps_++ == 0 ? loss : 0.95 * progress_.loss + 0.05 * loss;
  }
  heartbeat_->Publish(progress_);
}

Result<int64_t> LeaseSource::FinalVersion() {
  // Undecided: others were still training when this worker finished. Ask
  // again (it has left the servers by now); the coordinator holds the
  // request until it knows, or answers "wait" so that it is asked again.
  while (final_version_ == 0) {
    PSF_RETURN_IF_ERROR(heartbeat_->status());
    PSF_ASSIGN_OR_RETURN(msg::LeaseReply r, Lease(last_step_, /*finished=*/true));
    if (r.status == LeaseStatus::kFinished) final_version_ = r.final_version;
  }
  return final_version_ > 0 ? final_version_ : kNoFinalEvaluation;
}

Status LeaseSource::Report(int64_t epoch, int64_t step, double metric, bool final, double train_loss,
                           double test_logloss) {
  WireHeader h;
  h.body = msg::Report{epoch, step, metric, final, train_loss, test_logloss};
  return channel_->Call(std::move(h), timeout_).status();
}

}  // namespace psforge
