#!/usr/bin/python3
"""The PyTorch peer of ps-train: MLP 784-500-10 (ReLU), softmax cross-entropy,
Adam lr 1e-3, batch 128, on Fashion-MNIST held in memory as one tensor,
reshuffled each epoch, batches gathered by index (as ps-train does).

Prints one JSON line: samples_per_s over the training steps (evaluation
excluded), test_accuracy, and the BLAS libraries actually loaded with the
OpenBLAS kernel in use (torch_common.blas_report())."""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_common  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)

    x, y, xt, yt = torch_common.fashion_mnist()
    model = torch_common.mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = x.shape[0]
    train_s, samples = 0.0, 0
    for _ in range(args.epochs):
        perm = torch.randperm(n)
        start = time.perf_counter()
        for b in range(0, n, args.batch):
            i = perm[b:b + args.batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[i]), y[i])
            loss.backward()
            opt.step()
            samples += len(i)
        train_s += time.perf_counter() - start
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    report = {"samples_per_s": samples / train_s, "test_accuracy": acc, "threads": args.threads,
              "torch": torch.__version__}
    report.update(torch_common.blas_report())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
