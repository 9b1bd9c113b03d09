#!/usr/bin/env python3
"""The wire type of dense gradients and weights (cluster.wire_dtype): f32, bf16 and fp16 through the same local
cluster, runs interleaved (f32, bf16, fp16, f32, ...): each worker's samples/s, the payload bytes it pushed and
pulled (its summary's counters) and the job's test accuracy, for the MLP and the CNN on Fashion-MNIST, with
`cluster.shared_memory=false` (payloads in ZeroMQ frames, as between hosts) and with shared memory (the default on
one host). The accuracy is after the same epochs for every type; ratios are of the medians against f32.
Writes bench/results/wire_dtype.md and prints it.

Usage: bench/wire_dtype.py [--runs 3] [--cnn-epochs 2]"""
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
TYPES = ("f32", "bf16", "fp16")


def run(config, dtype, shared_memory, epochs):
    with tempfile.TemporaryDirectory() as run_dir:
        cmd = [f"{BIN}/ps-launch", "--config", os.path.join(ROOT, config), "--run-dir", run_dir,
               "--set", f"cluster.wire_dtype={dtype}", "--set", f"cluster.shared_memory={str(shared_memory).lower()}",
               "--set", "checkpoint.interval_s=0"]
        if epochs:
            cmd += ["--epochs", str(epochs)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600,
                       env=bench_env.ours_env())
        summary = json.load(open(os.path.join(run_dir, "summary.json")))
        workers = [json.load(open(os.path.join(run_dir, "logs", f)))
                   for f in sorted(os.listdir(os.path.join(run_dir, "logs"))) if f.startswith("worker-") and
                   f.endswith(".json")]
        return {"samples_per_s": sum(w["samples_per_s"] for w in workers),
                "bytes_pushed": sum(w["bytes_pushed"] for w in workers),
                "bytes_pulled": sum(w["bytes_pulled"] for w in workers),
                "accuracy": summary["test_accuracy"]}


def mmm(xs, fmt):
    xs = sorted(xs)
    return " / ".join(fmt(x) for x in (xs[0], statistics.median(xs), xs[-1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cnn-epochs", type=int, default=2)
    args = ap.parse_args()
    cases = [("MLP 784-500-10 (configs/fashion_mnist_mlp.yaml, 10 epochs)", "configs/fashion_mnist_mlp.yaml", None),
             (f"CNN (configs/fashion_mnist_cnn.yaml, {args.cnn_epochs} epochs)", "configs/fashion_mnist_cnn.yaml",
              args.cnn_epochs)]
    lines = ["## The wire type of dense gradients and weights (cluster.wire_dtype)", "",
             f"Command: `bench/wire_dtype.py --runs {args.runs} --cnn-epochs {args.cnn_epochs}`. CPU: {bench_env.cpu()}.",
             "ps-launch with the config's cluster (2 servers, 2 workers, 1 thread each), checkpoints off; samples/s "
             "is the workers' own summed; bytes are the workers' payload counters summed (their summaries); the "
             "types' runs interleaved. Min / median / max of the runs; ratios are of medians against f32 in the "
             "same transport.", ""]
    for title, config, epochs in cases:
        for shared in (False, True):
            results = {t: [] for t in TYPES}
            for _ in range(args.runs):
                for t in TYPES:
                    results[t].append(run(config, t, shared, epochs))
            lines += [f"{title}, {'shared memory' if shared else 'ZeroMQ frames (cluster.shared_memory=false)'}:", "",
                      "| wire | samples/s | vs f32 | bytes pushed | bytes pulled | test accuracy |",
                      "|---|---|---|---|---|---|"]
            base = statistics.median(r["samples_per_s"] for r in results["f32"])
            base_push = statistics.median(r["bytes_pushed"] for r in results["f32"])
            base_pull = statistics.median(r["bytes_pulled"] for r in results["f32"])
            for t in TYPES:
                rs = results[t]
                rate = statistics.median(r["samples_per_s"] for r in rs)
                push = statistics.median(r["bytes_pushed"] for r in rs)
                pull = statistics.median(r["bytes_pulled"] for r in rs)
                lines.append(f"| {t} | {mmm([r['samples_per_s'] for r in rs], lambda x: f'{x:,.0f}')} | "
                             f"{rate / base:.2f} | {push / 1e9:.2f} GB ({push / base_push:.2f}) | "
                             f"{pull / 1e9:.2f} GB ({pull / base_pull:.2f}) | "
                             f"{mmm([r['accuracy'] for r in rs], lambda x: f'{x:.4f}')} |")
            lines.append("")
    text = "\n".join(lines)
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/wire_dtype.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
