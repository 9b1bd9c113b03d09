#!/usr/bin/python3
"""Control-plane scale: ps-coordinator against PyTorch's TCPStore, runs
interleaved in one session.

Ours: build/bin/control_plane_bench (a real ps-coordinator process; W
simulated workers and S simulated servers are threads speaking the real
protocol). The peer: torch.distributed.TCPStore, the store behind PyTorch's
c10d rendezvous and torchelastic's keep-alives, its server in a process of
its own, driven the same way by W + S client threads:

  registration  each member connects and joins a barrier (add, then wait for
                the last one's key), as members wait for the welcome;
  heartbeats    each member sets a key every 0.5 s (and every 0.02 s: stress);
  leases        each worker asks for the next shard with an atomic add, back
                to back (ours also reports the previous lease done).

The server's CPU (user + system from /proc) is divided by the operations it
answered. Usage: bench/control_plane.py [--workers 256] [--servers 16]
[--runs 3] [--seconds 4]
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "build", "bin", "control_plane_bench")
DRIVERS = 8


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ours(workers, servers, seconds):
    out = subprocess.run([BENCH, "--workers", str(workers), "--servers", str(servers), "--runs", "1",
                          "--seconds", str(seconds), "--drivers", str(DRIVERS)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("RUN ")][0][4:])


SERVER = """
import datetime, sys
from torch.distributed import TCPStore
s = TCPStore("127.0.0.1", 0, None, True, datetime.timedelta(seconds=120), wait_for_workers=False)
print(s.port, flush=True)
sys.stdin.read()
"""


def peer(workers, servers, seconds):
    from torch.distributed import TCPStore
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    port = int(server.stdout.readline())
    timeout = datetime.timedelta(seconds=120)
    n = workers + servers
    clients = [None] * n
    r = {}

    def join(i):
        c = TCPStore("127.0.0.1", port, None, False, timeout)
        if c.add("joined", 1) == n:
            c.set("go", "1")
        c.wait(["go"])
        clients[i] = c

    start = time.perf_counter()
    threads = [threading.Thread(target=join, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r["register_s"] = time.perf_counter() - start

    def run_phase(body):
        cpu0 = cpu_seconds(server.pid)
        start = time.perf_counter()
        counts = [0] * DRIVERS
        lat = [[] for _ in range(DRIVERS)]
        ts = [threading.Thread(target=body, args=(d, start, counts, lat)) for d in range(DRIVERS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.perf_counter() - start
        return sum(counts), elapsed, cpu_seconds(server.pid) - cpu0, sorted(x for l in lat for x in l)

    def heartbeats(interval):
        def body(d, start, counts, lat):
            mine = range(d, n, DRIVERS)
            due = {i: start for i in mine}
            while time.perf_counter() - start < seconds:
                now = time.perf_counter()
                for i in mine:
                    if now >= due[i]:
                        clients[i].set(f"hb/{i}", str(now))
                        counts[d] += 1
                        due[i] = now + interval
                time.sleep(0.001)
        return run_phase(body)

    ops, elapsed, cpu, _ = heartbeats(0.5)
    r["hb_rate"], r["hb_cpu_us"], r["hb_cpu_pct"] = ops / elapsed, cpu * 1e6 / max(1, ops), 100 * cpu / elapsed
    ops, elapsed, cpu, _ = heartbeats(0.02)
    r["hb_stress_rate"], r["hb_stress_cpu_us"] = ops / elapsed, cpu * 1e6 / max(1, ops)

    def leases(d, start, counts, lat):
        mine = range(servers + d, n, DRIVERS)
        while time.perf_counter() - start < seconds:
            for i in mine:
                t0 = time.perf_counter()
                clients[i].add("next_shard", 1)
                lat[d].append((time.perf_counter() - t0) * 1e6)
                counts[d] += 1

    ops, elapsed, cpu, lat = run_phase(leases)
    r["grants_per_s"], r["lease_cpu_us"] = ops / elapsed, cpu * 1e6 / max(1, ops)
    r["lease_p50_us"], r["lease_p99_us"] = lat[len(lat) // 2], lat[len(lat) * 99 // 100]
    del clients[:]
    server.stdin.close()
    server.wait()
    return r


ROWS = [
    ("registration, all members (s)", "register_s", "%.3f", "lower"),
    ("heartbeats answered/s, 0.5 s interval", "hb_rate", "%.0f", None),
    ("server CPU per heartbeat (us), 0.5 s interval", "hb_cpu_us", "%.1f", "lower"),
    ("server CPU (% of a core), 0.5 s interval", "hb_cpu_pct", "%.1f", "lower"),
    ("heartbeats answered/s, 0.02 s interval (stress)", "hb_stress_rate", "%.0f", "higher"),
    ("server CPU per heartbeat (us), stress", "hb_stress_cpu_us", "%.1f", "lower"),
    ("lease grants/s", "grants_per_s", "%.0f", "higher"),
    ("server CPU per grant (us)", "lease_cpu_us", "%.1f", "lower"),
    ("lease round trip p50 (us)", "lease_p50_us", "%.0f", "lower"),
    ("lease round trip p99 (us)", "lease_p99_us", "%.0f", "lower"),
]


def mmm(values, fmt):
    v = sorted(values)
    return " / ".join(fmt % x for x in (v[0], statistics.median(v), v[-1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=256)
    ap.add_argument("--servers", type=int, default=16)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4)
    a = ap.parse_args()
    mine, theirs = [], []
    for _ in range(a.runs):
        mine.append(ours(a.workers, a.servers, a.seconds))
        theirs.append(peer(a.workers, a.servers, a.seconds))
    print(f"{a.workers} workers + {a.servers} servers simulated, {DRIVERS} driver threads, {a.runs} interleaved "
          f"runs of {a.seconds:g} s per phase; min / median / max\n")
    print("| measure | ps-coordinator | TCPStore | ours vs peer (median; >1 is better) |")
    print("|---|---|---|---|")
    for name, key, fmt, better in ROWS:
        m, t = statistics.median(x[key] for x in mine), statistics.median(x[key] for x in theirs)
        ratio = "" if better is None or m == 0 or t == 0 else "%.2fx" % (t / m if better == "lower" else m / t)
        print(f"| {name} | {mmm([x[key] for x in mine], fmt)} | {mmm([x[key] for x in theirs], fmt)} | {ratio} |")


if __name__ == "__main__":
    main()
