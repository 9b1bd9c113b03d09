// The cost of a sparse table's checkpoint: a full one (every row of the
// table) against an incremental one (the rows changed since the last), as a
// server takes them: TableShard::Snapshot (the copy, on the serving loop)
// and ParamStore::Write (RocksDB: one table file written, synced and
// ingested, in the background writer).
//
//   table_checkpoint_bench [--rows N] [--steps K] [--runs R]
//
// One server's table of dim 16 with row-wise AdaGrad (configs/ctr_synthetic
// .yaml's). Each run fills a fresh table with N rows (all of them changed:
// its first checkpoint is a full one), writes that checkpoint, then trains K
// BSP steps that touch 4,300 rows each (the distinct rows of a 512-record
// batch of ctr_synthetic), Zipf-like over the table's rows, and writes the
// next checkpoint, which holds only the rows those steps changed.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "bench/min_med_max.h"
#include "common/row_ids.h"
#include "paramserver/param_store.h"
#include "paramserver/table_shard.h"

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

psforge::TableOptions Table() {
  psforge::TableOptions o;
  o.name = "features";
  o.rows = int64_t{1} << 40;
  o.dim = 16;
  return o;
}

void Step(psforge::TableShard* shard, const std::vector<uint64_t>& rows, std::vector<float>* g) {
  g->assign(rows.size() * 16, 0.01f);
  psforge::SparseSection s{0, rows, {reinterpret_cast<const std::byte*>(g->data()), g->size() * sizeof(float)}};
  shard->Accumulate({&s, 1}, 1.0f);
  shard->ApplyAccumulated(1.0f);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 4000000, steps = 100, runs = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--rows") rows = std::stoll(argv[i + 1]);
    else if (flag == "--steps") steps = std::stoll(argv[i + 1]);
    else if (flag == "--runs") runs = std::stoll(argv[i + 1]);
    else { std::fprintf(stderr, "unknown flag %s\n", argv[i]); return 2; }
  }
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("psforge-ckpt-bench-" + std::to_string(::getpid()))).string();
  std::vector<double> full_copy, full_write, inc_copy, inc_write, full_rows, inc_rows;
  std::mt19937_64 rng(1);
  std::vector<float> g;
  for (int64_t run = 0; run < runs; ++run) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    auto store = std::move(psforge::ParamStore::OpenRocksDb(dir)).value();
    auto shard = std::move(psforge::TableShard::Create({Table()}, 0, 1)).value();
    std::vector<uint64_t> batch;
    for (int64_t first = 0; first < rows; first += 65536) {  // row r: id r * a large odd number, sorted
      batch.clear();
      for (int64_t r = first; r < std::min(rows, first + 65536); ++r) batch.push_back(static_cast<uint64_t>(r));
      Step(shard.get(), batch, &g);
    }
    auto checkpoint = [&](int64_t id, int64_t durable, std::vector<double>* copy, std::vector<double>* write,
                          std::vector<double>* count) {
      psforge::ServerCheckpoint c;
      c.id = id;
      c.version = id;
      auto t = Clock::now();
      shard->Snapshot(durable, &c);
      copy->push_back(Since(t) * 1e3);
      t = Clock::now();
      if (psforge::Status s = store->Write(c); !s.ok()) {
        std::fprintf(stderr, "write: %s\n", s.message().c_str());
        std::exit(1);
      }
      write->push_back(Since(t) * 1e3);
      count->push_back(static_cast<double>(c.tables[0].rows.size()));
    };
    checkpoint(1, 0, &full_copy, &full_write, &full_rows);
    for (int64_t k = 0; k < steps; ++k) {
      batch.clear();
      for (int i = 0; i < 4300; ++i) {
        // Zipf-like: a row's chance falls with its rank (u^3 puts most draws on the first rows).
        const double u = std::uniform_real_distribution<double>(0, 1)(rng);
        batch.push_back(static_cast<uint64_t>(u * u * u * static_cast<double>(rows)));
      }
      std::sort(batch.begin(), batch.end());
      batch.erase(std::unique(batch.begin(), batch.end()), batch.end());
      Step(shard.get(), batch, &g);
    }
    checkpoint(2, 1, &inc_copy, &inc_write, &inc_rows);
  }
  std::filesystem::remove_all(dir);
  auto ratio = [](const std::vector<double>& a, const std::vector<double>& b, const std::vector<double>& c,
                  const std::vector<double>& d) {
    std::vector<double> r;
    for (std::size_t i = 0; i < a.size(); ++i) r.push_back((a[i] + b[i]) / (c[i] + d[i]));
    return r;
  };
  std::printf("| checkpoint | rows | copy (ms) min / median / max | write (ms) min / median / max |\n|---|---|---|---|\n");
  std::printf("| full: every row of the table | %s | %s | %s |\n", psforge::MinMedMax(full_rows, "%.0f").c_str(),
              psforge::MinMedMax(full_copy, "%.1f").c_str(), psforge::MinMedMax(full_write, "%.1f").c_str());
  std::printf("| incremental: after %lld steps | %s | %s | %s |\n", static_cast<long long>(steps),
              psforge::MinMedMax(inc_rows, "%.0f").c_str(), psforge::MinMedMax(inc_copy, "%.1f").c_str(),
              psforge::MinMedMax(inc_write, "%.1f").c_str());
  std::printf("\nfull / incremental time (copy + write): %s\n",
              psforge::MinMedMax(ratio(full_copy, full_write, inc_copy, inc_write), "%.1f").c_str());
  return 0;
}
