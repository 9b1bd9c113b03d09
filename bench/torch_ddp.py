#!/usr/bin/python3
"""PyTorch DDP peer: W processes x 1 thread, gloo on loopback, global batch
128 split evenly (each rank takes its share of every global batch of one
shared permutation, as ps-worker does), Adam lr 1e-3. Prints one JSON line
from rank 0: cluster samples/s over the training steps, test accuracy.

--rank R --addr A --port P runs only rank R, meeting the others at A:P (a
rank per network namespace, bench/netns_throughput.py); without them every
rank is spawned here, on loopback."""
import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_common  # noqa: E402


class Printer:
    """The result queue of a rank run on its own: prints what it is given."""

    @staticmethod
    def put(result):
        print(json.dumps(result), flush=True)


def run(rank, world, port, epochs, batch, out, addr="127.0.0.1"):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://{addr}:{port}", rank=rank, world_size=world)
    x, y, xt, yt = torch_common.fashion_mnist()
    torch.manual_seed(1)
    model = torch.nn.parallel.DistributedDataParallel(torch_common.mlp())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, share = x.shape[0], batch // world
    g = torch.Generator().manual_seed(1)
    train_s, samples = 0.0, 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        dist.barrier()
        start = time.perf_counter()
        for b in range(0, n - batch + 1, batch):
            i = perm[b + rank * share:b + (rank + 1) * share]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[i]), y[i]).backward()
            opt.step()
            samples += batch
        train_s += time.perf_counter() - start
    if rank == 0:
        with torch.no_grad():
            acc = (model(xt).argmax(1) == yt).float().mean().item()
        out.put({"samples_per_s": samples / train_s, "test_accuracy": acc, "workers": world})
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rank", type=int, help="run this rank only (with --addr and --port)")
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    if args.rank is not None:
        run(args.rank, args.workers, args.port, args.epochs, args.batch, Printer(), args.addr)
        return
    [result] = torch_common.spawn(run, args.workers, args.epochs, args.batch)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
