#!/usr/bin/python3
"""configs/ctr_synthetic.yaml (a CTR model, one 2^24-row table of dim 16
shared by 26 fields, MLP 429-256-128-1, batch 512, one epoch of 1 M
synthetic impressions) through psforge's 1 worker + 1 server and through
2 workers + 2 servers, against the PyTorch peer in one process
(bench/torch_ctr.py: nn.EmbeddingBag(mode="sum", sparse=True) with Adagrad,
the MLP with Adam), on 1 and 2 threads, runs interleaved, min/median/max of
N. Reports samples/s (training steps only) and the test AUC of each, next to
the planted model's. Writes bench/results/ctr_throughput.md and prints it.

Usage: bench/ctr_throughput.py [--runs 3]   (writes data/ctr with ps-ctr-data first if it is missing)"""
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
CONFIG = os.path.join(ROOT, "configs/ctr_synthetic.yaml")
DATA = os.path.join(ROOT, "data/ctr")


def ps_train(threads):
    """ps-train: the model and its tables in one process."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([f"{BIN}/ps-train", "--config", CONFIG, "--no-run-dir", "--threads", str(threads),
                        "--summary", f.name], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=1800)
        s = json.load(open(f.name))
        return {"samples_per_s": s["samples_per_s"], "test_auc": s["test_auc"], "test_logloss": s["test_logloss"]}


def ours(servers, workers, sets=(), threads=1):
    """ps-launch: the workers' own rates summed (training steps, evaluation excluded), and the job's AUC."""
    with tempfile.TemporaryDirectory() as run_dir:
        subprocess.run([f"{BIN}/ps-launch", "--config", CONFIG, "--servers", str(servers), "--workers", str(workers),
                        "--threads", str(threads), "--run-dir", run_dir, "--set", "checkpoint.interval_s=0"] +
                       sum((["--set", s] for s in sets), []),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
        rate = sum(json.load(open(os.path.join(run_dir, "logs", f"worker-{w}.json")))["samples_per_s"]
                   for w in range(workers))
        summary = json.load(open(os.path.join(run_dir, "summary.json")))
        return {"samples_per_s": rate, "test_auc": summary["test_auc"], "test_logloss": summary["test_logloss"]}


def peer(threads):
    out = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench/torch_ctr.py"), "--train",
                          os.path.join(DATA, "train.tsv"), "--test", os.path.join(DATA, "test.tsv"),
                          "--threads", str(threads)],
                         check=True, capture_output=True, text=True, env=bench_env.peer_env("native", threads)).stdout
    return json.loads(out.strip().splitlines()[-1])


def mmm(xs):
    return min(xs), statistics.median(xs), max(xs)


def fmt(t, digits=0):
    return " / ".join(f"{v:,.{digits}f}" for v in t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not os.path.exists(os.path.join(DATA, "planted.json")):
        subprocess.run([f"{BIN}/ps-ctr-data", DATA], check=True)
    planted = json.load(open(os.path.join(DATA, "planted.json")))
    cases = {"psforge 1 worker + 1 server (BSP)": lambda: ours(1, 1),
             "psforge 1 worker + 1 server (SSP, staleness 1)": lambda: ours(
                 1, 1, ["cluster.consistency=ssp", "cluster.staleness=1"]),
             "psforge 1 worker, 2 threads + 1 server (BSP)": lambda: ours(1, 1, threads=2),
             "psforge 1 worker, 2 threads + 1 server (SSP, staleness 1)": lambda: ours(
                 1, 1, ["cluster.consistency=ssp", "cluster.staleness=1"], threads=2),
             "psforge 2 workers + 2 servers (BSP)": lambda: ours(2, 2),
             "ps-train (one process), 1 thread": lambda: ps_train(1),
             "ps-train (one process), 2 threads": lambda: ps_train(2),
             "PyTorch, 1 thread": lambda: peer(1),
             "PyTorch, 2 threads": lambda: peer(2)}
    results = {name: [] for name in cases}
    peer_info = None
    for _ in range(args.runs):  # interleaved: every case sees the same machine state
        for name, run in cases.items():
            r = run()
            results[name].append(r)
            if "torch" in r:
                peer_info = r
    base = results["PyTorch, 2 threads"]
    lines = [
        "## CTR model (configs/ctr_synthetic.yaml): psforge vs PyTorch's EmbeddingBag",
        "",
        f"Command: `bench/ctr_throughput.py --runs {args.runs}`. CPU: {bench_env.cpu()}.",
        "Data: `ps-ctr-data data/ctr` (1 M training, 100 k test impressions, 26 fields of 1 M Zipf(1.05) values, "
        f"planted model's test AUC {planted['planted_auc']:.4f}, log loss {planted['planted_logloss']:.4f}). "
        "Model: one table of 2^24 rows, dim 16, shared by the 26 fields (sum-pooled per field), MLP "
        "429-256-128-1, batch 512, one epoch; tables AdaGrad lr 0.05 (ours row-wise, the peer's element-wise), "
        "MLP Adam lr 1e-3. psforge: ps-launch, shared memory, training.threads 1 per worker unless the case "
        "says 2 (the server waits while the worker computes, so in BSP its core is the worker's second thread's; "
        "a server process per server), checkpoints off; samples/s is the workers' own over the training steps "
        "(evaluation excluded), summed; SSP staleness 1 lets the worker compute step t+1 while the server "
        "applies step t (weights at most one step old). ps-train: the same model with its tables in one process. "
        f"Peer: Debian python3-torch {peer_info['torch']} in one process, BLAS {', '.join(peer_info['blas'])}, "
        f"OpenBLAS kernel {peer_info['openblas_core']}; samples/s over its training steps.",
        "",
        "| case | samples/s min / median / max | vs PyTorch 2 threads min / median / max | test AUC min / median / max "
        "| test log loss median |",
        "|---|---|---|---|---|",
    ]
    for name, rs in results.items():
        rates = [r["samples_per_s"] for r in rs]
        ratios = sorted(r["samples_per_s"] / b["samples_per_s"] for r, b in zip(rs, base))
        aucs = [r["test_auc"] for r in rs]
        lines.append(f"| {name} | {fmt(mmm(rates))} | {fmt(mmm(ratios), 2)} | {fmt(mmm(aucs), 4)} | "
                     f"{statistics.median(r['test_logloss'] for r in rs):.4f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/ctr_throughput.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
