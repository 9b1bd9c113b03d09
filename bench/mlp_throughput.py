#!/usr/bin/python3
"""Training throughput of the MLP 784-500-10 (batch 128, Adam) on
Fashion-MNIST: ps-train against the PyTorch peer (bench/torch_mlp.py), runs
interleaved in the same session, 1 and 2 threads, min/median/max of N runs.
Writes bench/results/mlp_throughput.md and prints it.

Usage: bench/mlp_throughput.py [--runs 3] [--epochs 2]
(scripts/bench.sh installs the peer's packages and builds first.)"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
# Per sample: forward 2P, weight gradients 2P, input gradient of layer 2 only.
FLOP_PER_SAMPLE = 2 * 397000 + 2 * 397000 + 2 * 500 * 10


def ours(threads, epochs):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([os.path.join(ROOT, "build/bin/ps-train"), "--config",
                        os.path.join(ROOT, "configs/fashion_mnist_mlp.yaml"), "--epochs", str(epochs),
                        "--threads", str(threads), "--summary", f.name],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.load(open(f.name))["samples_per_s"]


def peer(threads, epochs):
    env = dict(os.environ, LD_LIBRARY_PATH=OPENBLAS, OPENBLAS_CORETYPE="SkylakeX",
               OMP_NUM_THREADS=str(threads))
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench/torch_mlp.py"), "--threads",
                          str(threads), "--epochs", str(epochs)],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def mmm(xs):
    return min(xs), statistics.median(xs), max(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    rows, blas, torch_version = [], None, None
    for threads in (1, 2):
        a, b = [], []
        for _ in range(args.runs):  # interleaved: both see the same machine state
            a.append(ours(threads, args.epochs))
            p = peer(threads, args.epochs)
            b.append(p["samples_per_s"])
            blas, torch_version = p["blas"], p["torch"]
        ratios = sorted(x / y for x, y in zip(a, b))
        rows.append((threads, mmm(a), mmm(b), mmm(ratios), statistics.median(a) * FLOP_PER_SAMPLE / 1e9))
    lines = [
        "## MLP 784-500-10 training throughput: ps-train vs PyTorch",
        "",
        f"Command: `bench/mlp_throughput.py --runs {args.runs} --epochs {args.epochs}` "
        f"(machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores).",
        f"Batch 128, Adam lr 1e-3, Fashion-MNIST, {args.epochs} epochs per run, samples/s over the "
        "training steps (evaluation excluded), runs of ours and the peer interleaved.",
        f"Peer: Debian python3-torch {torch_version}, same model, optimizer, batch, data order "
        "scheme and thread count; OPENBLAS_CORETYPE=SkylakeX; BLAS loaded: "
        + ", ".join(os.path.basename(x) for x in (blas or [])) + f" (from {OPENBLAS}).",
        "",
        "| threads | ps-train samples/s min / median / max | PyTorch samples/s min / median / max "
        "| ratio min / median / max | ps-train GFLOP/s (median) |",
        "|---|---|---|---|---|",
    ]
    for t, a, b, r, gf in rows:
        lines.append(f"| {t} | {a[0]:,.0f} / {a[1]:,.0f} / {a[2]:,.0f} | {b[0]:,.0f} / {b[1]:,.0f} / "
                     f"{b[2]:,.0f} | {r[0]:.2f}x / {r[1]:.2f}x / {r[2]:.2f}x | {gf:.0f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/mlp_throughput.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
