#!/usr/bin/python3
"""The PyTorch peer of ps-train's CNN (configs/fashion_mnist_cnn.yaml): conv
3x3 32 - batchnorm - ReLU - maxpool 2 - conv 3x3 64 - batchnorm - ReLU -
maxpool 2 - flatten - dropout 0.25 - linear 128 - ReLU - dropout 0.25 -
linear 10, softmax cross-entropy, Adam lr 1e-3, batch 128, one thread by
default, Fashion-MNIST standardised and held in memory, reshuffled, batches
gathered by index. PyTorch runs its convolutions on its own oneDNN
(torch.backends.mkldnn; Debian's build carries oneDNN 2.6).

Prints one JSON line: samples_per_s over `--steps` training steps after
`--warmup` steps (evaluation excluded), the test accuracy of the model at
that point, and the BLAS and oneDNN use actually seen."""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_common  # noqa: E402


def cnn():
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(128, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    x, y, xt, yt = torch_common.fashion_mnist()
    x, xt = x.reshape(-1, 1, 28, 28), xt.reshape(-1, 1, 28, 28)
    model = cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    n = x.shape[0]
    perm = torch.randperm(n)
    step, train_s, samples = 0, 0.0, 0
    model.train()
    while step < args.warmup + args.steps:
        b = (step * args.batch) % n
        if b + args.batch > n:
            perm, b = torch.randperm(n), 0
        i = perm[b:b + args.batch]
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[i]), y[i])
        loss.backward()
        opt.step()
        if step >= args.warmup:
            train_s += time.perf_counter() - start
            samples += len(i)
        step += 1
    model.eval()
    with torch.no_grad():
        acc = sum((model(xt[k:k + 1000]).argmax(1) == yt[k:k + 1000]).sum().item()
                  for k in range(0, xt.shape[0], 1000)) / xt.shape[0]
    report = {"samples_per_s": samples / train_s, "test_accuracy": acc, "steps": args.steps,
              "threads": args.threads, "torch": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available()}
    report.update(torch_common.blas_report())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
