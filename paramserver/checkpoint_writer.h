// CheckpointWriter: writes a server's checkpoints in the background.
//
// The serving loop snapshots its shard into the buffer Begin() hands out
// (only while no write is in progress: a checkpoint due meanwhile is
// skipped, and the coordinator commits only steps every server wrote) and
// passes it on with Commit(); the writer thread stores it in the ParamStore
// and then prunes: of the checkpoints at or below the committed step it
// keeps the newest `keep`, and every newer one. A failed write (a full
// disk, say) is logged, counted and remembered; training goes on, and the
// next checkpoint tries again.
//
// Sparse table rows are incremental (ServerCheckpoint::rows_base): a
// checkpoint holds the rows changed since its base. RestoreTo reads the
// chain back to the first checkpoint and lays the rows of each under the
// next; pruning a checkpoint that a kept one builds on first folds its rows
// into that one (rewritten, based on the pruned one's base), so that every
// kept checkpoint stays restorable.
//
// Nothing waits on a write for longer than `write_timeout`: Drain() and
// RestoreTo() then return DeadlineExceeded naming the write and its store
// (a hung disk), and the destructor leaves the write to its thread, which
// owns everything it touches, so that the process can still exit.
// Begin/Commit/Drain/RestoreTo come from one thread (the serving loop); the
// getters from any.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>

#include "common/mutex.h"
#include "paramserver/param_store.h"

namespace psforge {

class CheckpointWriter {
 public:
  CheckpointWriter(std::unique_ptr<ParamStore> store, int64_t keep, std::chrono::milliseconds write_timeout);
  ~CheckpointWriter();  // waits for the write in progress, at most write_timeout

  // The buffer to fill, or nullptr while the previous checkpoint is being written.
  ServerCheckpoint* Begin();
  // Hands the buffer Begin() returned to the writer thread.
  void Commit();
  // Waits until the write in progress (if any) has ended; DeadlineExceeded
  // after write_timeout.
  Status Drain() { return Drain(write_timeout_); }
  Status Drain(std::chrono::milliseconds limit);
  // A write is in progress.
  bool writing() const;
  // The coordinator's latest committed step: older checkpoints may go
  // (pruned after the next write).
  void SetCommitted(int64_t step);
  // The job restarts from checkpoint `id` (0: from the initial weights):
  // waits for the write in progress (as Drain()), reads `id` verified
  // (NotFound or DataLoss naming it), and deletes every newer checkpoint,
  // which belongs to the abandoned run (with id 0: every checkpoint).
  // Its sparse table rows are the whole chain's, merged (rows_base 0).
  Result<ServerCheckpoint> RestoreTo(int64_t id);

  int64_t durable() const { return state_->durable.load(); }  // latest step written (0: none)
  int64_t written() const { return state_->written.load(); }
  int64_t failures() const { return state_->failures.load(); }
  double write_ms_max() const { return state_->write_ms_max.load(); }
  const ParamStore& store() const { return *state_->store; }
  std::chrono::milliseconds write_timeout() const { return write_timeout_; }

 private:
  // What the writer thread touches: shared with it, so that a write that
  // never ends (the destructor's deadline passed) touches nothing freed.
  struct State {
    std::unique_ptr<ParamStore> store;  // the writer thread's while pending
    int64_t keep = 0;
    Mutex mu;
    CondVar cv;
    ServerCheckpoint buffer;  // the writer thread's while pending, the serving loop's otherwise
    bool pending PSF_GUARDED_BY(mu) = false;  // buffer handed over, not yet written
    bool closing PSF_GUARDED_BY(mu) = false;
    std::chrono::steady_clock::time_point started PSF_GUARDED_BY(mu){};  // of the pending write
    std::atomic<int64_t> committed{0}, durable{0}, written{0}, failures{0};
    std::atomic<double> write_ms_max{0};
  };
  static void Run(const std::shared_ptr<State>& state);
  static void Prune(State& state);
  // Before checkpoint `id` is pruned: the checkpoints (of `ids`) whose
  // table rows build on it take its rows in and its base.
  static Status FoldIntoSuccessor(State& state, int64_t id, const std::vector<int64_t>& ids);

  const std::chrono::milliseconds write_timeout_;
  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace psforge
