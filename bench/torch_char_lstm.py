#!/usr/bin/python3
"""The PyTorch peer of the character-level LSTM (configs/fortunes_char_lstm.yaml):
the same corpus, windows, validation split and vocabulary as psforge's text
reader (common/text_dataset.h), the same architecture (embedding 32, LSTM
256, linear to the vocabulary), batch 64, Adam lr 2e-3 with gradient norm
clipping at 5, for --steps steps.

Prints one JSON line: samples_per_s over the training steps (evaluation
excluded), validation_bits_per_char after the last step, the unigram
entropy, and the BLAS libraries actually loaded with the OpenBLAS kernel in
use (torch_common.blas_report())."""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_common  # noqa: E402

FORTUNES = "/usr/share/games/fortunes"


def corpus(folder=FORTUNES):
    """As ReadTextCorpus: regular files sorted by name, no symbolic links, no NUL bytes."""
    data = b""
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        text = open(path, "rb").read()
        if b"\0" in text:
            continue
        data += text
    return data


def windows(data, window, validation_every):
    vocab = sorted(set(data))
    ids = np.zeros(256, dtype=np.int64)
    ids[vocab] = np.arange(len(vocab))
    seq = ids[np.frombuffer(data, dtype=np.uint8)]
    count = (len(seq) - 1) // window
    starts = np.arange(count) * window
    x = np.stack([seq[s:s + window] for s in starts])
    y = np.stack([seq[s + 1:s + window + 1] for s in starts])
    val = (np.arange(count) + 1) % validation_every == 0
    counts = np.bincount(seq, minlength=len(vocab)) / len(seq)
    unigram = float(-(counts * np.log2(counts)).sum())
    return (torch.from_numpy(x[~val]), torch.from_numpy(y[~val]), torch.from_numpy(x[val]),
            torch.from_numpy(y[val]), len(vocab), unigram)


class CharLstm(torch.nn.Module):
    def __init__(self, vocab, dim, hidden):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, dim)
        self.lstm = torch.nn.LSTM(dim, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, vocab)

    def forward(self, x):
        h, _ = self.lstm(self.embedding(x))
        return self.out(h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x, y, xv, yv, vocab, unigram = windows(corpus(), args.window, 10)
    model = CharLstm(vocab, args.dim, args.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, step, train_s = x.shape[0], 0, 0.0
    while step < args.steps:
        perm = torch.randperm(n)
        for b in range(0, n, args.batch):
            if step == args.steps:
                break
            i = perm[b:b + args.batch]
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[i]).reshape(-1, vocab), y[i].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            train_s += time.perf_counter() - start
            step += 1
    with torch.no_grad():
        total = 0.0
        for b in range(0, xv.shape[0], 256):
            total += loss_fn(model(xv[b:b + 256]).reshape(-1, vocab), yv[b:b + 256].reshape(-1)).item() * len(xv[b:b + 256])
        bpc = total / xv.shape[0] / math.log(2)
    report = {"samples_per_s": step * args.batch / train_s, "validation_bits_per_char": bpc,
              "steps": step, "vocabulary": vocab, "unigram_bits": unigram, "threads": args.threads,
              "torch": torch.__version__}
    report.update(torch_common.blas_report())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
