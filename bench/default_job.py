#!/usr/bin/python3
"""The README's first command, as shipped, for training.seed 1 to 5.

For each seed, interleaved: the default job (checkpoints every 10 s and at
the end, into the run directory), the same job with checkpoints off
(checkpoint.interval_s=0), and the same job with a constant learning rate
(optimizer.lr_schedule=constant, the config before the cosine schedule).
Records each run's final test accuracy and wall time (the coordinator's
"final test_accuracy: ... (N s)", first member joined to the end), and
reports what the default checkpoints cost: the ratio of the default run's
wall time to the checkpoint-free one's, min/median/max over the seeds.

Usage: bench/default_job.py [--seeds 5] [--out bench/results/default_job.json]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_env import cpu  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "build", "bin", "ps-launch")
CONFIG = os.path.join(ROOT, "configs", "fashion_mnist_mlp.yaml")
FINAL = re.compile(r"final test_accuracy: ([0-9.]+) \((\d+) epochs, (\d+) steps, [0-9.]+ samples/s, ([0-9.]+) s\)")
COMMITTED = re.compile(r"checkpoint at step (\d+) committed")


def run(seed, sets, work):
    argv = [LAUNCH, "--config", CONFIG, "--set", f"training.seed={seed}"]
    for s in sets:
        argv += ["--set", s]
    p = subprocess.run(argv, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    m = FINAL.search(p.stdout)
    if p.returncode != 0 or not m:
        sys.exit(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout[-3000:]}")
    return {"accuracy": float(m.group(1)), "steps": int(m.group(3)), "wall_s": float(m.group(4)),
            "checkpoints": len(COMMITTED.findall(p.stdout))}


def mmm(xs):
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "default_job.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for seed in range(1, args.seeds + 1):
            row = {"seed": seed,
                   "default": run(seed, [], work),
                   "no_checkpoints": run(seed, ["checkpoint.interval_s=0"], work),
                   "constant_lr": run(seed, ["optimizer.lr_schedule=constant", "checkpoint.interval_s=0"], work)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    ratio = [r["default"]["wall_s"] / r["no_checkpoints"]["wall_s"] for r in rows]
    result = {"cpu": cpu(), "command": "bench/default_job.py --seeds %d" % args.seeds, "runs": rows,
              "accuracy_default": mmm([r["default"]["accuracy"] for r in rows]),
              "accuracy_constant_lr": mmm([r["constant_lr"]["accuracy"] for r in rows]),
              "checkpoint_cost_ratio": mmm(ratio)}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
