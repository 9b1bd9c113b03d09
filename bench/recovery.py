#!/usr/bin/python3
"""Recovery time and checkpoint stall of a real cluster on loopback.

Recovery: a job of 1 coordinator, 2 servers and 2 workers (the Fashion-MNIST
MLP, BSP, 900 steps, a checkpoint every 100 steps) is started; once checkpoint 100 (or 200) is
committed one process is SIGKILLed and started again at once, as ps-launch
or ps-supervise would:

  server       time from the kill to every worker training again from the
               rolled-back checkpoint ("from step" in both workers' logs);
  coordinator  likewise (it comes back on its endpoint with --resume; the
               members join it again);
  worker       time from the kill to its replacement taking its place (the
               other worker trains on meanwhile, once the dead one is
               declared dead).

A member silent for cluster.peer_timeout_s is declared dead, or after 4
heartbeats once a restarted one waits for its place (as here). Run with the
defaults (heartbeat 0.5 s, peer timeout 10 s) and with the tests' settings
(0.2 s, 2 s).

Stall: the same job (1 epoch, 469 steps) with a checkpoint every 100 steps
and without checkpoints, runs interleaved; the training time's ratio says
what checkpoints cost.

Usage: bench/recovery.py [--runs 5] [--stall-runs 5]
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin")
CONFIG = os.path.join(ROOT, "configs", "fashion_mnist_mlp.yaml")


class Proc:
    """A child whose output lines are kept with the time they arrived."""

    def __init__(self, argv):
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cv.notify_all()

    def wait_for(self, pattern, timeout=120, after=0.0):
        """(time, match) of the first line after `after` matching `pattern`."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for t, line in self.lines:
                    m = rx.search(line)
                    if m and t >= after:
                        return t, m
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(l for _, l in self.lines[-20:])
                    raise RuntimeError(f"no line matching {pattern!r} from {self.argv[0]}:\n{tail}")
                self.cv.wait(left)

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()


def sets(ckdir, timing, checkpoints=True, max_steps=900):
    heartbeat, peer_timeout = timing
    s = {"training.epochs": 2, "training.max_steps": max_steps, "cluster.workers": 2, "cluster.servers": 2,
         "data.shard_size": 64, "cluster.peer_timeout_s": peer_timeout, "cluster.heartbeat_interval_s": heartbeat}
    if checkpoints:
        s.update({"checkpoint.interval_steps": 100, "checkpoint.dir": ckdir})
    out = []
    for k, v in s.items():
        out += ["--set", f"{k}={v}"]
    return out


def start_job(ckdir, timing, checkpoints=True, max_steps=900):
    coord_argv = [os.path.join(BIN, "ps-coordinator"), "--config", CONFIG, "--no-run-dir"] + \
        sets(ckdir, timing, checkpoints, max_steps)
    coord = Proc(coord_argv)
    _, m = coord.wait_for(r"listening on (\S+)", 60)
    endpoint = m.group(1)
    servers = [Proc([os.path.join(BIN, "ps-server"), "--coordinator", endpoint]) for _ in range(2)]
    workers = [Proc([os.path.join(BIN, "ps-worker"), "--coordinator", endpoint]) for _ in range(2)]
    return coord_argv, endpoint, coord, servers, workers


def finish(procs):
    for p in procs:
        try:
            p.p.wait(timeout=180)
        except subprocess.TimeoutExpired:
            p.kill()


def trial(kind, timing):
    ckdir = tempfile.mkdtemp(prefix="psforge_recovery_")
    try:
        coord_argv, endpoint, coord, servers, workers = start_job(ckdir, timing)
        coord.wait_for(r"checkpoint at step [12]00 committed", 120)
        extra = []
        if kind == "server":
            servers[1].kill()
            killed = time.monotonic()
            servers.append(Proc([os.path.join(BIN, "ps-server"), "--coordinator", endpoint]))
            resumed = max(w.wait_for(r"from step \d+", 120, after=killed)[0] for w in workers)
        elif kind == "coordinator":
            coord.kill()
            killed = time.monotonic()
            coord = Proc(coord_argv + ["--resume", "--bind", endpoint])
            resumed = max(w.wait_for(r"from step \d+", 120, after=killed)[0] for w in workers)
        else:
            workers[1].kill()
            killed = time.monotonic()
            workers.append(Proc([os.path.join(BIN, "ps-worker"), "--coordinator", endpoint]))
            resumed = coord.wait_for(r"worker \d+ joined again", 120, after=killed)[0]
            extra = workers[-1:]
        finish([w for w in workers if w.p.poll() is None] + extra + [coord] + servers)
        return resumed - killed
    finally:
        shutil.rmtree(ckdir, ignore_errors=True)


def training_seconds(checkpoints):
    ckdir = tempfile.mkdtemp(prefix="psforge_stall_")
    try:
        _, _, coord, servers, workers = start_job(ckdir, (0.5, 10), checkpoints, max_steps=469)
        _, m = coord.wait_for(r"final \S+: [0-9.]+ \(\d+ epochs, (\d+) steps, [0-9.]+ samples/s, ([0-9.]+) s\)", 300)
        finish(workers + [coord] + servers)
        return float(m.group(2))
    finally:
        shutil.rmtree(ckdir, ignore_errors=True)


def mmm(xs, fmt="{:.2f}"):
    return " / ".join(fmt.format(x) for x in (min(xs), statistics.median(xs), max(xs)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--stall-runs", type=int, default=5)
    args = ap.parse_args()
    print("| fault | heartbeat / peer timeout (s) | fault to training again (s), min / median / max |")
    print("|---|---|---|")
    for timing in ((0.5, 10), (0.2, 2)):
        for kind in ("server", "coordinator", "worker"):
            times = [trial(kind, timing) for _ in range(args.runs)]
            print(f"| {kind} SIGKILL | {timing[0]} / {timing[1]} | {mmm(times)} |", flush=True)
    with_ck, without = [], []
    for _ in range(args.stall_runs):  # interleaved: the machine's noise hits both alike
        with_ck.append(training_seconds(True))
        without.append(training_seconds(False))
    ratios = [a / b for a, b in zip(with_ck, without)]
    print()
    print("| job (469 steps) | training time (s), min / median / max |")
    print("|---|---|")
    print(f"| a checkpoint every 100 steps | {mmm(with_ck)} |")
    print(f"| no checkpoints | {mmm(without)} |")
    print(f"| ratio, pairwise | {mmm(ratios, '{:.3f}')} |")


if __name__ == "__main__":
    main()
