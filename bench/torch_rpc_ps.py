#!/usr/bin/python3
"""PyTorch torch.distributed.rpc parameter-server peer: rank 0 holds the MLP
and applies Adam to every pushed gradient (as it arrives, under a lock);
T trainer processes (1 thread each) loop: fetch the weights by RPC, forward
and backward on their batch (128 / T), push the gradients by RPC. Prints one
JSON line: samples/s over all trainers, test accuracy.

--rank R --addr A --port P runs only rank R (0: the server), meeting the
others at A:P (a rank per network namespace, bench/netns_throughput.py); a
trainer run so prints its own samples/s. Without them every rank is
spawned here, on loopback."""
import argparse
import json
import os
import sys
import threading
import time

import torch
import torch.distributed.rpc as rpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_common  # noqa: E402


class ParameterServer:
    def __init__(self):
        torch.manual_seed(1)
        self.model = torch_common.mlp()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.lock = threading.Lock()

    def weights(self):
        with self.lock:
            return [p.detach().clone() for p in self.model.parameters()]

    def push(self, grads):
        with self.lock:
            for p, g in zip(self.model.parameters(), grads):
                p.grad = g
            self.opt.step()


_ps = None


def get_weights():
    return _ps.weights()


def push(grads):
    _ps.push(grads)


class Results(list):
    """The result queue of a rank run on its own."""

    def put(self, result):
        self.append(result)


def run(rank, world, port, epochs, batch, out, addr="127.0.0.1"):
    global _ps
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = addr, str(port)
    opts = rpc.TensorPipeRpcBackendOptions(num_worker_threads=8, rpc_timeout=600, init_method=f"tcp://{addr}:{port}")
    if rank == 0:
        _ps = ParameterServer()
        rpc.init_rpc("ps", rank=0, world_size=world, rpc_backend_options=opts)
        rpc.shutdown()
        return
    rpc.init_rpc(f"trainer{rank}", rank=rank, world_size=world, rpc_backend_options=opts)
    trainers = world - 1
    x, y, xt, yt = torch_common.fashion_mnist()
    model = torch_common.mlp()
    loss_fn = torch.nn.CrossEntropyLoss()
    share = batch // trainers
    g = torch.Generator().manual_seed(1)
    samples, start = 0, time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for b in range(0, x.shape[0] - batch + 1, batch):
            i = perm[b + (rank - 1) * share:b + rank * share]
            for p, w in zip(model.parameters(), rpc.rpc_sync("ps", get_weights)):
                p.data = w
            model.zero_grad(set_to_none=True)
            loss_fn(model(x[i]), y[i]).backward()
            rpc.rpc_sync("ps", push, args=([p.grad for p in model.parameters()],))
            samples += share
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    out.put({"rank": rank, "samples": samples, "elapsed": elapsed, "test_accuracy": acc})
    rpc.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trainers", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rank", type=int, help="run this rank only (with --addr and --port)")
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    if args.rank is not None:
        results = Results()
        run(args.rank, args.trainers + 1, args.port, args.epochs, args.batch, results, args.addr)
        for r in results:
            print(json.dumps({"samples_per_s": r["samples"] / r["elapsed"], "trainers": args.trainers,
                              "test_accuracy": r["test_accuracy"]}), flush=True)
        return
    results = torch_common.spawn(run, args.trainers + 1, args.epochs, args.batch)
    samples = sum(r["samples"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    print(json.dumps({"samples_per_s": samples / elapsed, "trainers": args.trainers,
                      "test_accuracy": results[0]["test_accuracy"]}))


if __name__ == "__main__":
    main()
