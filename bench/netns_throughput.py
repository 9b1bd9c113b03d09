#!/usr/bin/python3
"""The MLP 784-500-10 (global batch 128, Adam, every process 1 thread)
through psforge between two network namespaces joined by a veth pair: the
coordinator and the server in one, the worker(s) in the other, so payloads
cross a network device as between hosts (ZeroMQ frames: shared memory is
for a worker and a server on one host). Each case runs once with payloads
in parts (cluster.chunk_kb, the default) and once whole (chunk_kb 0), and
again on loopback in the same run; ps-train (one process, no network) is the
base of the ratios. The PyTorch peers of issue 23's targets (DDP with gloo,
2 processes; the torch.distributed.rpc parameter server, 1 trainer) run the
same way: one rank in each namespace, and again on loopback. All cases
interleaved, min/median/max of N runs.
Writes bench/results/netns_throughput.md and prints it.

Usage (root): bench/netns_throughput.py [--runs 3]

The members listen beyond loopback in plaintext (security.plaintext: true),
as a job whose network is private; CURVE's cost is measured elsewhere
(bench/RESULTS.md, "CURVE on and off"). The namespaces and links are removed
afterwards."""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build/bin")
CONFIG = os.path.join(ROOT, "configs/fashion_mnist_mlp.yaml")
EPOCHS = 2


class Namespaces:
    """Two namespaces, `a` and `b`, each with one end of a veth pair."""

    def __init__(self):
        tag = f"psfn{os.getpid() % 10000}"
        self.a, self.b = tag + "a", tag + "b"
        used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        while True:
            net = f"10.{random.randrange(40, 240)}.{random.randrange(0, 250)}"
            if f" {net}." not in used:
                break
        self.addr_a, self.addr_b = net + ".1", net + ".2"
        self.links = (tag + "va", tag + "vb")
        try:
            for ns in (self.a, self.b):
                self.ip("netns", "add", ns)
            self.ip("link", "add", self.links[0], "type", "veth", "peer", "name", self.links[1])
            for ns, link, addr in ((self.a, self.links[0], self.addr_a), (self.b, self.links[1], self.addr_b)):
                self.ip("link", "set", link, "netns", ns)
                self.ip("netns", "exec", ns, "ip", "addr", "add", addr + "/24", "dev", link)
                self.ip("netns", "exec", ns, "ip", "link", "set", link, "up")
                self.ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    @staticmethod
    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def close(self):
        for ns in (self.a, self.b):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def rate(summaries):
    """The summed rate of these summaries, and their first's split of a step
    (step_compute_ms, step_exchange_ms)."""
    s = [json.load(open(p)) for p in summaries]
    return sum(x["samples_per_s"] for x in s), (s[0]["step_compute_ms"], s[0]["step_exchange_ms"])


def ps_train():
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([f"{BIN}/ps-train", "--no-run-dir", "--config", CONFIG, "--epochs", str(EPOCHS), "--threads",
                        "1", "--summary", f.name], check=True, capture_output=True)
        return rate([f.name])


