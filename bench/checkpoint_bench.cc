// Checkpoint cost: what a server's serving loop pays (the snapshot copy) and
// what its writer thread takes to make a checkpoint durable in RocksDB,
// against the raw sequential write bandwidth of the same disk (write +
// fsync of as many bytes) measured in the same run.
//
// Usage: checkpoint_bench [--dir DIR] [--runs 3] [--big-floats N]
// Sizes: the Fashion-MNIST MLP (397,510 weights) and a 100M-parameter model
// (400 MB of weights), both with Adam (two state values per weight).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/min_med_max.h"
#include "paramserver/param_shard.h"
#include "paramserver/param_store.h"

namespace psforge {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Seconds to write `bytes` sequentially to a new file in `dir` and fsync it.
double RawWrite(const std::string& dir, std::size_t bytes) {
  const std::string path = dir + "/raw.bin";
  std::vector<char> block(8 << 20, 'x');
  const auto start = Clock::now();
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  for (std::size_t done = 0; done < bytes;) {
    const std::size_t n = std::min(block.size(), bytes - done);
    if (write(fd, block.data(), n) != static_cast<ssize_t>(n)) break;
    done += n;
  }
  fsync(fd);
  close(fd);
  const double s = Since(start);
  std::filesystem::remove(path);
  return s;
}


}  // namespace
}  // namespace psforge

int main(int argc, char** argv) {
  using namespace psforge;
  std::string dir = "/tmp/psforge_checkpoint_bench";
  int runs = 3;
  int64_t big = 100'000'000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--dir")) dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--big-floats")) big = std::atoll(argv[i + 1]);
    else return std::fprintf(stderr, "unknown flag %s\n", argv[i]), 2;
  }
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::printf("store and raw file in %s; %d runs; min / median / max\n\n", dir.c_str(), runs);
  std::printf("| model | checkpoint bytes | snapshot copy (ms) | RocksDB write, durable (s) | raw write + fsync (s) "
              "| checkpoint vs raw bandwidth |\n|---|---|---|---|---|---|\n");
  for (int64_t floats : {int64_t{397510}, big}) {
    ModelOptions m;
    m.kind = ModelKind::kLinearRegression;
    auto spec = ModelSpec::FromConfig(m, floats - 1);  // floats - 1 weights + a bias
    OptimizerOptions o;
    o.kind = OptimizerKind::kAdam;
    ClusterOptions cl;
    cl.workers = 1;
    auto shard = ParamShard::Create(*spec, {0, floats}, o, cl);
    if (!shard.ok()) return std::fprintf(stderr, "%s\n", shard.status().ToString().c_str()), 1;
    auto store = ParamStore::OpenRocksDb(dir + "/store-" + std::to_string(floats));
    if (!store.ok()) return std::fprintf(stderr, "%s\n", store.status().ToString().c_str()), 1;
    ServerCheckpoint c;
    std::vector<double> copy_ms, write_s, raw_s, ratio;
    for (int r = 0; r < runs; ++r) {
      auto t0 = Clock::now();
      (*shard)->Snapshot(&c);  // as the serving loop does; the buffer is reused
      copy_ms.push_back(Since(t0) * 1e3);
      c.id = r + 1;
      const std::size_t bytes = (c.weights.size() + c.optimizer_state.size()) * sizeof(float);
      t0 = Clock::now();
      Status s = (*store)->Write(c);
      if (!s.ok()) return std::fprintf(stderr, "%s\n", s.ToString().c_str()), 1;
      write_s.push_back(Since(t0));
      raw_s.push_back(RawWrite(dir, bytes));
      ratio.push_back(raw_s.back() / write_s.back());
      if (r > 0) (void)(*store)->Remove(r);  // keep the disk use bounded
    }
    const double mb = (c.weights.size() + c.optimizer_state.size()) * sizeof(float) / 1e6;
    std::printf("| %lld weights (Adam) | %.1f MB | %s | %s | %s | %s |\n", static_cast<long long>(floats), mb,
                MinMedMax(copy_ms, "%.2f").c_str(), MinMedMax(write_s, "%.3f").c_str(),
                MinMedMax(raw_s, "%.3f").c_str(), MinMedMax(ratio, "%.2f").c_str());
    std::fflush(stdout);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
