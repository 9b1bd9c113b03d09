// Push/pull throughput of psforge's parameter servers against raw ZeroMQ for
// the same message sizes over the same transport, measured in the same run.
//
//   pushpull_bench [--seconds S] [--runs N] [--curve] [--only raw|frames|whole|shared] [--chunk-kb K]
//
// psforge: one worker (PsClient) and 1 or 2 ParamServers (BSP, SGD, each in
// its own thread) over tcp loopback; one step = push the whole gradient, pull
// the whole model: 2 x size bytes moved. Twice: with payloads in ZeroMQ
// frames (cluster.shared_memory=false, as between hosts), and through the
// shared-memory regions a worker on the servers' host uses by default. Raw: a DEALER sends `size` bytes
// zero-copy from a reused buffer to a ROUTER thread that answers with `size`
// bytes zero-copy from its reused buffer: the same bytes, no parameter work.
// --curve: psforge with ZeroMQ CURVE (encrypted, authenticated) against
// psforge without, interleaved in the same run, payloads in frames (shared
// memory never crosses the network, so CURVE has nothing to encrypt there).
// Frames go in parts of cluster.chunk_kb (the default); "whole" is the
// same with one message per server a step (chunk_kb 0), as before parts.
// --chunk-kb sets the frames case's part size (to pick the default).
// Servers apply the optimizer on cluster.server_threads threads (the
// default, 1) and idle OpenMP threads spin as in ps-server
// (common/openmp_env.h). --only runs one case alone (for a profiler).
#include <omp.h>
#include <zmq.h>

#include <algorithm>
#include <optional>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/min_med_max.h"
#include "common/curve.h"
#include "common/openmp_env.h"
#include "common/process_setup.h"
#include "paramserver/server.h"
#include "worker/ps_client.h"

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
void NoFree(void*, void*) {}
constexpr int kWarmup = 3;  // untimed rounds: page faults of first use are not throughput

// GB/s of raw request/reply round trips of `bytes` each way.
double RawZmq(int64_t bytes, double seconds) {
  void* ctx = zmq_ctx_new();
  void* router = zmq_socket(ctx, ZMQ_ROUTER);
  zmq_bind(router, "tcp://127.0.0.1:0");
  char endpoint[256];
  size_t len = sizeof endpoint;
  zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len);
  std::atomic<bool> stop{false};
  std::thread server([&] {
    std::vector<char> reply(bytes, 1);
    zmq_pollitem_t item{router, 0, ZMQ_POLLIN, 0};
    while (!stop) {
      if (zmq_poll(&item, 1, 50) <= 0) continue;
      zmq_msg_t id, body;
      zmq_msg_init(&id);
      zmq_msg_init(&body);
      zmq_msg_recv(&id, router, 0);
      zmq_msg_recv(&body, router, 0);
      zmq_msg_close(&body);
      zmq_msg_send(&id, router, ZMQ_SNDMORE);
      zmq_msg_t out;
      zmq_msg_init_data(&out, reply.data(), reply.size(), NoFree, nullptr);
      zmq_msg_send(&out, router, 0);
    }
  });
  void* dealer = zmq_socket(ctx, ZMQ_DEALER);
  zmq_connect(dealer, endpoint);
  std::vector<char> request(bytes, 2);
  auto round_trip = [&] {
    zmq_msg_t out, in;
    zmq_msg_init_data(&out, request.data(), request.size(), NoFree, nullptr);
    zmq_msg_send(&out, dealer, 0);
    zmq_msg_init(&in);
    zmq_msg_recv(&in, dealer, 0);
    zmq_msg_close(&in);
  };
  for (int i = 0; i < kWarmup; ++i) round_trip();  // first touches of every buffer
  int64_t rounds = 0;
  auto start = Clock::now();
  while (Since(start) < seconds || rounds < 3) {
    round_trip();
    ++rounds;
  }
  double elapsed = Since(start);
  stop = true;
  server.join();
  int linger = 0;
  zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger);
  zmq_close(dealer);
  zmq_close(router);
  zmq_ctx_term(ctx);
  return 2.0 * bytes * rounds / elapsed / 1e9;
}