def job(net, workers, consistency, chunk_kb):
    """One job; `net` None: everything on loopback. The rate is the sum of
    the workers' own rates (training steps only, as for ps-train)."""
    server_ns = ["ip", "netns", "exec", net.a] if net else []
    worker_ns = ["ip", "netns", "exec", net.b] if net else []
    bind = f"tcp://{net.addr_a}:0" if net else "tcp://127.0.0.1:0"
    with tempfile.TemporaryDirectory() as d:
        endpoint_file = os.path.join(d, "endpoint")
        sets = [f"cluster.consistency={consistency}", "cluster.staleness=1", "cluster.shared_memory=false",
                f"cluster.chunk_kb={chunk_kb}", "security.plaintext=true", f"checkpoint.dir={d}/checkpoints"]
        coordinator = subprocess.Popen(
            server_ns + [f"{BIN}/ps-coordinator", "--config", CONFIG, "--bind", bind, "--endpoint-file",
                         endpoint_file, "--no-run-dir", "--epochs", str(EPOCHS), "--threads", "1", "--servers", "1",
                         "--workers", str(workers)] + sum((["--set", s] for s in sets), []),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        members = []
        try:
            deadline = time.monotonic() + 60
            while not (os.path.exists(endpoint_file) and open(endpoint_file).read().strip()):
                if coordinator.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the coordinator did not start: " + coordinator.stderr.read())
                time.sleep(0.05)
            endpoint = open(endpoint_file).read().strip()
            members.append(subprocess.Popen(
                server_ns + [f"{BIN}/ps-server", "--coordinator", endpoint, "--bind",
                             "tcp://0.0.0.0:0" if net else "tcp://127.0.0.1:0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            summaries = [os.path.join(d, f"worker-{w}.json") for w in range(workers)]
            for path in summaries:
                members.append(subprocess.Popen(
                    worker_ns + [f"{BIN}/ps-worker", "--coordinator", endpoint, "--summary", path],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            if coordinator.wait(timeout=900) != 0:
                raise RuntimeError("the job failed: " + coordinator.stderr.read()[-2000:])
            for m in members:
                m.wait(timeout=60)
            return rate(summaries)
        finally:
            for p in [coordinator] + members:
                if p.poll() is None:
                    p.kill()
                    p.wait()


def peer(net, script, world, *args):
    """A PyTorch peer (bench/torch_ddp.py, bench/torch_rpc_ps.py): with
    `net`, rank 0 in namespace a and the others in b, meeting at a's
    address; else all ranks spawned on loopback. Its samples/s (rank 0's
    for DDP, the trainer's for the RPC parameter server)."""
    script = os.path.join(ROOT, "bench", script)
    if net is None:
        out = subprocess.run(["/usr/bin/python3", script] + list(args), check=True, capture_output=True, text=True,
                             env=bench_env.peer_env("native", 1), timeout=900).stdout
        return json.loads(out.strip().splitlines()[-1])["samples_per_s"]
    port = str(random.randrange(20000, 60000))
    procs = []
    try:
        for rank in range(world):
            ns, link = (net.a, net.links[0]) if rank == 0 else (net.b, net.links[1])
            env = dict(bench_env.peer_env("native", 1), GLOO_SOCKET_IFNAME=link, TP_SOCKET_IFNAME=link)
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, "/usr/bin/python3", script, "--rank", str(rank), "--addr", net.addr_a,
                 "--port", port] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        outs = [p.communicate(timeout=900) for p in procs]
        for p, (_, err) in zip(procs, outs):
            if p.returncode != 0:
                raise RuntimeError(f"{script} failed: {err[-2000:]}")
        lines = [line for out, _ in outs for line in out.strip().splitlines() if line.startswith("{")]
        return json.loads(lines[-1])["samples_per_s"]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("netns_throughput.py: needs root (ip netns)")
    net = Namespaces()
    try:
        cases = [("ps-train, 1 process, 1 thread", ps_train)]
        for where, n in (("namespaces", net), ("loopback", None)):
            for parts, kb in (("parts", 512), ("whole", 0)):
                cases += [
                    (f"BSP 1w+1s, {where}, {parts}", lambda n=n, kb=kb: job(n, 1, "bsp", kb)),
                    (f"SSP(1) 1w+1s, {where}, {parts}", lambda n=n, kb=kb: job(n, 1, "ssp", kb)),
                    (f"BSP 2w+1s, {where}, {parts}", lambda n=n, kb=kb: job(n, 2, "bsp", kb)),
                ]
            cases += [
                (f"PyTorch DDP (gloo), 2 processes, {where}",
                 lambda n=n: (peer(n, "torch_ddp.py", 2, "--workers", "2", "--epochs", str(EPOCHS)), (0.0, 0.0))),
                (f"PyTorch RPC parameter server, 1 trainer, {where}",
                 lambda n=n: (peer(n, "torch_rpc_ps.py", 2, "--trainers", "1"), (0.0, 0.0))),
            ]
        results = {name: [] for name, _ in cases}
        split = {name: [] for name, _ in cases}
        for _ in range(args.runs):
            for name, run in cases:
                r, s = run()
                results[name].append(r)
                split[name].append(s)
    finally:
        net.close()
    med = {k: statistics.median(v) for k, v in results.items()}
    base = med["ps-train, 1 process, 1 thread"]
    lines = ["## Cluster training throughput across network namespaces: MLP 784-500-10, global batch 128, Adam", "",
             f"Command: `bench/netns_throughput.py --runs {args.runs}` (CPU: {bench_env.cpu()}; every process 1 "
             "compute thread; payloads in ZeroMQ frames; namespaces: coordinator and server in one, workers in "
             "the other, over a veth pair; parts: cluster.chunk_kb 512, whole: 0; runs of all cases interleaved).",
             "", "| case | samples/s min / median / max | / ps-train (median) | a step: compute / exchange ms "
             "(medians; worker 0) |", "|---|---|---|---|"]
    for name, v in results.items():
        compute = statistics.median(c for c, _ in split[name])
        exchange = statistics.median(e for _, e in split[name])
        split_ms = "-" if name.startswith("PyTorch") else f"{compute:.2f} / {exchange:.2f}"
        lines.append(f"| {name} | {min(v):,.0f} / {med[name]:,.0f} / {max(v):,.0f} | {med[name] / base:.2f} | "
                     f"{split_ms} |")
    lines += ["", "| 2w+1s BSP against the peers (medians) | namespaces | loopback | target |", "|---|---|---|---|"]
    for parts in ("parts", "whole"):
        for peer_name, target in (("PyTorch DDP (gloo), 2 processes", "2.5x"),
                                  ("PyTorch RPC parameter server, 1 trainer", "3x")):
            ns = med[f"BSP 2w+1s, namespaces, {parts}"] / med[f"{peer_name}, namespaces"]
            lo = med[f"BSP 2w+1s, loopback, {parts}"] / med[f"{peer_name}, loopback"]
            lines.append(f"| psforge ({parts}) / {peer_name} | {ns:.2f}x | {lo:.2f}x | {target} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/netns_throughput.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
