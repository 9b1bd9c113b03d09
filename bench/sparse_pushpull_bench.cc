// Sparse push/pull throughput: the rows of a batch's embedding lookups
// through psforge's parameter servers, and where a step's time goes.
//
//   sparse_pushpull_bench [--seconds S] [--runs N]
//
// One worker (PsClient) and 1 or 2 ParamServers (BSP, each in its own
// thread) over tcp loopback, payloads in ZeroMQ frames (as between hosts).
// A table of 2^24 rows, dimension 16 or 64, row-wise AdaGrad. A batch is
// 512 records x 26 fields of Zipf(1.05)-distributed values over 10^6 per
// field, hashed into the table (about 4,300 distinct rows: the batch-sized
// key set of configs/ctr_synthetic.yaml); each step pulls the batch's
// distinct rows (PullRows), pushes one gradient per row with the (tiny)
// dense gradient, and pulls the next version: rows/s counts each distinct
// row once a step (pulled and pushed). A new batch of keys every step, from
// a pool of 64 drawn up front. Then, on this thread, the step's parts on
// their own: hashing the batch's keys to rows and making them unique, coding
// the rows (delta + varint, encode and decode), and the optimizer's update
// of the rows, each as a fraction of the measured step.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/min_med_max.h"
#include "common/criteo.h"
#include "common/row_ids.h"
#include "paramserver/embedding_table.h"
#include "paramserver/server.h"
#include "worker/ps_client.h"

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

constexpr int kBatch = 512, kFields = 26, kPool = 64;
constexpr int64_t kRows = int64_t{1} << 24;

// kPool batches of feature keys, Zipf(1.05) over 10^6 values per field.
std::vector<std::vector<uint64_t>> KeyBatches() {
  const int values = 1000000;
  std::vector<double> cdf(values);
  double sum = 0;
  for (int k = 0; k < values; ++k) cdf[k] = sum += 1.0 / std::pow(k + 1.0, 1.05);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, sum);
  std::vector<std::vector<uint64_t>> out(kPool);
  for (auto& keys : out)
    for (int i = 0; i < kBatch * kFields; ++i) {
      const auto rank = static_cast<uint64_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin());
      keys.push_back(psforge::FeatureKey(i % kFields, rank * 2654435761u));
    }
  return out;
}

std::vector<uint64_t> RowsOf(const std::vector<uint64_t>& keys, uint64_t seed) {
  std::vector<uint64_t> rows;
  rows.reserve(keys.size());
  for (uint64_t k : keys) rows.push_back(psforge::RowOfFeature(k, seed, kRows));
  psforge::SortUnique(&rows);
  return rows;
}

psforge::TableOptions Table(int64_t dim) {
  psforge::TableOptions t;
  t.name = "features";
  t.rows = kRows;
  t.dim = dim;
  t.seed = 5;
  return t;
}

struct Result {
  double rows_per_s = 0, step_us = 0, rows_per_step = 0;
};

Result Run(int servers, int64_t dim, double seconds, const std::vector<std::vector<uint64_t>>& keys) {
  psforge::JobConfig config;
  config.cluster.shared_memory = false;
  config.model.kind = psforge::ModelKind::kLinearRegression;
  config.model.tables = {Table(dim)};
  config.optimizer.kind = psforge::OptimizerKind::kSgd;
  config.cluster.servers = servers;
  config.cluster.workers = 1;
  auto spec = std::move(psforge::ModelSpec::FromConfig(config.model, 1)).value();
  auto transport = psforge::Transport::CreateZmq();
  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<psforge::ParamServer>> ps;
  std::vector<std::string> endpoints;
  for (int i = 0; i < servers; ++i) {
    ps.push_back(std::move(psforge::ParamServer::Create(config, spec, i, transport.get(), "tcp://127.0.0.1:0")).value());
    endpoints.push_back(ps.back()->endpoint());
  }
  std::vector<std::thread> threads;
  for (auto& s : ps) threads.emplace_back([&, p = s.get()] { (void)p->Serve(stop); });
  auto client = std::move(psforge::PsClient::Connect(transport.get(), spec, config.cluster, 0, endpoints)).value();
  std::vector<std::vector<uint64_t>> rows;
  for (const auto& k : keys) rows.push_back(RowsOf(k, spec.tables()[0].seed));
  std::vector<float> dense(spec.num_params()), dense_grad(spec.num_params(), 0.01f), values, grads;
  int64_t step = 0, moved = 0;
  (void)client->Pull(0, dense);
  auto one_step = [&] {
    const std::vector<uint64_t>& r = rows[step % kPool];
    values.resize(r.size() * dim);
    grads.assign(r.size() * dim, 0.001f);
    const psforge::SparseRows pull[] = {{0, dim, r, values}};
    const psforge::SparseRows push[] = {{0, dim, r, grads}};
    bool ok = client->PullRows(step, pull).ok() && client->Push(step, dense_grad, kBatch, psforge::DataMark{}, push).ok() &&
              client->Pull(step + 1, dense).ok();
    moved += static_cast<int64_t>(r.size());
    ++step;
    return ok;
  };
  for (int i = 0; i < kPool; ++i) one_step();  // every row of the pool created: steady state
  const int64_t first = step;
  moved = 0;
  auto start = Clock::now();
  while (Since(start) < seconds || step - first < 10)
    if (!one_step()) {
      std::fprintf(stderr, "sparse push/pull failed\n");
      break;
    }
  const double elapsed = Since(start);
  const int64_t steps = step - first;
  client.reset();
  stop = true;
  for (auto& t : threads) t.join();
  return {static_cast<double>(moved) / elapsed, 1e6 * elapsed / static_cast<double>(steps),
          static_cast<double>(moved) / static_cast<double>(steps)};
}

