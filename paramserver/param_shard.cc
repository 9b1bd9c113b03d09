#include "paramserver/param_shard.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "common/vector_clones.h"

namespace psforge {
namespace {

std::string Range(int64_t b, int64_t e) {
  std::string r(1, '[');  // not "[" + ...: GCC 12 warns falsely (-Wrestrict)
  r += std::to_string(b);
  r += ", ";
  r += std::to_string(e);
  r += ')';
  return r;
}

// The index of the first NaN or infinity, or -1. The scan has no early exit
// so that it vectorises: it is on every push's path.
// sum = weight * grad (first) or sum += weight * grad.
PSF_VECTOR_CLONES void AccumulateWeighted(float* sum, const float* grad, int64_t n, float weight, bool first) {
  if (first) {
    for (int64_t i = 0; i < n; ++i) sum[i] = weight * grad[i];
  } else {
    for (int64_t i = 0; i < n; ++i) sum[i] += weight * grad[i];
  }
}

}  // namespace

ParamShard::ParamShard(KeyRange range, const ClusterOptions& cluster,
                       std::unique_ptr<Optimizer> optimizer)
    : range_(range),
      consistency_(cluster.consistency),
      staleness_(cluster.staleness),
      workers_(cluster.workers),
      optimizer_(std::move(optimizer)),
      weights_(range.size()),
      parts_in_(cluster.workers, 0),
      active_(cluster.workers, true),
      active_count_(cluster.workers),
      clock_(cluster.workers, 0) {
  if (consistency_ == Consistency::kBsp && workers_ > 1) sum_.assign(range.size(), 0.0f);
  parts_ = optimizer_->takes_parts() ? PartCount(range.size(), cluster.chunk_kb) : 1;
  part_pushes_.assign(parts_, 0);
  part_samples_.assign(parts_, 0);
  part_applied_.assign(parts_, 0);
  part_done_.assign(parts_, 0);
  part_in_.assign(static_cast<std::size_t>(workers_ * parts_), 0);
}

Result<std::unique_ptr<ParamShard>> ParamShard::Create(const ModelSpec& spec, KeyRange range,
                                                       const OptimizerOptions& optimizer,
                                                       const ClusterOptions& cluster) {
  if (range.begin < 0 || range.end > spec.num_params() || range.size() <= 0)
    return InvalidArgument("key range " + Range(range.begin, range.end) +
                           " is not a non-empty part of the model's " +
                           std::to_string(spec.num_params()) + " keys");
  PSF_ASSIGN_OR_RETURN(auto opt, Optimizer::Create(optimizer, range.size()));
  opt->Freeze(spec.FrozenIn(range));
  std::unique_ptr<ParamShard> shard(new ParamShard(range, cluster, std::move(opt)));
  spec.Initialize(range, shard->weights_);
  return shard;
}

Result<PushOutcome> ParamShard::Push(uint32_t worker, int64_t step, int64_t samples,
                                     int64_t begin, int64_t end,
                                     std::span<const std::byte> payload,
                                     std::span<const SparseSection> sparse, bool defer_tables) {
  if (tables_behind_) CatchUpTables();  // (a caller that forgot: never two steps behind)
  if (worker >= static_cast<uint64_t>(workers_))
    return InvalidArgument("push from worker " + std::to_string(worker) + " but the job has " +
                           std::to_string(workers_) + " workers");
  if (samples < 0) return InvalidArgument("push over " + std::to_string(samples) + " records");
  // A run of whole parts [first, last).
  const int64_t b = begin - range_.begin, e = end - range_.begin;
  const bool inside = b >= 0 && e > b && e <= range_.size();
  const int64_t first = inside ? PartOfKey(range_.size(), parts_, b) : 0;
  const int64_t last = inside ? PartOfKey(range_.size(), parts_, e - 1) + 1 : 0;
  const bool on_grid = inside && PartBegin(first) == b && PartBegin(last) == e;
  if (!on_grid)
    return InvalidArgument("push for keys " + Range(begin, end) + " but this server owns " +
                           Range(range_.begin, range_.end) +
                           (parts_ == 1 ? std::string("; a push covers the whole range")
                                        : "; a push covers whole parts of its " + std::to_string(parts_) +
                                              " equal parts (cluster.chunk_kb)"));
  const std::size_t expected = static_cast<std::size_t>(e - b) * sizeof(float);
  if (payload.size() != expected)
    return InvalidArgument("push payload of " + std::to_string(payload.size()) + " bytes, expected " +
                           std::to_string(expected) + " (" + std::to_string(e - b) + " float32 values)");
  if (step < 0) return InvalidArgument("push for negative step " + std::to_string(step));
  if (!active_[worker])
    return FailedPrecondition("push from worker " + std::to_string(worker) +
                              ", which has left the job");

  // Idempotence and ordering before touching any state.
  const int64_t current = consistency_ == Consistency::kBsp ? version_ : clock_[worker];
  int64_t taken = 0;  // of the run's parts, already in
  if (step == current)
    for (int64_t p = first; p < last; ++p) taken += PartIn(worker, p);
  if (step < current || (step == current && taken == last - first)) return PushOutcome::kDuplicate;
  if (taken > 0)
    return InvalidArgument("push of parts [" + std::to_string(first) + ", " + std::to_string(last) + ") of step " +
                           std::to_string(step) + " from worker " + std::to_string(worker) +
                           " overlaps parts already taken");
  if (step > current)
    return InvalidArgument("push for step " + std::to_string(step) + " from worker " + std::to_string(worker) +
                           (consistency_ == Consistency::kBsp
                                ? " but this server is at step " + std::to_string(version_) + " (bsp: one step at a time)"
                                : " whose next step is " + std::to_string(clock_[worker])));
  // This worker's step is all in with this push.
  const bool step_done = parts_in_[worker] + (last - first) == parts_;
  if (!sparse.empty() && !step_done)
    return InvalidArgument("push of keys " + Range(begin, end) +
                           " carries sparse rows; they travel with the push that completes the worker's step");

  const float* grad = reinterpret_cast<const float*>(payload.data());
  if (reinterpret_cast<std::uintptr_t>(payload.data()) % alignof(float) != 0) {
    incoming_.resize(range_.size());  // allocated once, the first time it is needed
    std::memcpy(incoming_.data(), payload.data(), payload.size());
    grad = incoming_.data();
  }
  if (int64_t bad = FirstNonFinite(grad, e - b); bad >= 0)
    return InvalidArgument("push holds a non-finite gradient (" + std::to_string(grad[bad]) +
                           ") at key " + std::to_string(begin + bad) + "; nothing applied");

  if (!sparse.empty()) {
    if (!tables_)
      return InvalidArgument("push names rows of sparse table " + std::to_string(sparse[0].table) +
                             "; this job's model has no sparse tables");
    PSF_RETURN_IF_ERROR(tables_->Check(sparse));
  }

  auto apply_rows_now = [&] {
    if (samples <= 0 || sparse.empty()) return;
    if (defer_tables) {
      tables_behind_ = true;
      deferred_rows_ = sparse;
    } else {
      tables_->ApplyNow(sparse);
    }
  };
  if (consistency_ != Consistency::kBsp) {
    if (samples > 0) optimizer_->ApplyRange(weights_, grad, b, e);
    if (!step_done) {
      TakeParts(worker, first, last);
      return PushOutcome::kPart;
    }
    if (samples > 0) optimizer_->CountStep();
    apply_rows_now();
    std::fill_n(part_in_.begin() + worker * parts_, parts_, 0);
    parts_in_[worker] = 0;
    ++clock_[worker];
    UpdateSspVersion();
    return PushOutcome::kApplied;
  }
  // BSP: per part, the record-weighted sum (the first push of a part
  // overwrites the last step's, so the sums need no clearing); a part
  // only one active worker pushes is applied from the payload.
  for (int64_t p = first; p < last; ++p) {
    const int64_t pb = PartBegin(p), pe = PartBegin(p + 1);
    const float* g = grad + (pb - b);
    if (active_count_ == 1 && part_pushes_[p] == 0) {
      if (samples > 0) {
        optimizer_->ApplyRange(weights_, g, pb, pe);
        step_updates_ = true;
      }
      part_applied_[p] = 1;
    } else {
      AccumulateWeighted(sum_.data() + pb, g, pe - pb, static_cast<float>(samples), part_pushes_[p] == 0);
    }
    ++part_pushes_[p];
    part_samples_[p] += samples;
  }
  TakeParts(worker, first, last);
  ++pushes_taken_;
  // The only push of the step, applied from its payload: its rows too.
  bool rows_applied = false;
  if (step_done) {
    step_samples_ += samples;
    rows_applied = active_count_ == 1 && std::all_of(part_applied_.begin(), part_applied_.end(), [](char a) { return a; });
    if (rows_applied) apply_rows_now();
    else if (samples > 0 && !sparse.empty()) tables_->Accumulate(sparse, static_cast<float>(samples));
  }
  const int64_t version_before = version_;
  ApplyCompleteParts(first, last, defer_tables, rows_applied);
  if (version_ != version_before) return PushOutcome::kApplied;
  return step_done ? PushOutcome::kAccumulated : PushOutcome::kPart;
}

void ParamShard::CatchUpTables() {
  if (!tables_behind_) return;
  tables_behind_ = false;
  if (!deferred_rows_.empty()) tables_->ApplyNow(deferred_rows_);
  else tables_->ApplyAccumulated(deferred_scale_);
  deferred_rows_ = {};
}

bool ParamShard::PartComplete(int64_t part) const {
  if (part_pushes_[part] == 0) return false;
  for (int64_t w = 0; w < workers_; ++w)
    if (active_[w] && !PartIn(w, part)) return false;
  return true;
}

void ParamShard::TakeParts(uint32_t worker, int64_t first, int64_t last) {
  std::fill(part_in_.begin() + worker * parts_ + first, part_in_.begin() + worker * parts_ + last, 1);
  parts_in_[worker] += last - first;
}

void ParamShard::ApplyCompleteParts(int64_t first, int64_t last, bool defer_tables, bool rows_applied) {
  for (int64_t p = first; p < last; ++p) {
    if (part_done_[p] || !PartComplete(p)) continue;
    part_done_[p] = 1;
    ++parts_done_;
    if (part_applied_[p] || part_samples_[p] <= 0) continue;
    // The mean over the part's records: the optimizer scales the sum as it reads it.
    const int64_t pb = PartBegin(p);
    optimizer_->ApplyRange(weights_, sum_.data() + pb, pb, PartBegin(p + 1),
                           1.0f / static_cast<float>(part_samples_[p]));
    step_updates_ = true;
  }
  if (parts_done_ == parts_) CompleteStep(defer_tables, rows_applied);
}

void ParamShard::CompleteStep(bool defer_tables, bool rows_applied) {
  if (step_updates_) optimizer_->CountStep();
  // The rows' sums are cleared for the next step either way.
  const float scale = step_samples_ > 0 ? 1.0f / static_cast<float>(step_samples_) : 0.0f;
  if (rows_applied) {
    // (the only push's rows: applied, or deferred, by Push)
  } else if (tables_ && defer_tables) {
    CatchUpTables();
    tables_behind_ = true;
    deferred_rows_ = {};
    deferred_scale_ = scale;
  } else if (tables_) {
    CatchUpTables();
    tables_->ApplyAccumulated(scale);
  }
  ClearStep();
  ++version_;
}

void ParamShard::ClearStep() {
  std::fill(parts_in_.begin(), parts_in_.end(), 0);
  std::fill(part_in_.begin(), part_in_.end(), 0);
  std::fill(part_done_.begin(), part_done_.end(), 0);
  std::fill(part_pushes_.begin(), part_pushes_.end(), 0);
  std::fill(part_samples_.begin(), part_samples_.end(), 0);
  std::fill(part_applied_.begin(), part_applied_.end(), 0);
  parts_done_ = 0;
  pushes_taken_ = 0;
  step_samples_ = 0;
  step_updates_ = false;
}

void ParamShard::UpdateSspVersion() {
  int64_t v = -1;
  for (int64_t w = 0; w < workers_; ++w)
    if (active_[w]) v = v < 0 ? clock_[w] : std::min(v, clock_[w]);
  if (v < 0) v = *std::max_element(clock_.begin(), clock_.end());  // nobody left to wait for
  version_ = std::max(version_, v);
}

int64_t ParamShard::PartVersion(int64_t part) const {
  if (consistency_ == Consistency::kBsp) return version_ + part_done_[part];
  int64_t v = -1;
  for (int64_t w = 0; w < workers_; ++w) {
    if (!active_[w]) continue;
    const int64_t here = clock_[w] + PartIn(w, part);
    v = v < 0 ? here : std::min(v, here);
  }
  return std::max(version_, v);
}

int64_t ParamShard::VersionOf(int64_t begin, int64_t end) const {
  if (end <= begin) return version_;
  const int64_t first = PartOfKey(range_.size(), parts_, std::clamp<int64_t>(begin - range_.begin, 0, range_.size() - 1));
  const int64_t last = PartOfKey(range_.size(), parts_, std::clamp<int64_t>(end - 1 - range_.begin, 0, range_.size() - 1));
  int64_t v = PartVersion(first);
  for (int64_t p = first + 1; p <= last; ++p) v = std::min(v, PartVersion(p));
  return v;
}

bool ParamShard::RemoveWorker(uint32_t worker) {
  CatchUpTables();
  if (worker >= active_.size() || !active_[worker]) return false;
  active_[worker] = false;
  --active_count_;
  const int64_t before = version_, parts_before = parts_done_;
  if (consistency_ != Consistency::kBsp) UpdateSspVersion();
  else ApplyCompleteParts(0, parts_);
  return version_ != before || parts_done_ != parts_before;
}

int64_t ParamShard::AdmitWorker(uint32_t worker) {
  if (!active_[worker]) {
    active_[worker] = true;
    ++active_count_;
    // BSP: it pushes the current step unless some of its parts are
    // applied already; then it counts as having pushed it (nothing).
    const bool counted = consistency_ == Consistency::kBsp && parts_done_ > 0;
    std::fill_n(part_in_.begin() + worker * parts_, parts_, counted ? 1 : 0);
    parts_in_[worker] = counted ? parts_ : 0;
    clock_[worker] = std::max(clock_[worker], version_);
  }
  if (consistency_ != Consistency::kBsp) return clock_[worker];
  return version_ + (parts_in_[worker] == parts_ ? 1 : 0);
}

Status ParamShard::ValidatePull(uint32_t worker, int64_t wanted, int64_t begin, int64_t end, bool with_rows) const {
  if (worker >= static_cast<uint64_t>(workers_))
    return InvalidArgument("pull from worker " + std::to_string(worker) + " but the job has " +
                           std::to_string(workers_) + " workers");
  const bool rows_only = with_rows && begin == end;
  if (!rows_only && (begin < range_.begin || end > range_.end || begin >= end))
    return InvalidArgument("pull for keys " + Range(begin, end) + " outside this server's " +
                           Range(range_.begin, range_.end));
  if (wanted < 0) return InvalidArgument("pull for negative version " + std::to_string(wanted));
  // BSP: the next version. SSP/ASP: the weights for the step after the one
  // the worker is computing (a worker prefetches them while it computes).
  // A worker that has pushed part of its step (the rest on its way) may
  // ask a step further.
  int64_t reachable = consistency_ == Consistency::kBsp ? version_ + 1
                                                        : clock_[worker] + 1 + (parts_in_[worker] > 0 ? 1 : 0);
  // A worker that left pushes no more: it may ask for whatever the others reached.
  if (!active_[worker]) reachable = std::max(reachable, version_);
  if (wanted > reachable)
    return InvalidArgument("pull for version " + std::to_string(wanted) + " from worker " +
                           std::to_string(worker) + ", which cannot be reached before it pushes; at most " +
                           std::to_string(reachable));
  return Status::Ok();
}

bool ParamShard::Ready(int64_t wanted, int64_t begin, int64_t end, bool with_rows) const {
  if (with_rows && tables_behind_) return false;  // until CatchUpTables
  // Rows are updated with the step's last part: a pull with rows waits for the whole step.
  const int64_t version = with_rows ? version_ : VersionOf(begin, end);
  switch (consistency_) {
    case Consistency::kBsp: return version >= wanted;
    case Consistency::kSsp: return version >= wanted - staleness_;
    case Consistency::kAsp: return true;
  }
  return false;
}

std::span<const float> ParamShard::Weights(int64_t begin, int64_t end) const {
  if (end <= begin) return {};  // a pull of sparse rows only
  return std::span<const float>(weights_).subspan(begin - range_.begin, end - begin);
}

std::vector<int64_t> ParamShard::WorkerSteps() const {
  if (consistency_ != Consistency::kBsp) return clock_;
  std::vector<int64_t> out(workers_);
  for (int64_t w = 0; w < workers_; ++w) out[w] = version_ + (parts_in_[w] == parts_ ? 1 : 0);
  return out;
}

std::vector<uint32_t> ParamShard::Lagging() const {
  std::vector<uint32_t> out;
  for (int64_t w = 0; w < workers_; ++w) {
    if (!active_[w]) continue;
    bool lagging = consistency_ == Consistency::kBsp ? parts_in_[w] < parts_ : clock_[w] == version_;
    if (lagging) out.push_back(static_cast<uint32_t>(w));
  }
  return out;
}

void ParamShard::Snapshot(ServerCheckpoint* out, int64_t durable) {
  CatchUpTables();
  if (tables_) tables_->Snapshot(durable, out);
  out->version = version_;
  out->range = range_;
  out->optimizer_steps = optimizer_->steps();
  out->weights.assign(weights_.begin(), weights_.end());
  auto state = optimizer_->state();
  out->optimizer_state.assign(state.begin(), state.end());
}

Status ParamShard::Restore(const ServerCheckpoint& c) {
  CatchUpTables();
  // Rolling the dense range back under tables that stay at a later step
  // would mix two steps: the checkpoint must hold the tables' rows.
  if (tables_ && c.rows_base < 0)
    return FailedPrecondition("checkpoint " + std::to_string(c.id) + " holds no sparse table rows (written by a "
                              "model without tables?); this model's tables cannot go back to its step");
  if (!tables_ && c.rows_base >= 0)
    return FailedPrecondition("checkpoint " + std::to_string(c.id) + " holds sparse table rows; this model has no tables");
  auto state = optimizer_->state();
  if (c.range.begin != range_.begin || c.range.end != range_.end)
    return InvalidArgument("checkpoint " + std::to_string(c.id) + " holds keys " + Range(c.range.begin, c.range.end) +
                           ", this server owns " + Range(range_.begin, range_.end));
  if (c.weights.size() != weights_.size() || c.optimizer_state.size() != state.size())
    return InvalidArgument("checkpoint " + std::to_string(c.id) + " holds " + std::to_string(c.weights.size()) +
                           " weights and " + std::to_string(c.optimizer_state.size()) +
                           " optimizer values; this server's optimizer needs " + std::to_string(state.size()) +
                           " (was the optimizer changed?)");
  if (tables_) PSF_RETURN_IF_ERROR(tables_->Restore(c.id, c.tables).WithContext("checkpoint " + std::to_string(c.id)));
  std::copy(c.weights.begin(), c.weights.end(), weights_.begin());
  std::copy(c.optimizer_state.begin(), c.optimizer_state.end(), state.begin());
  optimizer_->set_steps(c.optimizer_steps);
  version_ = c.version;
  ClearStep();
  std::fill(active_.begin(), active_.end(), true);
  active_count_ = workers_;
  std::fill(clock_.begin(), clock_.end(), c.version);
  return Status::Ok();
}

}  // namespace psforge
