#!/usr/bin/python3
"""Training throughput of the MLP 784-500-10 (global batch 128, Adam) through
psforge's parameter servers, against the single-process ps-train and against
PyTorch peers (DDP with gloo; a torch.distributed.rpc parameter server), all
measured interleaved in one session, min/median/max of N runs. Writes
bench/results/cluster_throughput.md and prints it.

Usage: bench/cluster_throughput.py [--runs 3] [--baseline BIN_DIR] [--frames]   (scripts/bench.sh builds first)

--frames runs only ps-train, the cases whose payloads travel in ZeroMQ frames
(as between hosts: in parts of cluster.chunk_kb, and again in one message
per server a step, chunk_kb 0) and the peers: issue 23's targets.

--baseline runs psforge's shared-memory cases a second time with the
programs in BIN_DIR (another build, e.g. of the commit before a refactoring;
its configs/ are this tree's), interleaved with the others, and reports each
case's ratio to it: the check that a change left the throughput as it was."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build/bin")
CONFIG = os.path.join(ROOT, "configs/fashion_mnist_mlp.yaml")


def ps_train(epochs, bin_dir=BIN):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([f"{bin_dir}/ps-train", "--no-run-dir", "--config", CONFIG, "--epochs", str(epochs), "--threads", "1",
                        "--summary", f.name], check=True, capture_output=True)
        return json.load(open(f.name))["samples_per_s"]


def cluster(servers, workers, epochs, consistency="bsp", staleness=1, shared_memory=True, bin_dir=BIN, chunk_kb=None,
            more=()):
    """A local cluster through ps-launch; the rate is the sum of the workers'
    own rates (training steps only, evaluation excluded, as for ps-train).
    shared_memory=False passes payloads in ZeroMQ frames, as between hosts."""
    sets = [f"cluster.consistency={consistency}", f"cluster.staleness={staleness}",
            f"cluster.shared_memory={'true' if shared_memory else 'false'}"]
    if chunk_kb is not None:
        sets.append(f"cluster.chunk_kb={chunk_kb}")
    sets += list(more)
    with tempfile.TemporaryDirectory() as run_dir:
        subprocess.run([f"{bin_dir}/ps-launch", "--config", CONFIG, "--servers", str(servers), "--workers",
                        str(workers), "--epochs", str(epochs), "--threads", "1", "--run-dir", run_dir] +
                       sum((["--set", s] for s in sets), []),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
        return sum(json.load(open(os.path.join(run_dir, "logs", f"worker-{w}.json")))["samples_per_s"]
                   for w in range(workers))


def peer(script, *args):
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench", script)] + list(args),
                         check=True, capture_output=True, text=True, env=bench_env.peer_env("native", 1)).stdout
    return json.loads(out.strip().splitlines()[-1])["samples_per_s"]


BASELINE = "baseline build: "

# psforge's cases take the bin directory to run (--baseline runs the
# shared-memory ones again with another build's).
PSFORGE_CASES = [
    ("ps-train, 1 process, 1 thread", lambda b: ps_train(2, b)),
    ("psforge BSP, 1 worker + 1 server", lambda b: cluster(1, 1, 2, bin_dir=b)),
    ("psforge SSP bound 1, 1 worker + 1 server", lambda b: cluster(1, 1, 2, "ssp", 1, bin_dir=b)),
    ("psforge BSP, 2 workers + 1 server", lambda b: cluster(1, 2, 2, bin_dir=b)),
    ("psforge BSP, 2 workers + 2 servers", lambda b: cluster(2, 2, 2, bin_dir=b)),
]
NO_OVERLAP = ("cluster.priority_pulls=false", "cluster.push_during_backward=false")
FRAMES_CASES = [
    ("psforge BSP, 1 worker + 1 server, frames", lambda: cluster(1, 1, 2, shared_memory=False)),
    ("psforge SSP bound 1, 1 worker + 1 server, frames", lambda: cluster(1, 1, 2, "ssp", 1, shared_memory=False)),
    ("psforge BSP, 2 workers + 1 server, frames", lambda: cluster(1, 2, 2, shared_memory=False)),
    ("psforge BSP, 1 worker + 1 server, frames whole", lambda: cluster(1, 1, 2, shared_memory=False, chunk_kb=0)),
    ("psforge SSP bound 1, 1 worker + 1 server, frames whole",
     lambda: cluster(1, 1, 2, "ssp", 1, shared_memory=False, chunk_kb=0)),
    ("psforge BSP, 2 workers + 1 server, frames whole", lambda: cluster(1, 2, 2, shared_memory=False, chunk_kb=0)),
    # Parts, but each step's in key order after backward and the next forward after the whole pull
    # (what psforge did before cluster.priority_pulls and the first layer in blocks).
    ("psforge BSP, 1 worker + 1 server, frames, no overlap",
     lambda: cluster(1, 1, 2, shared_memory=False, more=NO_OVERLAP)),
    ("psforge BSP, 2 workers + 1 server, frames, no overlap",
     lambda: cluster(1, 2, 2, shared_memory=False, more=NO_OVERLAP)),
]
PEER_CASES = [
    ("PyTorch DDP (gloo), 2 processes x 1 thread", lambda: peer("torch_ddp.py", "--workers", "2", "--epochs", "2")),
    ("PyTorch RPC parameter server, 1 trainer", lambda: peer("torch_rpc_ps.py", "--trainers", "1")),
    ("PyTorch RPC parameter server, 2 trainers", lambda: peer("torch_rpc_ps.py", "--trainers", "2")),
]


def cases_with(bin_dir, label=""):
    return [(label + name, lambda run=run: run(bin_dir)) for name, run in PSFORGE_CASES]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--baseline", help="a bin directory of another build to compare psforge's cases with")
    ap.add_argument("--frames", action="store_true", help="ps-train, the frames cases and the peers only")
    args = ap.parse_args()
    cases = (cases_with(BIN)[:1] if args.frames else cases_with(BIN)) + FRAMES_CASES + PEER_CASES
    if args.baseline:
        cases += cases_with(os.path.abspath(args.baseline), BASELINE)
    results = {name: [] for name, _ in cases}
    for _ in range(args.runs):
        for name, run in cases:
            results[name].append(run())
    med = {k: statistics.median(v) for k, v in results.items()}
    lines = ["## Cluster training throughput: MLP 784-500-10, global batch 128, Adam", "",
             f"Command: `bench/cluster_throughput.py --runs {args.runs}{' --frames' if args.frames else ''}` (CPU: {bench_env.cpu()}; every process "
             "1 compute thread; psforge over tcp loopback, payloads through shared memory unless marked frames "
             "(cluster.shared_memory=false, as between hosts); runs of all cases interleaved).", "",
             "| case | samples/s min / median / max |", "|---|---|"]
    for name, v in results.items():
        lines.append(f"| {name} | {min(v):,.0f} / {med[name]:,.0f} / {max(v):,.0f} |")
    base = med["ps-train, 1 process, 1 thread"]
    ddp = med["PyTorch DDP (gloo), 2 processes x 1 thread"]
    rpc1 = med["PyTorch RPC parameter server, 1 trainer"]
    lines += ["", "| ratio (medians) | value | target |", "|---|---|---|"]
    if not args.frames:
        two = med["psforge BSP, 2 workers + 1 server"]
        lines += [f"| BSP 1w+1s / ps-train | {med['psforge BSP, 1 worker + 1 server'] / base:.2f} | >= 0.65 |",
                  f"| SSP(1) 1w+1s / ps-train | {med['psforge SSP bound 1, 1 worker + 1 server'] / base:.2f} | >= 0.85 |",
                  f"| BSP 2w+1s / DDP | {two / ddp:.2f} | >= 2 |",
                  f"| BSP 2w+1s / RPC PS, 1 trainer | {two / rpc1:.2f} | >= 4 |",
                  f"| BSP 2w+1s / RPC PS, 2 trainers | {two / med['PyTorch RPC parameter server, 2 trainers']:.2f} | >= 4 |"]
    for suffix in [", frames", ", frames whole"]:
        frames_two = med[f"psforge BSP, 2 workers + 1 server{suffix}"]
        tag = suffix[2:]
        lines += [f"| {tag}: BSP 1w+1s / ps-train | {med[f'psforge BSP, 1 worker + 1 server{suffix}'] / base:.2f} | "
                  f"{'>= 0.80' if tag == 'frames' else ''} |",
                  f"| {tag}: SSP(1) 1w+1s / ps-train | "
                  f"{med[f'psforge SSP bound 1, 1 worker + 1 server{suffix}'] / base:.2f} | "
                  f"{'>= 0.95' if tag == 'frames' else ''} |",
                  f"| {tag}: BSP 2w+1s / DDP | {frames_two / ddp:.2f} | {'>= 2.5' if tag == 'frames' else ''} |",
                  f"| {tag}: BSP 2w+1s / RPC PS, 1 trainer | {frames_two / rpc1:.2f} | "
                  f"{'>= 3' if tag == 'frames' else ''} |"]
    no = ", frames, no overlap"
    lines += [f"| frames, no overlap: BSP 1w+1s / ps-train | {med[f'psforge BSP, 1 worker + 1 server{no}'] / base:.2f} |  |",
              f"| frames, no overlap: BSP 2w+1s / DDP | {med[f'psforge BSP, 2 workers + 1 server{no}'] / ddp:.2f} |  |",
              f"| frames / frames, no overlap: BSP 1w+1s | "
              f"{med['psforge BSP, 1 worker + 1 server, frames'] / med[f'psforge BSP, 1 worker + 1 server{no}']:.2f} |  |",
              f"| frames / frames, no overlap: BSP 2w+1s | "
              f"{med['psforge BSP, 2 workers + 1 server, frames'] / med[f'psforge BSP, 2 workers + 1 server{no}']:.2f} |  |"]
    if args.baseline:
        lines += ["", f"Against the baseline build in `{args.baseline}` (this build / baseline, medians; per-run "
                  "ratios min / max):", "", "| case | median ratio | run ratios min / max |", "|---|---|---|"]
        for name, v in results.items():
            if not name.startswith(BASELINE):
                continue
            mine = results[name[len(BASELINE):]]
            per_run = [a / b for a, b in zip(mine, v)]
            lines.append(f"| {name[len(BASELINE):]} | {statistics.median(mine) / statistics.median(v):.2f} | "
                         f"{min(per_run):.2f} / {max(per_run):.2f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/cluster_throughput.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
