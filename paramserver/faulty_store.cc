#include "paramserver/faulty_store.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <thread>

namespace psforge {
namespace {

class StallingStore final : public ParamStore {
 public:
  StallingStore(std::unique_ptr<ParamStore> inner, std::chrono::milliseconds stall)
      : inner_(std::move(inner)), stall_(stall) {}

  Status Write(const ServerCheckpoint& c) override {
    std::fprintf(stderr, "%s: store %s: checkpoint %lld stalls %lld ms before it is written (write_stall_ms)\n",
                 program_invocation_short_name, inner_->where().c_str(), static_cast<long long>(c.id),
                 static_cast<long long>(stall_.count()));
    std::this_thread::sleep_for(stall_);
    return inner_->Write(c);
  }
  Result<ServerCheckpoint> Read(int64_t id) const override { return inner_->Read(id); }
  Result<std::vector<int64_t>> List() const override { return inner_->List(); }
  Result<int64_t> RowsBase(int64_t id) const override { return inner_->RowsBase(id); }
  Status Remove(int64_t id) override { return inner_->Remove(id); }
  Status RemoveNewerThan(int64_t id) override { return inner_->RemoveNewerThan(id); }
  const std::string& where() const override { return inner_->where(); }

 private:
  std::unique_ptr<ParamStore> inner_;
  const std::chrono::milliseconds stall_;
};

}  // namespace

std::unique_ptr<ParamStore> WithFaults(std::unique_ptr<ParamStore> inner, const FaultOptions& faults) {
  const auto stall = std::chrono::milliseconds(static_cast<int64_t>(faults.write_stall_ms));
  if (stall.count() <= 0) return inner;
  return std::make_unique<StallingStore>(std::move(inner), stall);
}

}  // namespace psforge
