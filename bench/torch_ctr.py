#!/usr/bin/python3
"""The PyTorch peer of configs/ctr_synthetic.yaml's model, in one process:
one nn.EmbeddingBag(mode="sum", sparse=True) table of 2^24 rows shared by
the 26 categorical fields (a value hashed with its field; a missing value
is an empty bag, a zero embedding), concatenated after the 13 integer
features (sign(x) log(1 + |x|), 0 where missing) into the MLP
429-256-128-1, sigmoid cross-entropy. Embeddings: Adagrad (sparse
gradients; element-wise accumulators, where ours are row-wise), lr 0.05,
U(-0.05, 0.05); the MLP: Adam lr 1e-3, PyTorch's default Linear init.
Batches in a seeded shuffled order, one epoch; samples/s over the training
steps; then test AUC and log loss. Prints one JSON line.

Usage: bench/torch_ctr.py --train T.tsv --test T.tsv [--threads 1] [--batch 512]
       [--rows 16777216] [--dim 16] [--epochs 1]"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_common import blas_report  # noqa: E402

MISSING = -1


def load(path, rows, cache_dir):
    """Labels, dense features and hashed rows ([n, 26], -1 where missing) of
    a click log, parsed once and cached as .npz (the parse is not timed)."""
    st = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime}:{rows}".encode()).hexdigest()[:16]
    cache = os.path.join(cache_dir, f"ctr-{key}.npz")
    if os.path.exists(cache):
        z = np.load(cache)
        return z["y"], z["x"], z["ids"]
    y, x, ids = [], [], []
    mask = (1 << 64) - 1
    for line in open(path):
        cols = line.rstrip("\n").split("\t")
        y.append(float(cols[0]))
        dense = []
        for c in cols[1:14]:
            v = int(c) if c else 0
            dense.append(np.sign(v) * np.log1p(abs(v)))
        x.append(dense)
        r = []
        for f, c in enumerate(cols[14:40]):
            if not c:
                r.append(MISSING)
                continue
            h = (int(c, 16) * 0x9E3779B97F4A7C15 + (f + 1) * 0xBF58476D1CE4E5B9) & mask
            h ^= h >> 31
            r.append(h % rows)
        ids.append(r)
    y = np.asarray(y, np.float32)
    x = np.asarray(x, np.float32)
    ids = np.asarray(ids, np.int64)
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(cache, y=y, x=x, ids=ids)
    return y, x, ids


def bags(ids):
    """EmbeddingBag input for [n, 26] rows: one bag per (record, field), empty where missing."""
    flat = ids.reshape(-1)
    present = flat >= 0
    offsets = np.concatenate([[0], np.cumsum(present)[:-1]])
    return torch.from_numpy(flat[present]), torch.from_numpy(offsets)


def auc(scores, labels):
    order = np.argsort(scores, kind="mergesort")
    s, l = scores[order], labels[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):  # ties share their mean rank
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    pos = l == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rows", type=int, default=1 << 24)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache", default="/tmp/psforge-bench-cache")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    y, x, ids = load(args.train, args.rows, args.cache)
    yt, xt, idst = load(args.test, args.rows, args.cache)
    emb = torch.nn.EmbeddingBag(args.rows, args.dim, mode="sum", sparse=True)
    torch.nn.init.uniform_(emb.weight, -0.05, 0.05)
    width = 13 + 26 * args.dim
    mlp = torch.nn.Sequential(torch.nn.Linear(width, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                              torch.nn.ReLU(), torch.nn.Linear(128, 1))
    opt_sparse = torch.optim.Adagrad(emb.parameters(), lr=0.05)
    opt_dense = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def forward(xb, idb):
        values, offsets = bags(idb)
        e = emb(values, offsets).reshape(len(xb), 26 * args.dim)
        return mlp(torch.cat([torch.from_numpy(xb), e], 1)).squeeze(1)

    rng = np.random.default_rng(args.seed)
    samples, train_s = 0, 0.0
    for _ in range(args.epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), args.batch):
            rows = order[start:start + args.batch]
            t0 = time.perf_counter()
            opt_sparse.zero_grad()
            opt_dense.zero_grad()
            loss = loss_fn(forward(x[rows], ids[rows]), torch.from_numpy(y[rows]))
            loss.backward()
            opt_sparse.step()
            opt_dense.step()
            train_s += time.perf_counter() - t0
            samples += len(rows)
    with torch.no_grad():
        probs = np.concatenate([torch.sigmoid(forward(xt[s:s + 4096], idst[s:s + 4096])).numpy()
                                for s in range(0, len(yt), 4096)])
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    logloss = float(-np.mean(yt * np.log(p) + (1 - yt) * np.log(1 - p)))
    report = {"samples_per_s": samples / train_s, "test_auc": auc(probs, yt), "test_logloss": logloss,
              "torch": torch.__version__, "threads": args.threads}
    report.update(blas_report())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
