#include "paramserver/checkpoint_writer.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>

namespace psforge {

namespace {
std::string SecondsText(std::chrono::milliseconds t) {
  char s[32];
  std::snprintf(s, sizeof s, "%.3g s", std::chrono::duration<double>(t).count());
  return s;
}
}  // namespace

CheckpointWriter::CheckpointWriter(std::unique_ptr<ParamStore> store, int64_t keep,
                                   std::chrono::milliseconds write_timeout)
    : write_timeout_(write_timeout), state_(std::make_shared<State>()) {
  state_->store = std::move(store);
  state_->keep = keep;
  thread_ = std::thread([state = state_] { Run(state); });
}

CheckpointWriter::~CheckpointWriter() {
  Status drained = Drain();
  {
    MutexLock lock(state_->mu);
    state_->closing = true;
  }
  state_->cv.NotifyAll();
  if (drained.ok()) {
    thread_.join();
    return;
  }
  // The thread holds the state: it ends whenever the write does.
  std::fprintf(stderr, "%s: %s; leaving it\n", program_invocation_short_name, drained.message().c_str());
  thread_.detach();
}

ServerCheckpoint* CheckpointWriter::Begin() {
  MutexLock lock(state_->mu);
  return state_->pending ? nullptr : &state_->buffer;
}

void CheckpointWriter::Commit() {
  {
    MutexLock lock(state_->mu);
    state_->pending = true;
    state_->started = std::chrono::steady_clock::now();
  }
  state_->cv.NotifyAll();
}

Status CheckpointWriter::Drain(std::chrono::milliseconds limit) {
  State& s = *state_;
  MutexLock lock(s.mu);
  const auto deadline = CondVar::Clock::now() + limit;
  while (s.pending)
    if (!s.cv.WaitUntil(s.mu, deadline)) break;
  if (!s.pending) return Status::Ok();
  // buffer.id is not written while pending.
  return DeadlineExceeded("the write of the checkpoint at step " + std::to_string(s.buffer.id) + " to " +
                          s.store->where() + " has not ended after " +
                          SecondsText(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - s.started)) +
                          " (checkpoint.write_timeout_s; a hung disk?)");
}

bool CheckpointWriter::writing() const {
  MutexLock lock(state_->mu);
  return state_->pending;
}

void CheckpointWriter::SetCommitted(int64_t step) {
  if (step > state_->committed.load()) state_->committed = step;  // pruned after the next write
}

Result<ServerCheckpoint> CheckpointWriter::RestoreTo(int64_t id) {
  PSF_RETURN_IF_ERROR(Drain());  // the store is this thread's until the next Commit()
  ServerCheckpoint c;
  if (id > 0) {
    PSF_ASSIGN_OR_RETURN(c, state_->store->Read(id));
    // The tables' rows: this checkpoint's over those of its bases.
    while (c.rows_base > 0) {
      auto base = state_->store->Read(c.rows_base);
      if (!base.ok())
        return base.status().WithContext("checkpoint " + std::to_string(id) + " builds on checkpoint " +
                                         std::to_string(c.rows_base));
      PSF_RETURN_IF_ERROR(MergeTableRows(base->tables, &c.tables).WithContext(state_->store->where()));
      c.rows_base = base->rows_base;
    }
  }
  PSF_RETURN_IF_ERROR(state_->store->RemoveNewerThan(id));
  state_->durable = id;
  state_->committed = id;
  return c;
}

void CheckpointWriter::Run(const std::shared_ptr<State>& state) {
  State& s = *state;
  while (true) {
    {
      MutexLock lock(s.mu);
      // Idle until there is work: the deadline only bounds each sleep.
      while (!s.pending && !s.closing) s.cv.WaitFor(s.mu, std::chrono::seconds(1));
      if (!s.pending) return;  // closing, nothing left to write
    }
    // The buffer and the store belong to this thread until pending is
    // cleared; the serving loop is not held up meanwhile (Begin() sees pending).
    const auto start = std::chrono::steady_clock::now();
    Status written = s.store->Write(s.buffer);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (written.ok()) {
      s.durable = s.buffer.id;
      ++s.written;
      if (ms > s.write_ms_max.load()) s.write_ms_max = ms;
      Prune(s);
    } else {
      ++s.failures;
      std::fprintf(stderr, "%s: checkpoint at step %lld not written, training goes on: %s\n",
                   program_invocation_short_name, static_cast<long long>(s.buffer.id), written.ToString().c_str());
    }
    {
      MutexLock lock(s.mu);
      s.pending = false;
    }
    s.cv.NotifyAll();
  }
}

Status CheckpointWriter::FoldIntoSuccessor(State& s, int64_t id, const std::vector<int64_t>& ids) {
  PSF_ASSIGN_OR_RETURN(const int64_t own, s.store->RowsBase(id));
  if (own < 0) return Status::Ok();  // no table rows: nothing builds on it
  for (int64_t later : ids) {
    if (later <= id) continue;
    PSF_ASSIGN_OR_RETURN(const int64_t base, s.store->RowsBase(later));
    if (base != id) continue;
    PSF_ASSIGN_OR_RETURN(ServerCheckpoint next, s.store->Read(later));
    PSF_ASSIGN_OR_RETURN(ServerCheckpoint folded, s.store->Read(id));
    PSF_RETURN_IF_ERROR(MergeTableRows(folded.tables, &next.tables));
    next.rows_base = folded.rows_base;
    // Atomic: the rewritten checkpoint replaces the old one whole.
    PSF_RETURN_IF_ERROR(s.store->Write(next));
  }
  return Status::Ok();
}

void CheckpointWriter::Prune(State& s) {
  auto ids = s.store->List();
  if (!ids.ok()) return;
  const int64_t committed = s.committed.load();
  std::vector<int64_t> old;
  for (int64_t id : *ids)
    if (id <= committed) old.push_back(id);
  // Keep the newest `keep` committed ones (ids ascend).
  for (std::size_t i = 0; i + static_cast<std::size_t>(s.keep) < old.size(); ++i) {
    // A later checkpoint whose table rows build on this one takes them in first.
    if (Status folded = FoldIntoSuccessor(s, old[i], *ids); !folded.ok()) {
      std::fprintf(stderr, "%s: checkpoint %lld kept: %s\n", program_invocation_short_name,
                   static_cast<long long>(old[i]), folded.ToString().c_str());
      return;
    }
    Status removed = s.store->Remove(old[i]);
    if (!removed.ok())
      std::fprintf(stderr, "%s: cannot prune checkpoint %lld: %s\n", program_invocation_short_name,
                   static_cast<long long>(old[i]), removed.ToString().c_str());
  }
}

}  // namespace psforge
