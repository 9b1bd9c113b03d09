#!/usr/bin/python3
"""Sparse tables bigger than the servers' memory: a CTR model whose table
rows take several times the servers' total cluster.memory_budget_mb, through
ps-launch (2 servers, 2 workers, BSP, checkpoints off), against the same job
with every row in memory, runs interleaved, min/median/max of N.

Data: `ps-ctr-data data/ctr_big_<rows>` with (nearly) every categorical value
distinct (1e9 values a field, Zipf 0.5), so that each impression creates
about 26 new rows of a dim-64 AdaGrad table (65 floats a row). Reports
samples/s (the workers' own, summed), rows created, rows on disk, the
servers' peak resident memory (getrusage, from their stats at exit) against
the budget, and the test AUC (both jobs must agree bit for bit: the budget
changes where rows live, not their values).

Usage: bench/ctr_spill.py [--runs 3] [--train-rows 1300000] [--budget-mb 1024]"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build/bin")

CONFIG = """model:
  kind: ctr
  hidden: [256, 128]
  tables:
    - {{name: features, rows: 68719476736, dim: 64, optimizer: adagrad, learning_rate: 0.05}}
data:
  format: criteo
  train_tsv: {data}/train.tsv
  test_tsv: {data}/test.tsv
optimizer: {{kind: adam, learning_rate: 0.001}}
training: {{epochs: 1, batch_size: 512, threads: 1}}
cluster: {{servers: 2, workers: 2}}
checkpoint: {{interval_s: 0}}
"""


def server_stats(run_dir, i):
    text = open(os.path.join(run_dir, "logs", f"server-{i}.log")).read()
    m = re.findall(r"stopped; stats (\{.*\})", text)
    if not m:
        raise RuntimeError(f"server {i} printed no stats:\n{text[-2000:]}")
    return json.loads(m[-1])


def job(config, budget_mb, spill_parent):
    with tempfile.TemporaryDirectory(dir=spill_parent) as run_dir:
        sets = ["--set", f"cluster.memory_budget_mb={budget_mb}"]
        start = time.time()
        subprocess.run([f"{BIN}/ps-launch", "--config", config, "--run-dir", run_dir] + sets, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=7200)
        wall = time.time() - start
        rate = sum(json.load(open(os.path.join(run_dir, "logs", f"worker-{w}.json")))["samples_per_s"]
                   for w in range(2))
        summary = json.load(open(os.path.join(run_dir, "summary.json")))
        stats = [server_stats(run_dir, i) for i in range(2)]
        return {"samples_per_s": rate, "wall_s": wall, "test_auc": summary["test_auc"],
                "rows": sum(s["table_rows_created"] for s in stats),
                "resident": sum(s["table_rows_resident"] for s in stats),
                "disk_gb": sum(s.get("spill_disk_bytes", 0) for s in stats) / 1e9,
                "evicted": sum(s.get("table_rows_evicted", 0) for s in stats),
                "read_back": sum(s.get("table_rows_read_back", 0) for s in stats),
                "peak_rss_mb": max(s["peak_rss_mb"] for s in stats)}


def mmm(xs):
    return min(xs), statistics.median(xs), max(xs)


def fmt(t, digits=0):
    return " / ".join(f"{v:,.{digits}f}" for v in t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--train-rows", type=int, default=1300000)
    ap.add_argument("--budget-mb", type=int, default=1024, help="per server")
    args = ap.parse_args()
    global DATA
    DATA = os.path.join(ROOT, f"data/ctr_big_{args.train_rows}")
    if not os.path.exists(os.path.join(DATA, "planted.json")):
        subprocess.run([f"{BIN}/ps-ctr-data", DATA, "--train-rows", str(args.train_rows), "--test-rows", "50000",
                        "--ids-per-field", "1000000000", "--zipf", "0.5"], check=True)
    os.makedirs(os.path.join(ROOT, "runs"), exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(CONFIG.format(data=DATA))
        config = f.name
    cases = {"every row in memory": 0, f"memory_budget_mb {args.budget_mb} a server": args.budget_mb}
    results = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, budget in cases.items():
            r = job(config, budget, os.path.join(ROOT, "runs"))
            print(name, r, flush=True)
            results[name].append(r)
    os.unlink(config)
    base = results["every row in memory"]
    budget_total = 2 * args.budget_mb
    row_bytes = (65 * 4 + 4)
    lines = [
        "## Sparse tables bigger than the servers' memory (cluster.memory_budget_mb)",
        "",
        f"Command: `bench/ctr_spill.py --runs {args.runs} --train-rows {args.train_rows} --budget-mb "
        f"{args.budget_mb}`. CPU: {bench_env.cpu()}.",
        f"Data: `ps-ctr-data data/ctr_big_{args.train_rows} --train-rows {args.train_rows} --test-rows 50000 --ids-per-field "
        "1000000000 --zipf 0.5` (nearly every categorical value distinct). Model: one table of 2^36 rows, dim 64, "
        "AdaGrad (a record of 65 floats + its update count, "
        f"{row_bytes} bytes), MLP 1677-256-128-1, batch 512, one epoch; ps-launch, 2 servers, 2 workers, BSP, "
        "training.threads 1, checkpoints off. samples/s: the workers' own over their training steps, summed. "
        "Rows: created by the servers (training and test set); peak RSS: the larger of the two servers' "
        "(getrusage at exit); disk: the spill stores' live files at the end.",
        "",
        "| case | samples/s min / median / max | vs in memory (median) | rows created | rows' records "
        "| in memory at the end | on disk (GB) | peak RSS a server (MB) | test AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in results.items():
        rates = [r["samples_per_s"] for r in rs]
        ratio = statistics.median(r["samples_per_s"] / b["samples_per_s"] for r, b in zip(rs, base))
        rows = statistics.median(r["rows"] for r in rs)
        lines.append(
            f"| {name} | {fmt(mmm(rates))} | {ratio:.2f} | {rows:,.0f} | {rows * row_bytes / 1e9:.1f} GB "
            f"({rows * row_bytes / (budget_total * 2**20):.1f}x the total budget) | "
            f"{statistics.median(r['resident'] for r in rs):,.0f} | "
            f"{statistics.median(r['disk_gb'] for r in rs):.1f} | "
            f"{fmt(mmm([r['peak_rss_mb'] for r in rs]))} | {statistics.median(r['test_auc'] for r in rs):.4f} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/ctr_spill.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
