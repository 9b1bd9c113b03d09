#!/usr/bin/python3
"""MLP 784-500-10 training throughput through a local cluster (ps-launch, 2
servers, 2 workers, BSP, 1 epoch) with ZeroMQ CURVE off and on, interleaved
in one session, payloads in ZeroMQ frames as between hosts
(cluster.shared_memory=false: shared memory never crosses the network, so
CURVE has nothing to encrypt there)
in one session; min/median/max of N runs and the on/off ratio. Prints a
Markdown table for bench/RESULTS.md.

Usage: bench/curve_throughput.py [--runs 3] [--epochs 1]   (build first)"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build/bin")
CONFIG = os.path.join(ROOT, "configs/fashion_mnist_mlp.yaml")


def cluster(epochs, keys):
    """samples/s summed over the workers' own rates (training steps only)."""
    sets = ["cluster.shared_memory=false"]
    if keys:
        sets += [f"security.key={keys}/coordinator.key", f"security.cluster_keys={keys}/cluster.keys"]
    with tempfile.TemporaryDirectory() as run_dir:
        subprocess.run([f"{BIN}/ps-launch", "--config", CONFIG, "--servers", "2", "--workers", "2", "--epochs",
                        str(epochs), "--threads", "1", "--run-dir", run_dir] + sum((["--set", s] for s in sets), []),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
        return sum(json.load(open(os.path.join(run_dir, "logs", f"worker-{w}.json")))["samples_per_s"]
                   for w in range(2))


def mmm(values, fmt):
    return " / ".join(fmt % v for v in (min(values), statistics.median(values), max(values)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as keys:
        subprocess.run([f"{BIN}/ps-keys", "--dir", keys, "coordinator"], check=True, stdout=subprocess.DEVNULL)
        off, on = [], []
        for _ in range(args.runs):
            off.append(cluster(args.epochs, None))
            on.append(cluster(args.epochs, keys))
    ratio = [b / a for a, b in zip(off, on)]
    print(f"{args.runs} interleaved runs, {args.epochs} epoch(s) each, 2 servers + 2 workers, 1 thread each\n")
    print("| CURVE off samples/s min / median / max | CURVE on samples/s min / median / max | on / off min / median / max |")
    print("|---|---|---|")
    print(f"| {mmm(off, '%.0f')} | {mmm(on, '%.0f')} | {mmm(ratio, '%.2f')} |")


if __name__ == "__main__":
    main()