// GB/s of psforge push + pull steps.
// chunk_kb: -1 for the default (cluster.chunk_kb).
double Psforge(int64_t floats, int servers, double seconds, bool curve, bool shared_memory, int64_t chunk_kb = -1) {
  psforge::JobConfig config;
  config.cluster.shared_memory = shared_memory;
  if (chunk_kb >= 0) config.cluster.chunk_kb = chunk_kb;
  config.model.kind = psforge::ModelKind::kLinearRegression;
  config.optimizer.kind = psforge::OptimizerKind::kSgd;
  config.optimizer.learning_rate = 1e-6;
  config.cluster.servers = servers;
  config.cluster.workers = 1;
  auto spec = std::move(psforge::ModelSpec::FromConfig(config.model, floats - 1)).value();
  std::optional<psforge::CurveOptions> keys;
  if (curve) {  // one key pair for both ends: they are the cluster
    auto pair = std::move(psforge::GenerateCurveKeyPair()).value();
    keys = psforge::CurveOptions{pair, {{"coordinator", pair.public_key}}, "(generated)"};
  }
  auto transport = std::move(psforge::Transport::CreateZmq(1, keys)).value();
  std::atomic<bool> stop{false};
  std::vector<std::unique_ptr<psforge::ParamServer>> ps;
  std::vector<std::string> endpoints;
  for (int i = 0; i < servers; ++i) {
    ps.push_back(std::move(psforge::ParamServer::Create(config, spec, i, transport.get(),
                                                        "tcp://127.0.0.1:0")).value());
    endpoints.push_back(ps.back()->endpoint());
  }
  std::vector<std::thread> threads;
  for (auto& s : ps)
    threads.emplace_back([&, p = s.get()] {
      omp_set_num_threads(static_cast<int>(config.cluster.server_threads));  // per thread, as in ps-server
      (void)p->Serve(stop);
    });
  const std::vector<std::string> server_keys(curve ? servers : 0, transport->public_key());
  auto client = std::move(psforge::PsClient::Connect(transport.get(), spec, config.cluster, 0, endpoints, 0, 0,
                                                     server_keys)).value();
  std::vector<float> weights(floats), grad(floats, 0.5f);
  int64_t step = 0;
  (void)client->Pull(0, weights);
  auto one_step = [&] {
    bool ok = client->Push(step, grad, 128, psforge::DataMark{}).ok() && client->Pull(step + 1, weights).ok();
    ++step;
    return ok;
  };
  for (int i = 0; i < kWarmup; ++i) one_step();
  const int64_t first = step;
  auto start = Clock::now();
  while (Since(start) < seconds || step - first < 3) {
    if (!one_step()) {
      std::fprintf(stderr, "push/pull failed\n");
      break;
    }
  }
  double elapsed = Since(start);
  step -= first;
  client.reset();
  stop = true;
  for (auto& t : threads) t.join();
  return 2.0 * floats * sizeof(float) * step / elapsed / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  // As ps-server and ps-worker run: idle OpenMP threads spin briefly, and a
  // server applies its optimizer on cluster.server_threads (1) threads.
  psforge::BoundOpenMpSpinning(argv);
  double seconds = 2;
  int runs = 3;
  bool curve = false;
  std::string only;  // one case alone (for a profiler): raw, frames, whole or shared
  int64_t chunk_kb = psforge::ClusterOptions{}.chunk_kb;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--curve")) curve = true;
    if (i + 1 < argc && !std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
    if (i + 1 < argc && !std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[i + 1]);
    if (i + 1 < argc && !std::strcmp(argv[i], "--only")) only = argv[i + 1];
    if (i + 1 < argc && !std::strcmp(argv[i], "--chunk-kb")) chunk_kb = std::atoll(argv[i + 1]);
  }
  if (!only.empty() && only != "raw" && only != "frames" && only != "whole" && only != "shared") {
    std::fprintf(stderr, "pushpull_bench: --only takes raw, frames, whole or shared, not %s\n", only.c_str());
    return 2;
  }
  auto wanted = [&](const char* c) { return only.empty() || only == c; };
  if (curve) {
    std::printf("%d interleaved runs of %.1f s each; GB/s counts bytes pushed plus pulled\n\n", runs, seconds);
    std::printf("| size | servers | CURVE off GB/s min / median / max | CURVE on GB/s min / median / max "
                "| on / off min / median / max |\n|---|---|---|---|---|\n");
    for (int64_t floats : {int64_t{397510}, int64_t{16} << 20}) {
      for (int servers : {1, 2}) {
        std::vector<double> off, on, ratio;
        for (int r = 0; r < runs; ++r) {
          off.push_back(Psforge(floats, servers, seconds, false, false));
          on.push_back(Psforge(floats, servers, seconds, true, false));
          ratio.push_back(on.back() / off.back());
        }
        std::printf("| %s | %d | %s | %s | %s |\n", floats == 397510 ? "1.6 MB" : "64 MB", servers,
                    psforge::MinMedMax(off, "%.2f").c_str(), psforge::MinMedMax(on, "%.2f").c_str(),
                    psforge::MinMedMax(ratio, "%.2f").c_str());
        std::fflush(stdout);
      }
    }
    return 0;
  }
  std::printf("allocator %s (both sides), %d interleaved runs of %.1f s each; GB/s counts bytes pushed plus pulled; "
              "frames in parts of %lld KiB (cluster.chunk_kb), whole: one message per server a step\n\n",
              psforge::AllocatorName(), runs, seconds, static_cast<long long>(chunk_kb));
  std::printf("| size | servers | raw ZeroMQ GB/s min / median / max | psforge, frames GB/s min / median / max "
              "| frames / raw min / median / max | psforge, frames whole GB/s min / median / max "
              "| whole / raw min / median / max | psforge, shared memory GB/s min / median / max "
              "| shared / raw min / median / max |\n|---|---|---|---|---|---|---|---|---|\n");
  for (int64_t floats : {int64_t{397510}, int64_t{16} << 20}) {
    for (int servers : {1, 2}) {
      std::vector<double> raw, frames, frames_ratio, whole, whole_ratio, shared, shared_ratio;
      for (int r = 0; r < runs; ++r) {
        raw.push_back(wanted("raw") ? RawZmq(floats * 4, seconds) : 1.0);
        frames.push_back(wanted("frames") ? Psforge(floats, servers, seconds, false, false, chunk_kb) : 0.0);
        whole.push_back(wanted("whole") ? Psforge(floats, servers, seconds, false, false, 0) : 0.0);
        shared.push_back(wanted("shared") ? Psforge(floats, servers, seconds, false, true) : 0.0);
        frames_ratio.push_back(frames.back() / raw.back());
        whole_ratio.push_back(whole.back() / raw.back());
        shared_ratio.push_back(shared.back() / raw.back());
      }
      std::printf("| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", floats == 397510 ? "1.6 MB" : "64 MB", servers,
                  psforge::MinMedMax(raw, "%.2f").c_str(), psforge::MinMedMax(frames, "%.2f").c_str(),
                  psforge::MinMedMax(frames_ratio, "%.2f").c_str(), psforge::MinMedMax(whole, "%.2f").c_str(),
                  psforge::MinMedMax(whole_ratio, "%.2f").c_str(), psforge::MinMedMax(shared, "%.2f").c_str(),
                  psforge::MinMedMax(shared_ratio, "%.2f").c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