// The step's parts on their own, microseconds per step (median of the pool's batches).
struct Parts {
  double hash_us = 0, code_us = 0, optimizer_us = 0;
};
Parts MeasureParts(int64_t dim, const std::vector<std::vector<uint64_t>>& keys) {
  auto table = std::move(psforge::EmbeddingTable::Create(Table(dim))).value();
  std::vector<double> hash, code, opt;
  std::vector<std::byte> bytes;
  std::vector<uint64_t> back;
  std::vector<float> w, g;
  for (int pass = 0; pass < 2; ++pass)  // the first pass creates the rows
    for (const auto& k : keys) {
      auto t0 = Clock::now();
      std::vector<uint64_t> rows = RowsOf(k, 5);
      const double h = Since(t0);
      t0 = Clock::now();
      bytes.clear();
      psforge::EncodeRowIds(rows, &bytes);
      (void)psforge::DecodeRowIds(bytes, static_cast<int64_t>(rows.size()), kRows, &back);
      const double c = Since(t0) * 2;  // both directions: the pull's ids and the push's
      g.assign(rows.size() * dim, 0.001f);
      w.resize(rows.size() * dim);
      t0 = Clock::now();
      (void)table->Apply(rows, g);
      const double o = Since(t0);
      (void)table->Read(rows, w);
      if (pass == 1) {
        hash.push_back(h * 1e6);
        code.push_back(c * 1e6);
        opt.push_back(o * 1e6);
      }
    }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  return {median(hash), median(code), median(opt)};
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 2;
  int runs = 3;
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[i + 1]);
  }
  const auto keys = KeyBatches();
  std::printf("%d interleaved runs of %.1f s each; batches of %d records x %d fields, payloads in ZeroMQ frames\n\n",
              runs, seconds, kBatch, kFields);
  std::printf("| dim | servers | distinct rows a step | rows/s min / median / max | step us (median) "
              "| hashing + unique | row id coding | optimizer |\n|---|---|---|---|---|---|---|---|\n");
  for (int64_t dim : {16, 64}) {
    const Parts parts = MeasureParts(dim, keys);
    for (int servers : {1, 2}) {
      std::vector<double> rate, step_us;
      double per_step = 0;
      for (int r = 0; r < runs; ++r) {
        Result res = Run(servers, dim, seconds, keys);
        rate.push_back(res.rows_per_s);
        step_us.push_back(res.step_us);
        per_step = res.rows_per_step;
      }
      std::sort(step_us.begin(), step_us.end());
      const double step = step_us[step_us.size() / 2];
      std::printf("| %lld | %d | %.0f | %s | %.0f | %.1f%% | %.1f%% | %.1f%% |\n", static_cast<long long>(dim), servers,
                  per_step, psforge::MinMedMax(rate, "%.0f").c_str(), step, 100 * parts.hash_us / step,
                  100 * parts.code_us / step, 100 * parts.optimizer_us / step);
      std::fflush(stdout);
    }
  }
  return 0;
}
