#!/usr/bin/python3
"""Training throughput of the Fashion-MNIST CNN (configs/fashion_mnist_cnn.yaml:
two 3x3 convolutions with batchnorm and pooling, batch 128, Adam, one
thread): ps-train against the PyTorch peer (bench/torch_cnn.py), runs
interleaved in the same session, min/median/max of N runs, on this CPU's own
ISA and, on an AVX-512 machine, with both sides dispatching as on an AVX2
CPU (bench/bench_env.py). Writes bench/results/cnn_throughput.md and prints it.

Usage: bench/cnn_throughput.py [--runs 3] [--steps 200]"""
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


def ours(isa, steps, seed):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([os.path.join(ROOT, "build/bin/ps-train"), "--no-run-dir", "--config",
                        os.path.join(ROOT, "configs/fashion_mnist_cnn.yaml"), "--threads", "1",
                        "--set", f"training.max_steps={steps}", "--set", f"training.seed={seed}",
                        "--summary", f.name],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=bench_env.ours_env(isa))
        return json.load(open(f.name))


def peer(isa, steps, seed):
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench/torch_cnn.py"), "--threads", "1",
                          "--steps", str(steps), "--seed", str(seed)],
                         check=True, capture_output=True, text=True, env=bench_env.peer_env(isa, 1)).stdout
    return json.loads(out.strip().splitlines()[-1])


def mmm(xs):
    return min(xs), statistics.median(xs), max(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    lines = [
        "## Fashion-MNIST CNN training throughput: ps-train vs PyTorch",
        "",
        f"Command: `bench/cnn_throughput.py --runs {args.runs} --steps {args.steps}`. CPU: {bench_env.cpu()}.",
        f"configs/fashion_mnist_cnn.yaml (421,834 parameters), batch 128, Adam lr 1e-3, one thread, "
        f"{args.steps} training steps per run (PyTorch: after 10 warm-up steps), samples/s over the steps "
        "(evaluation excluded), runs of ours and the peer interleaved; run k seeds both sides with k.",
        "",
        "| dispatch | ps-train samples/s min / median / max | PyTorch samples/s min / median / max "
        "| ratio min / median / max |",
        "|---|---|---|---|",
    ]
    peer_info = None
    for isa in bench_env.ISAS:
        a, b = [], []
        for run in range(1, args.runs + 1):
            a.append(ours(isa, args.steps, run)["samples_per_s"])
            p = peer(isa, args.steps, run)
            b.append(p["samples_per_s"])
            peer_info = peer_info or {}
            peer_info[isa] = p
        r = sorted(x / y for x, y in zip(a, b))
        a, b, r = mmm(a), mmm(b), mmm(r)
        lines.append(f"| {bench_env.isa_label(isa)} | {a[0]:,.0f} / {a[1]:,.0f} / {a[2]:,.0f} | {b[0]:,.0f} / "
                     f"{b[1]:,.0f} / {b[2]:,.0f} | {r[0]:.2f}x / {r[1]:.2f}x / {r[2]:.2f}x |")
    lines.append("")
    for isa, p in (peer_info or {}).items():
        lines.append(f"Peer ({isa}): Debian python3-torch {p['torch']}, oneDNN convolutions "
                     f"(mkldnn available: {p['mkldnn']}); BLAS loaded: {', '.join(p['blas'])}; "
                     f"OpenBLAS kernel: {p['openblas_core']}.")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/cnn_throughput.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
