"""Shared by the PyTorch peers: Fashion-MNIST in memory (standardised, as
ps-train's config), the MLP 784-500-10, and a free loopback port."""
import gzip
import os
import socket

import numpy as np
import torch

DATA = "/usr/share/datasets/fashion-mnist/"


def _idx(path, offset):
    with gzip.open(DATA + path) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def fashion_mnist():
    x = torch.from_numpy(_idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255)
    y = torch.from_numpy(_idx("train-labels-idx1-ubyte.gz", 8).astype(np.int64))
    xt = torch.from_numpy(_idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255)
    yt = torch.from_numpy(_idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64))
    mean, std = x.mean(), x.std()
    return (x - mean) / std, y, (xt - mean) / std, yt


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(784, 500), torch.nn.ReLU(), torch.nn.Linear(500, 10))


def spawn(target, world, *args):
    """Runs target(rank, world, port, *args, queue) in `world` spawned
    processes; returns the objects they put on the queue (one per rank that
    reports), once all have exited."""
    import torch.multiprocessing as mp
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=target, args=(r, world, port) + args + (out,)) for r in range(world)]
    for p in procs:
        p.start()
    results = []
    while any(p.is_alive() for p in procs) or not out.empty():
        try:
            results.append(out.get(timeout=1))
        except Exception:  # queue.Empty: poll again until every process is gone
            pass
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"peer process exited with {p.exitcode}")
    return results


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def blas_report():
    """The BLAS libraries this process mapped and, for OpenBLAS, the kernel
    it chose for this CPU (or was told to use by OPENBLAS_CORETYPE)."""
    import ctypes
    libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if "blas" in line})
    core = None
    for path in libs:
        if "openblas" in path:
            try:
                fn = ctypes.CDLL(path).openblas_get_corename
                fn.restype = ctypes.c_char_p
                core = fn().decode()
            except (OSError, AttributeError):
                pass
    return {"blas": [os.path.basename(p) for p in libs], "openblas_core": core}
