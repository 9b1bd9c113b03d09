#include "paramserver/checkpoint_writer.h"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>

namespace psforge {

CheckpointWriter::CheckpointWriter(std::unique_ptr<ParamStore> store, int64_t keep)
    : store_(std::move(store)), keep_(keep), thread_([this] { Run(); }) {}

CheckpointWriter::~CheckpointWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

ServerCheckpoint* CheckpointWriter::Begin() {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_ ? nullptr : &buffer_;
}

void CheckpointWriter::Commit() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = true;
  }
  cv_.notify_all();
}

void CheckpointWriter::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !pending_; });
}

void CheckpointWriter::SetCommitted(int64_t step) {
  if (step > committed_.load()) committed_ = step;  // pruned after the next write
}

Result<ServerCheckpoint> CheckpointWriter::RestoreTo(int64_t id) {
  Drain();  // the store is this thread's until the next Commit()
  ServerCheckpoint c;
  if (id > 0) {
    PSF_ASSIGN_OR_RETURN(c, store_->Read(id));
  }
  PSF_RETURN_IF_ERROR(store_->RemoveNewerThan(id));
  durable_ = id;
  committed_ = id;
  return c;
}

void CheckpointWriter::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return pending_ || closing_; });
    if (!pending_) return;  // closing, nothing left to write
    // buffer_ and the store belong to this thread until pending_ is cleared;
    // the serving loop is not held up meanwhile (Begin() sees pending_).
    lock.unlock();
    const auto start = std::chrono::steady_clock::now();
    Status s = store_->Write(buffer_);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (s.ok()) {
      durable_ = buffer_.id;
      ++written_;
      if (ms > write_ms_max_.load()) write_ms_max_ = ms;
      Prune();
    } else {
      ++failures_;
      std::fprintf(stderr, "%s: checkpoint at step %lld not written, training goes on: %s\n",
                   program_invocation_short_name, static_cast<long long>(buffer_.id), s.ToString().c_str());
    }
    lock.lock();
    pending_ = false;
    cv_.notify_all();
  }
}

void CheckpointWriter::Prune() {
  auto ids = store_->List();
  if (!ids.ok()) return;
  const int64_t committed = committed_.load();
  std::vector<int64_t> old;
  for (int64_t id : *ids)
    if (id <= committed) old.push_back(id);
  // Keep the newest `keep_` committed ones (ids ascend).
  for (std::size_t i = 0; i + static_cast<std::size_t>(keep_) < old.size(); ++i) {
    Status s = store_->Remove(old[i]);
    if (!s.ok())
      std::fprintf(stderr, "%s: cannot prune checkpoint %lld: %s\n", program_invocation_short_name,
                   static_cast<long long>(old[i]), s.ToString().c_str());
  }
}

}  // namespace psforge
