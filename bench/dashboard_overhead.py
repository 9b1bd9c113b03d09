#!/usr/bin/python3
"""What the dashboard costs a running job: the README's main job (the MLP,
2 servers + 2 workers, 10 epochs) with the dashboard open in headless
Chromium, polling /api/status and /api/timeline every second for the whole
run, against the same job with no page open; interleaved, `--runs` each.
Reports the cluster's samples/s (the coordinator's summary) min/median/max
and the ratio of the medians. Chromium runs on the same 2 cores, so this
measures the page's whole cost on this machine, the browser included.

Usage: bench/dashboard_overhead.py [--runs 3]   (appends to bench/RESULTS.md)
"""
import argparse
import datetime
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
DASHBOARD = re.compile(r"dashboard: (http://\S+/)")


def run(open_page, work, n):
    summary = os.path.join(work, f"summary-{n}.json")
    launch = subprocess.Popen([LAUNCH, "--config", CONFIG, "--summary", summary, "--set", "cluster.http_linger_s=0"],
                              cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    browser = None
    for line in launch.stdout:
        m = DASHBOARD.search(line)
        if m and open_page and browser is None:
            browser = subprocess.Popen(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                                        "--no-first-run", f"--user-data-dir={work}/profile-{n}",
                                        "--remote-debugging-port=0", m.group(1)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    launch.wait()
    if browser is not None:
        browser.terminate()
        browser.wait()
    if launch.returncode != 0:
        sys.exit(f"ps-launch failed ({launch.returncode})")
    if open_page and browser is None:
        sys.exit("no dashboard address in ps-launch's output")
    return json.load(open(summary))["samples_per_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    opened, closed = [], []
    with tempfile.TemporaryDirectory() as work:
        for i in range(args.runs):
            order = [True, False] if i % 2 == 0 else [False, True]
            for open_page in order:
                (opened if open_page else closed).append(run(open_page, work, len(opened) + len(closed)))
    fmt = lambda xs: " / ".join(f"{v:.0f}" for v in (min(xs), statistics.median(xs), max(xs)))
    ratio = statistics.median(opened) / statistics.median(closed)
    lines = ["", f"## The dashboard open during a job: what it costs ({datetime.date.today()})", "",
             f"`bench/dashboard_overhead.py --runs {args.runs}` on {cpu()}: configs/fashion_mnist_mlp.yaml as "
             "shipped (2 servers, 2 workers, 10 epochs), with the dashboard open in headless Chromium (polling "
             "every second) against no page, interleaved. Cluster samples/s from the coordinator's summary; "
             "Chromium shares the 2 cores.", "",
             "| case | samples/s min / median / max |", "|---|---|",
             f"| dashboard open | {fmt(opened)} |", f"| no page | {fmt(closed)} |",
             f"| ratio of the medians (open / closed) | {ratio:.3f} |", ""]
    print("\n".join(lines))
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
