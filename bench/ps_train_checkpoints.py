#!/usr/bin/env python3
"""What ps-train's default checkpoints cost: the README's MLP config for 10
epochs, 1 thread, as shipped (a run directory with a checkpoint every
checkpoint.interval_s and one at the end) against --no-run-dir (none),
interleaved, 5 runs each. Appends a section to bench/RESULTS.md."""
import datetime
import json, os, statistics, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build/bin")
CONFIG = os.path.join(ROOT, "configs/fashion_mnist_mlp.yaml")


def run(extra, work):
    summary = os.path.join(work, "s.json")
    subprocess.run([f"{BIN}/ps-train", "--config", CONFIG, "--threads", "1", "--summary", summary] + extra,
                   check=True, capture_output=True, cwd=work)
    s = json.load(open(summary))
    return s["wall_s"], s["samples_per_s"]


def cpu():
    model, isa = "?", "AVX2"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name") and model == "?":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and " avx512f" in line:
            isa = "AVX-512"
    return f"{model} ({isa}, {os.cpu_count()} cores)"


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    shipped, off = [], []
    with tempfile.TemporaryDirectory() as work:
        for i in range(runs):  # each case first in every other pair
            if i % 2 == 0:
                shipped.append(run([], work))
                off.append(run(["--no-run-dir"], work))
            else:
                off.append(run(["--no-run-dir"], work))
                shipped.append(run([], work))
    ratio = [a[0] / b[0] for a, b in zip(shipped, off)]
    median_ratio = statistics.median([w for w, _ in shipped]) / statistics.median([w for w, _ in off])
    fmt = lambda xs: " / ".join(f"{v:.2f}" for v in (min(xs), statistics.median(xs), max(xs)))
    lines = ["", f"## ps-train's default checkpoints: what they cost ({datetime.date.today()})", "",
             f"`bench/ps_train_checkpoints.py {runs}` on {cpu()}: configs/fashion_mnist_mlp.yaml, 10 epochs,",
             "1 thread, as shipped (run directory, a checkpoint every 10 s and at the end) against",
             "`--no-run-dir`, interleaved. Wall time of training and evaluation (summary's wall_s).", "",
             "| case | wall s min / median / max | samples/s median |", "|---|---|---|",
             f"| as shipped | {fmt([w for w, _ in shipped])} | {statistics.median([r for _, r in shipped]):.0f} |",
             f"| --no-run-dir | {fmt([w for w, _ in off])} | {statistics.median([r for _, r in off]):.0f} |",
             f"| ratio, pairwise | {fmt(ratio)} | |",
             f"| ratio of the medians | {median_ratio:.3f} | |", ""]
    print("\n".join(lines))
    with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
