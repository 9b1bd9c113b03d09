// CheckpointWriter: writes a server's checkpoints in the background.
//
// The serving loop snapshots its shard into the buffer Begin() hands out
// (only while no write is in progress: a checkpoint due meanwhile is
// skipped, and the coordinator commits only steps every server wrote) and
// passes it on with Commit(); the writer thread stores it in the ParamStore
// and then prunes: of the checkpoints at or below the committed step it
// keeps the newest `keep`, and every newer one. A failed write (a full
// disk, say) is logged, counted and remembered; training goes on, and the
// next checkpoint tries again. Begin/Commit/Drain come from one thread (the
// serving loop); the getters from any.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "paramserver/param_store.h"

namespace psforge {

class CheckpointWriter {
 public:
  CheckpointWriter(std::unique_ptr<ParamStore> store, int64_t keep);
  ~CheckpointWriter();  // finishes the write in progress

  // The buffer to fill, or nullptr while the previous checkpoint is being written.
  ServerCheckpoint* Begin();
  // Hands the buffer Begin() returned to the writer thread.
  void Commit();
  // Waits until the write in progress (if any) has ended.
  void Drain();
  // The coordinator's latest committed step: older checkpoints may go
  // (pruned after the next write).
  void SetCommitted(int64_t step);
  // The job restarts from checkpoint `id` (0: from the initial weights):
  // waits for the write in progress, reads `id` verified (NotFound or
  // DataLoss naming it), and deletes every newer checkpoint, which belongs
  // to the abandoned run (with id 0: every checkpoint).
  Result<ServerCheckpoint> RestoreTo(int64_t id);

  int64_t durable() const { return durable_.load(); }  // latest step written (0: none)
  int64_t written() const { return written_.load(); }
  int64_t failures() const { return failures_.load(); }
  double write_ms_max() const { return write_ms_max_.load(); }
  const ParamStore& store() const { return *store_; }

 private:
  void Run();
  void Prune();

  std::unique_ptr<ParamStore> store_;
  const int64_t keep_;
  std::mutex mu_;
  std::condition_variable cv_;
  ServerCheckpoint buffer_;
  bool pending_ = false;   // guarded by mu_: buffer_ handed over, not yet written
  bool closing_ = false;   // guarded by mu_
  std::atomic<int64_t> committed_{0}, durable_{0}, written_{0}, failures_{0};
  std::atomic<double> write_ms_max_{0};
  std::thread thread_;
};

}  // namespace psforge
