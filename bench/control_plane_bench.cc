// Control-plane scale: one real ps-coordinator process and many simulated
// members (threads of this process speaking the real protocol over ZeroMQ
// tcp on loopback: register, heartbeats, data-shard leases). The model is
// tiny (logistic regression on the synthetic set) and nobody trains: what is
// measured is the coordinator.
//
//  - registration: from every member's Register to the last Welcome;
//  - heartbeats: the coordinator's CPU (user + system, from /proc) per
//    heartbeat answered, at the default interval and at a stress interval;
//  - leases: grants per second with every worker asking back to back (each
//    request reports the previous lease done), the coordinator's CPU per
//    grant, and the round-trip latency a worker sees.
//
// Usage: control_plane_bench [--workers 256] [--servers 16] [--runs 3]
//                            [--seconds 4] [--drivers 8]
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/min_med_max.h"
#include "common/clock.h"
#include "common/coordinator_link.h"
#include "tests/support/child_process.h"

namespace psforge {
namespace {

using namespace std::chrono_literals;

double Since(Clock::time_point t) { return SecondsSince(t); }

// User + system CPU seconds of process `pid`.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) in parentheses.
  std::size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields;
  std::size_t pos = close + 2;
  while (pos < stat.size()) {
    std::size_t end = stat.find(' ', pos);
    if (end == std::string::npos) end = stat.size();
    fields.push_back(stat.substr(pos, end - pos));
    pos = end + 1;
  }
  if (fields.size() < 13) return 0;
  // fields[0] is the state (field 3); utime and stime are fields 14 and 15.
  return (std::stod(fields[11]) + std::stod(fields[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Options {
  int workers = 256, servers = 16, runs = 3, drivers = 8;
  double seconds = 4;
};

struct Member {
  std::unique_ptr<CoordinatorChannel> channel;
  PeerRole role = PeerRole::kWorker;
  uint64_t lease = 0;  // workers: the lease held (reported done with the next request)
};

struct Numbers {
  double register_s = 0;
  double hb_rate = 0, hb_cpu_us = 0, hb_cpu_pct = 0;                // default interval
  double hb_stress_rate = 0, hb_stress_cpu_us = 0;                  // stress interval
  double grants_per_s = 0, lease_cpu_us = 0, lease_p50_us = 0, lease_p99_us = 0;
  bool ok = true;
};

std::string Dir(const std::string& path) { return std::filesystem::path(path).parent_path().string(); }

// Every member heartbeats at `interval` for `seconds`; returns answers/s and
// the coordinator's CPU per answer (µs) and in percent of one core.
void HeartbeatPhase(std::vector<Member>& members, int drivers, double interval, double seconds, pid_t pid,
                    double* rate, double* cpu_us, double* cpu_pct) {
  int64_t before = 0;
  for (auto& m : members) before += m.channel->heartbeats_answered();
  const double cpu0 = CpuSeconds(pid);
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int d = 0; d < drivers; ++d)
    threads.emplace_back([&, d] {
      MemberProgress progress;
      while (Since(start) < seconds) {
        for (std::size_t i = d; i < members.size(); i += drivers)
          (void)members[i].channel->Heartbeat(progress, Seconds(interval), 60s);
        std::this_thread::sleep_for(1ms);
      }
    });
  for (auto& t : threads) t.join();
  const double elapsed = Since(start), cpu = CpuSeconds(pid) - cpu0;
  std::this_thread::sleep_for(200ms);  // answers still on their way count too
  int64_t after = 0;
  for (auto& m : members) {
    (void)m.channel->Heartbeat(MemberProgress{}, 1h, 60s);
    after += m.channel->heartbeats_answered();
  }
  *rate = static_cast<double>(after - before) / elapsed;
  *cpu_us = cpu * 1e6 / std::max<int64_t>(1, after - before);
  if (cpu_pct) *cpu_pct = 100 * cpu / elapsed;
}

Numbers RunOnce(const Options& o, const std::string& bin_dir) {
  Numbers n;
  const std::string config = std::string(PSFORGE_SOURCE_DIR) + "/configs/logistic_regression.yaml";
  std::vector<std::string> argv{bin_dir + "/ps-coordinator", "--config", config, "--no-run-dir"};
  for (std::string set : {"cluster.workers=" + std::to_string(o.workers),
                          "cluster.servers=" + std::to_string(o.servers), std::string("data.shard_size=1"),
                          "training.batch_size=" + std::to_string(o.workers),
                          std::string("training.epochs=100000"), std::string("cluster.heartbeat_interval_s=0.5"),
                          std::string("cluster.peer_timeout_s=60"), std::string("cluster.stall_report_s=3600"),
                          std::string("training.progress_interval_s=60")})
    argv.insert(argv.end(), {"--set", set});
  testing::ChildProcess coordinator(argv);
  auto endpoint = coordinator.WaitForLine(std::regex("listening on (\\S+)"), 60s);
  if (!endpoint) {
    std::fprintf(stderr, "the coordinator did not start: %s\n", coordinator.Stderr().c_str());
    n.ok = false;
    return n;
  }
  auto transport = Transport::CreateZmq(2);
  std::vector<Member> members(o.servers + o.workers);
  for (std::size_t i = 0; i < members.size(); ++i) {
    auto channel = CoordinatorChannel::Open(transport.get(), *endpoint);
    if (!channel.ok()) {
      std::fprintf(stderr, "%s\n", channel.status().ToString().c_str());
      n.ok = false;
      return n;
    }
    members[i].channel = std::move(*channel);
    members[i].role = static_cast<int>(i) < o.servers ? PeerRole::kServer : PeerRole::kWorker;
  }

  // Registration: every member at once, as a cluster starting up.
  std::atomic<int> failures{0};
  {
    const auto start = Clock::now();
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < members.size(); ++i)
      threads.emplace_back([&, i] {
        const std::string where =
            members[i].role == PeerRole::kServer ? "tcp://10.0.0." + std::to_string(i + 1) + ":7000" : "";
        auto job = members[i].channel->Join(members[i].role, where, 120s);
        if (!job.ok()) {
          if (failures++ == 0) std::fprintf(stderr, "join: %s\n", job.status().ToString().c_str());
        }
      });
    for (auto& t : threads) t.join();
    n.register_s = Since(start);
  }
  if (failures > 0) {
    n.ok = false;
    return n;
  }

  HeartbeatPhase(members, o.drivers, 0.5, o.seconds, coordinator.pid(), &n.hb_rate, &n.hb_cpu_us, &n.hb_cpu_pct);
  HeartbeatPhase(members, o.drivers, 0.02, o.seconds, coordinator.pid(), &n.hb_stress_rate, &n.hb_stress_cpu_us,
                 nullptr);

  // Leases: every worker asks back to back, reporting its last lease done;
  // heartbeats go on at the default interval.
  {
    std::atomic<int64_t> grants{0};
    std::vector<std::vector<double>> latencies(o.drivers);
    const double cpu0 = CpuSeconds(coordinator.pid());
    const auto start = Clock::now();
    std::vector<std::thread> threads;
    for (int d = 0; d < o.drivers; ++d)
      threads.emplace_back([&, d] {
        MemberProgress progress;
        while (Since(start) < o.seconds) {
          for (std::size_t i = d; i < members.size(); i += o.drivers) {
            Member& m = members[i];
            (void)m.channel->Heartbeat(progress, 500ms, 60s);
            if (m.role != PeerRole::kWorker) continue;
            msg::LeaseRequest lease;
            if (m.lease != 0) lease.done.push_back(m.lease);
            WireHeader request;
            request.body = std::move(lease);
            const auto t0 = Clock::now();
            auto reply = m.channel->Call(request, 30s);
            latencies[d].push_back(Since(t0) * 1e6);
            if (!reply.ok()) {
              if (failures++ == 0) std::fprintf(stderr, "lease: %s\n", reply.status().ToString().c_str());
              return;
            }
            const auto* granted = reply->As<msg::LeaseReply>();
            m.lease = granted && granted->status == LeaseStatus::kGranted ? granted->lease_id : 0;
            grants += m.lease != 0;
          }
        }
      });
    for (auto& t : threads) t.join();
    const double elapsed = Since(start), cpu = CpuSeconds(coordinator.pid()) - cpu0;
    n.grants_per_s = static_cast<double>(grants) / elapsed;
    n.lease_cpu_us = cpu * 1e6 / std::max<int64_t>(1, grants);
    std::vector<double> all;
    for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
    std::sort(all.begin(), all.end());
    if (!all.empty()) {
      n.lease_p50_us = all[all.size() / 2];
      n.lease_p99_us = all[all.size() * 99 / 100];
    }
  }
  n.ok = failures == 0;
  members.clear();
  coordinator.Signal(SIGTERM);
  coordinator.Wait(30s);
  return n;
}


}  // namespace
}  // namespace psforge

int main(int argc, char** argv) {
  psforge::Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--workers")) o.workers = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--servers")) o.servers = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--runs")) o.runs = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seconds")) o.seconds = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--drivers")) o.drivers = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  psforge::RaiseOpenFileLimit();  // every simulated member holds a socket and a connection
  const std::string bin_dir = psforge::Dir(std::filesystem::canonical("/proc/self/exe").string());

  std::vector<psforge::Numbers> runs;
  for (int r = 0; r < o.runs; ++r) {
    auto n = psforge::RunOnce(o, bin_dir);
    if (!n.ok) return 1;
    runs.push_back(n);
  }
  auto col = [&](auto field, const char* format) {
    std::vector<double> v;
    for (const auto& n : runs) v.push_back(n.*field);
    return psforge::MinMedMax(v, format);
  };
  using N = psforge::Numbers;
  std::printf("%d workers + %d servers simulated (%d driver threads), %d runs of %.0f s per phase; min / median / max\n\n",
              o.workers, o.servers, o.drivers, o.runs, o.seconds);
  std::printf("| measure | value |\n|---|---|\n");
  std::printf("| registration, all members (s) | %s |\n", col(&N::register_s, "%.3f").c_str());
  std::printf("| heartbeats answered/s, 0.5 s interval | %s |\n", col(&N::hb_rate, "%.0f").c_str());
  std::printf("| coordinator CPU per heartbeat (us), 0.5 s interval | %s |\n", col(&N::hb_cpu_us, "%.1f").c_str());
  std::printf("| coordinator CPU (%% of a core), 0.5 s interval | %s |\n", col(&N::hb_cpu_pct, "%.1f").c_str());
  std::printf("| heartbeats answered/s, 0.02 s interval (stress) | %s |\n", col(&N::hb_stress_rate, "%.0f").c_str());
  std::printf("| coordinator CPU per heartbeat (us), stress | %s |\n", col(&N::hb_stress_cpu_us, "%.1f").c_str());
  std::printf("| lease grants/s (each also reports one done) | %s |\n", col(&N::grants_per_s, "%.0f").c_str());
  std::printf("| coordinator CPU per grant (us) | %s |\n", col(&N::lease_cpu_us, "%.1f").c_str());
  std::printf("| lease round trip p50 (us) | %s |\n", col(&N::lease_p50_us, "%.0f").c_str());
  std::printf("| lease round trip p99 (us) | %s |\n", col(&N::lease_p99_us, "%.0f").c_str());
  // One line per run for scripts (bench/control_plane.py).
  for (const auto& n : runs)
    std::printf("RUN {\"register_s\": %.4f, \"hb_rate\": %.1f, \"hb_cpu_us\": %.2f, \"hb_cpu_pct\": %.2f, "
                "\"hb_stress_rate\": %.1f, \"hb_stress_cpu_us\": %.2f, \"grants_per_s\": %.1f, "
                "\"lease_cpu_us\": %.2f, \"lease_p50_us\": %.1f, \"lease_p99_us\": %.1f}\n",
                n.register_s, n.hb_rate, n.hb_cpu_us, n.hb_cpu_pct, n.hb_stress_rate, n.hb_stress_cpu_us,
                n.grants_per_s, n.lease_cpu_us, n.lease_p50_us, n.lease_p99_us);
  return 0;
}
