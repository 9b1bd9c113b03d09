#!/usr/bin/python3
"""The character-level LSTM on Debian's fortunes (configs/fortunes_char_lstm.yaml):
ps-train against the PyTorch peer (bench/torch_char_lstm.py), the same
architecture, window, batch, optimizer and number of steps, one thread each,
runs interleaved. Reports samples/s and validation bits per character at
the same step, min/median/max of N runs, on this CPU's own ISA and, on an
AVX-512 machine, with both sides dispatching as on an AVX2 CPU
(bench/bench_env.py), one table per ISA. Writes bench/results/char_lstm.md.

Usage: bench/char_lstm.py [--runs 3] [--steps 300]
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


def ours(isa, steps, seed):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([os.path.join(ROOT, "build/bin/ps-train"), "--no-run-dir", "--config",
                        os.path.join(ROOT, "configs/fortunes_char_lstm.yaml"), "--epochs", "100", "--threads", "1",
                        "--set", f"training.max_steps={steps}", "--set", f"training.seed={seed}",
                        "--set", f"model.init_seed={seed}", "--summary", f.name],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=bench_env.ours_env(isa))
        s = json.load(open(f.name))
        return s["samples_per_s"], s["validation_bits_per_char"]


def peer(isa, steps, seed):
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench/torch_char_lstm.py"), "--threads", "1",
                          "--steps", str(steps), "--seed", str(seed)], check=True, capture_output=True, text=True,
                         env=bench_env.peer_env(isa, 1)).stdout
    return json.loads(out.strip().splitlines()[-1])


mmm, fmt = bench_env.mmm, bench_env.fmt


def measure(isa, runs, steps):
    """Both sides on one ISA; returns their rates and bits/char, and the peer's last report."""
    return bench_env.measure_pairs(isa, runs, steps, ours, peer)


def group(isa, steps, rate_a, rate_b, bpc_a, bpc_b, info):
    """The lines of one ISA: its table, the speed ratio and the peer's BLAS as it reported it."""
    ratios = sorted(x / y for x, y in zip(rate_a, rate_b))
    return [
        "",
        f"{bench_env.isa_label(isa)}:",
        "",
        "| | psforge min / median / max | PyTorch min / median / max |",
        "|---|---|---|",
        f"| samples/s (64 characters each) | {fmt(mmm(rate_a))} | {fmt(mmm(rate_b))} |",
        f"| validation bits/char after {steps} steps | {fmt(mmm(bpc_a), 3)} | {fmt(mmm(bpc_b), 3)} |",
        "",
        f"Speed ratio psforge / PyTorch min / median / max: {ratios[0]:.2f}x / {statistics.median(ratios):.2f}x / "
        f"{ratios[-1]:.2f}x. Peer BLAS loaded: {', '.join(info['blas'])}; OpenBLAS kernel: "
        f"{info['openblas_core']}.",
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    results = {isa: measure(isa, args.runs, args.steps) for isa in bench_env.ISAS}
    info = results[bench_env.ISAS[0]][-1]  # corpus facts and torch version: the same on every ISA
    lines = [
        "## Character-level LSTM on fortunes: ps-train vs PyTorch",
        "",
        f"Command: `bench/char_lstm.py --runs {args.runs} --steps {args.steps}`. CPU: {bench_env.cpu()}.",
        f"Embedding 32, LSTM 256, linear to the vocabulary ({info['vocabulary']} characters; unigram entropy "
        f"{info['unigram_bits']:.3f} bits/char), windows of 64, batch 64, Adam lr 2e-3, gradient norm clipped "
        f"at 5, {args.steps} steps, one thread each; run k seeds both sides' data order and initial weights "
        f"with k. Peer: Debian python3-torch {info['torch']} "
        f"(torch.nn.LSTM), the same corpus, windows, split and vocabulary; BLAS from {bench_env.OPENBLAS}.",
    ]
    for isa, r in results.items():
        lines += group(isa, args.steps, *r)
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/char_lstm.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
