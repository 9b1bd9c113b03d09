#!/usr/bin/env python3
"""Fine-tuning against training from scratch: configs/fortunes_classify.yaml
started from the newest fortunes_bert run (its default, model.init_from:
fortunes_bert.yaml) and the same job with `--set model.init_from=`, each
through ps-launch (2 servers, 2 workers) for --runs training seeds
(training.seed 1, 2, ...: the shards' order, dropout). Prints test accuracy
min/median/max of each, the difference of medians, and the majority class's
accuracy, for bench/RESULTS.md. Pre-trains first (ps-launch on
configs/fortunes_bert.yaml, its default run) unless runs/ already has a
finished fortunes_bert run and --pretrain is not given.

    bench/fine_tune.py [--runs 3] [--pretrain]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "build", "bin", "ps-launch")


def finished_bert_run():
    runs = os.path.join(ROOT, "runs")
    if not os.path.isdir(runs):
        return None
    for name in sorted(os.listdir(runs), reverse=True):
        if name.startswith("fortunes_bert-") and os.path.exists(os.path.join(runs, name, "summary.json")):
            return os.path.join(runs, name)
    return None


def launch(config, sets, summary):
    argv = [LAUNCH, "--config", os.path.join(ROOT, "configs", config), "--summary", summary]
    for s in sets:
        argv += ["--set", s]
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(summary) as f:
        return json.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--pretrain", action="store_true", help="pre-train even if a finished run exists")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.pretrain or finished_bert_run() is None:
            bert = launch("fortunes_bert.yaml", [], os.path.join(tmp, "bert.json"))
            print(f"pre-trained: masked_accuracy {bert['masked_accuracy']:.4f}, "
                  f"masked_bits_per_char {bert['masked_bits_per_char']:.4f}, {bert['wall_s']:.0f} s", flush=True)
        print(f"fine-tuning from {finished_bert_run()}", flush=True)
        tuned, scratch, majority = [], [], None
        for seed in range(1, args.runs + 1):
            for sets, out in (([], tuned), (["model.init_from="], scratch)):
                s = launch("fortunes_classify.yaml", sets + [f"training.seed={seed}"], os.path.join(tmp, "c.json"))
                out.append(s["test_accuracy"])
                majority = s["majority_accuracy"]
                print(f"seed {seed} {'from scratch' if sets else 'fine-tuned  '}: test_accuracy "
                      f"{s['test_accuracy']:.4f} ({s['wall_s']:.0f} s)", flush=True)
    (tmin, tmed, tmax), (smin, smed, smax) = bench_env.mmm(tuned), bench_env.mmm(scratch)
    print(f"\n{bench_env.cpu()}")
    print("| | test_accuracy min / median / max |")
    print("|---|---|")
    print(f"| fine-tuned (init_from the fortunes_bert run) | {tmin:.3f} / {tmed:.3f} / {tmax:.3f} |")
    print(f"| from scratch (model.init_from=) | {smin:.3f} / {smed:.3f} / {smax:.3f} |")
    print(f"| majority class | {majority:.3f} |")
    print(f"\nfine-tuned - from scratch (medians): {100 * (tmed - smed):+.1f} points")


if __name__ == "__main__":
    main()
