#!/usr/bin/python3
"""Training throughput of the MLP 784-500-10 (batch 128, Adam) on
Fashion-MNIST: ps-train against the PyTorch peer (bench/torch_mlp.py), runs
interleaved in the same session, 1 and 2 threads, min/median/max of N runs,
on this CPU's own ISA and, on an AVX-512 machine, with both sides
dispatching as on an AVX2 CPU (bench/bench_env.py). Writes
bench/results/mlp_throughput.md and prints it.

Usage: bench/mlp_throughput.py [--runs 3] [--epochs 2]
(scripts/bench.sh installs the peer's packages and builds first.)"""
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
# Per sample: forward 2P, weight gradients 2P, input gradient of layer 2 only.
FLOP_PER_SAMPLE = 2 * 397000 + 2 * 397000 + 2 * 500 * 10


def ours(isa, threads, epochs):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([os.path.join(ROOT, "build/bin/ps-train"), "--no-run-dir", "--config",
                        os.path.join(ROOT, "configs/fashion_mnist_mlp.yaml"), "--epochs", str(epochs),
                        "--threads", str(threads), "--summary", f.name],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=bench_env.ours_env(isa))
        return json.load(open(f.name))["samples_per_s"]


def peer(isa, threads, epochs):
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench/torch_mlp.py"), "--threads",
                          str(threads), "--epochs", str(epochs)],
                         check=True, capture_output=True, text=True, env=bench_env.peer_env(isa, threads)).stdout
    return json.loads(out.strip().splitlines()[-1])


def minimal(isa, threads):
    """The hand-written oneDNN step of the same model (bench/mlp_min_step.cc): the floor."""
    out = subprocess.run([os.path.join(ROOT, "build/bin/mlp_min_step"), "--threads", str(threads)],
                         check=True, capture_output=True, text=True, env=bench_env.ours_env(isa)).stdout
    return json.loads(out.strip().splitlines()[-1])


def mmm(xs):
    return min(xs), statistics.median(xs), max(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    rows, peer_info = [], {}  # peer_info: the peer's last report per ISA (libraries, OpenBLAS kernel)
    for isa in bench_env.ISAS:
        for threads in (1, 2):
            a, b, m = [], [], []
            for _ in range(args.runs):  # interleaved: all three see the same machine state
                a.append(ours(isa, threads, args.epochs))
                p = peer(isa, threads, args.epochs)
                b.append(p["samples_per_s"])
                peer_info[isa] = p
                m.append(minimal(isa, threads)["samples_per_s"])
            ratios = sorted(x / y for x, y in zip(a, b))
            floor = sorted(x / y for x, y in zip(a, m))
            rows.append((isa, threads, mmm(a), mmm(b), mmm(ratios), statistics.median(a) * FLOP_PER_SAMPLE / 1e9,
                         mmm(m), mmm(floor), statistics.median(m) * FLOP_PER_SAMPLE / 1e9))
    torch_version = next(iter(peer_info.values()))["torch"]
    lines = [
        "## MLP 784-500-10 training throughput: ps-train vs PyTorch",
        "",
        f"Command: `bench/mlp_throughput.py --runs {args.runs} --epochs {args.epochs}`. CPU: {bench_env.cpu()}.",
        f"Batch 128, Adam lr 1e-3, Fashion-MNIST, {args.epochs} epochs per run, samples/s over the "
        "training steps (evaluation excluded), runs of ours and the peer interleaved. The minimal oneDNN "
        "step (bench/mlp_min_step.cc: the same model's inner products, ReLU, log-softmax and Adam written out "
        "by hand on one fixed batch, median of 300 steps) is the floor; GFLOP/s counts 1.59 MFLOP a sample.",
        f"Peer: Debian python3-torch {torch_version}, same model, optimizer, batch, data order "
        f"scheme and thread count, BLAS from {bench_env.OPENBLAS}.",
        "",
        "| dispatch | threads | ps-train samples/s min / median / max | PyTorch samples/s min / median / max "
        "| ratio min / median / max | ps-train GFLOP/s (median) | minimal oneDNN step samples/s min / median / max "
        "(GFLOP/s) | ps-train / minimal min / median / max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for isa, t, a, b, r, gf, m, fl, mgf in rows:
        lines.append(f"| {bench_env.isa_label(isa)} | {t} | {a[0]:,.0f} / {a[1]:,.0f} / {a[2]:,.0f} | "
                     f"{b[0]:,.0f} / {b[1]:,.0f} / {b[2]:,.0f} | {r[0]:.2f}x / {r[1]:.2f}x / {r[2]:.2f}x | "
                     f"{gf:.0f} | {m[0]:,.0f} / {m[1]:,.0f} / {m[2]:,.0f} ({mgf:.0f}) | "
                     f"{fl[0]:.2f} / {fl[1]:.2f} / {fl[2]:.2f} |")
    lines.append("")
    # What the peer reported, not what we asked for: OpenBLAS may pick another kernel.
    for isa, p in peer_info.items():
        lines.append(f"Peer ({isa}): BLAS loaded: {', '.join(p['blas'])}; OpenBLAS kernel: {p['openblas_core']}.")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/mlp_throughput.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
