#!/usr/bin/python3
"""The GPT-style character model on Debian's fortunes (configs/fortunes_gpt.yaml):
ps-train against the same network in PyTorch (this file's --peer mode), the
same corpus, windows, split and vocabulary, batch, optimizer, learning-rate
schedule and number of steps, one thread each, runs interleaved. Reports
samples/s and validation bits per character at the same step, min/median/max
of N runs, on this CPU's own ISA and, on an AVX-512 machine, with both sides
dispatching as on an AVX2 CPU (bench/bench_env.py), one table per ISA.
Prints a markdown section for bench/RESULTS.md and writes it to --out
(bench/results/char_gpt.md unless told otherwise; --out - prints only).

The network on both sides: embedding 96 (N(0, 1)) plus a learned position
vector per position ([64, 96], N(0, 0.02)); two pre-norm blocks, each
x + attn(ln0(x)) with nn.MultiheadAttention(96, 4 heads, causal mask) then
x + fc1(gelu(fc0(ln1(x)))) with fc0 96 -> 384 and fc1 384 -> 96, dropout 0;
a final layer norm and a linear layer to the vocabulary; a cross-entropy at
every position. AdamW lr 3e-3, weight decay 0.01, a linear warm-up over the
first min(100, steps) updates then a cosine to 3e-4 over the rest of the
steps (optimizer.lr_schedule_steps = steps on both sides), gradient norm
clipped at 1, batch 64, windows of 64.

Usage: bench/char_gpt.py [--runs 3] [--steps 200] [--isa all|native|avx2] [--out PATH|-]
(scripts/bench.sh installs the peer's packages and builds first.)"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ next to the benchmarks
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs/fortunes_gpt.yaml")

# The peer's copy of configs/fortunes_gpt.yaml.
DIM, HEADS, MLP, BLOCKS, WINDOW, BATCH = 96, 4, 384, 2, 64, 64
LR, LR_MIN, WARMUP, WEIGHT_DECAY, CLIP = 3e-3, 3e-4, 100, 0.01, 1.0
VALIDATION_EVERY = 10


def warmup_for(steps):
    """psforge rejects a warm-up longer than lr_schedule_steps: short runs warm up over all of them."""
    return min(WARMUP, steps)


def scheduled_rate(t, steps, warmup):
    """psforge's ScheduledLearningRate (common/config.cc), cosine with warm-up, for update t (from 0)."""
    after, span = t - warmup, steps - warmup
    x = 0.0 if after < 0 else 1.0 if after >= span else after / span
    rate = LR_MIN + 0.5 * (LR - LR_MIN) * (1.0 + math.cos(math.pi * x))
    if t < warmup:
        rate *= (t + 1) / warmup
    return rate


# ---------------------------------------------------------------- psforge side

def check_config(summary, steps):
    """Warns where the job ps-train ran is not the network and optimizer the peer copies."""
    cfg = summary.get("config", {})
    opt = cfg.get("optimizer", {})
    want = {"kind": "adamw", "learning_rate": LR, "lr_min": LR_MIN, "lr_schedule": "cosine",
            "lr_schedule_steps": steps, "lr_warmup_steps": warmup_for(steps), "weight_decay": WEIGHT_DECAY,
            "clip_norm": CLIP}
    bad = [f"optimizer.{k}={opt.get(k)!r} (peer: {v!r})" for k, v in want.items()
           if k in opt and not (opt[k] == v or (isinstance(v, float) and isinstance(opt[k], (int, float))
                                                 and math.isclose(opt[k], v)))]
    batch = cfg.get("training", {}).get("batch_size")
    if batch is not None and batch != BATCH:
        bad.append(f"training.batch_size={batch} (peer: {BATCH})")
    window = cfg.get("data", {}).get("window")
    if window is not None and window != WINDOW:
        bad.append(f"data.window={window} (peer: {WINDOW})")
    layers = cfg.get("model", {}).get("layers")
    if layers is not None:
        want_layers = ([{"type": "embedding", "dim": DIM}, {"type": "position"}]
                       + [{"type": "transformer", "heads": HEADS, "causal": True, "dropout": 0.0,
                           "mlp": (0, 4 * DIM) if MLP == 4 * DIM else (MLP,)}] * BLOCKS
                       + [{"type": "layernorm"}, {"type": "linear"}])
        same = len(layers) == len(want_layers) and all(
            all(got.get(k) in (v if isinstance(v, tuple) else (v,)) for k, v in w.items())
            for got, w in zip(layers, want_layers))
        if not same:
            bad.append(f"model.layers={layers}")
    if summary.get("steps") != steps:
        bad.append(f"ps-train ran {summary.get('steps')} steps, not {steps}")
    for b in bad:
        print(f"warning: {os.path.relpath(CONFIG, ROOT)} differs from the peer: {b}", file=sys.stderr)


def ours(isa, steps, seed):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([os.path.join(ROOT, "build/bin/ps-train"), "--no-run-dir", "--config", CONFIG,
                        "--epochs", "100", "--threads", "1",
                        "--set", f"training.max_steps={steps}", "--set", f"optimizer.lr_schedule_steps={steps}",
                        "--set", f"optimizer.lr_warmup_steps={warmup_for(steps)}",
                        "--set", f"training.seed={seed}", "--set", f"model.init_seed={seed}", "--summary", f.name],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=bench_env.ours_env(isa))
        s = json.load(open(f.name))
        check_config(s, steps)
        return s["samples_per_s"], s["validation_bits_per_char"]


def peer(isa, steps, seed):
    out = subprocess.run(["/usr/bin/python3", os.path.abspath(__file__), "--peer", "--threads", "1",
                          "--steps", str(steps), "--seed", str(seed)], check=True, capture_output=True, text=True,
                         env=bench_env.peer_env(isa, 1)).stdout
    return json.loads(out.strip().splitlines()[-1])


mmm, fmt = bench_env.mmm, bench_env.fmt


def measure(isa, runs, steps):
    """Both sides on one ISA; returns their rates and bits/char, and the peer's last report."""
    return bench_env.measure_pairs(isa, runs, steps, ours, peer)


def group(isa, steps, rate_a, rate_b, bpc_a, bpc_b, info):
    """The lines of one ISA: its table, the speed ratios and the peer's BLAS as it reported it."""
    ratios = sorted(x / y for x, y in zip(rate_a, rate_b))
    return [
        "",
        f"{bench_env.isa_label(isa)}:",
        "",
        "| | psforge min / median / max | PyTorch min / median / max |",
        "|---|---|---|",
        f"| samples/s ({WINDOW} characters each) | {fmt(mmm(rate_a))} | {fmt(mmm(rate_b))} |",
        f"| validation bits/char after {steps} steps | {fmt(mmm(bpc_a), 3)} | {fmt(mmm(bpc_b), 3)} |",
        "",
        f"Speed ratio of the medians psforge / PyTorch: {statistics.median(rate_a) / statistics.median(rate_b):.2f}x "
        f"(per-run ratios min / median / max: {ratios[0]:.2f}x / {statistics.median(ratios):.2f}x / "
        f"{ratios[-1]:.2f}x). Peer BLAS loaded: {', '.join(info['blas'])}; OpenBLAS kernel: "
        f"{info['openblas_core']}.",
    ]


def driver(args):
    isas = bench_env.ISAS if args.isa == "all" else (args.isa,)
    results = {isa: measure(isa, args.runs, args.steps) for isa in isas}
    info = results[isas[0]][-1]  # corpus facts and torch version: the same on every ISA
    command = f"bench/char_gpt.py --runs {args.runs} --steps {args.steps}"
    if args.isa != "all":
        command += f" --isa {args.isa}"
    warmup = warmup_for(args.steps)
    lines = [
        "## GPT-style character model on fortunes: ps-train vs PyTorch",
        "",
        f"Command: `{command}`. CPU: {bench_env.cpu()}.",
        f"configs/fortunes_gpt.yaml: embedding {DIM} plus a learned position embedding [{WINDOW}, {DIM}], "
        f"{BLOCKS} pre-norm Transformer blocks ({HEADS} heads, causal, MLP {MLP}, GELU, dropout 0), a final "
        f"layer norm, linear to the vocabulary ({info['vocabulary']} characters; unigram entropy "
        f"{info['unigram_bits']:.3f} bits/char), {info['parameters']:,} parameters; windows of {WINDOW}, batch "
        f"{BATCH}, AdamW lr {LR:g} weight decay {WEIGHT_DECAY:g}, linear warm-up over {warmup} updates then a "
        f"cosine to {LR_MIN:g} (lr_schedule_steps {args.steps} on both sides), gradient norm clipped at "
        f"{CLIP:g}, {args.steps} steps, one thread each; run k seeds both sides' data order and initial weights "
        f"with k. Peer: Debian python3-torch {info['torch']} (nn.MultiheadAttention with a causal attn_mask, "
        f"nn.LayerNorm, nn.GELU), the same corpus, windows, split and vocabulary; BLAS from "
        f"{bench_env.OPENBLAS}.",
    ]
    for isa, r in results.items():
        lines += group(isa, args.steps, *r)
    text = "\n".join(lines) + "\n"
    if args.out != "-":
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


# ---------------------------------------------------------------- PyTorch peer

def run_peer(args):
    """Trains the network for --steps steps on one thread; prints one JSON line: samples_per_s over the
    training steps (evaluation excluded), validation_bits_per_char after the last step, the vocabulary,
    unigram entropy, parameter count, torch version and the BLAS libraries loaded
    (torch_common.blas_report())."""
    import time

    import torch
    import torch_char_lstm  # corpus() and windows(): psforge's text reader (common/text_dataset.h)
    import torch_common

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln0 = torch.nn.LayerNorm(DIM)
            self.attn = torch.nn.MultiheadAttention(DIM, HEADS, dropout=0.0, batch_first=True)
            self.ln1 = torch.nn.LayerNorm(DIM)
            self.fc0 = torch.nn.Linear(DIM, MLP)
            self.gelu = torch.nn.GELU()
            self.fc1 = torch.nn.Linear(MLP, DIM)

        def forward(self, x, mask):
            h = self.ln0(x)
            x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            return x + self.fc1(self.gelu(self.fc0(self.ln1(x))))

    class CharGpt(torch.nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab, DIM)  # N(0, 1), as psforge's embedding
            self.pos = torch.nn.Parameter(torch.randn(WINDOW, DIM) * 0.02)  # N(0, 0.02), as psforge's position
            self.blocks = torch.nn.ModuleList(Block() for _ in range(BLOCKS))
            self.ln = torch.nn.LayerNorm(DIM)
            self.out = torch.nn.Linear(DIM, vocab)
            self.register_buffer("mask", torch.triu(torch.ones(WINDOW, WINDOW, dtype=torch.bool), 1),
                                 persistent=False)

        def forward(self, x):
            t = x.shape[1]
            h = self.embedding(x) + self.pos[:t]
            mask = self.mask[:t, :t]
            for block in self.blocks:
                h = block(h, mask)
            return self.out(self.ln(h))

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x, y, xv, yv, vocab, unigram = torch_char_lstm.windows(torch_char_lstm.corpus(), WINDOW, VALIDATION_EVERY)
    model = CharGpt(vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    loss_fn = torch.nn.CrossEntropyLoss()
    warmup = warmup_for(args.steps)
    n, step, train_s = x.shape[0], 0, 0.0
    while step < args.steps:
        perm = torch.randperm(n)
        for b in range(0, n, BATCH):
            if step == args.steps:
                break
            i = perm[b:b + BATCH]
            xb, yb = x[i], y[i]
            start = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = scheduled_rate(step, args.steps, warmup)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb).reshape(-1, vocab), yb.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            train_s += time.perf_counter() - start
            step += 1
    with torch.no_grad():
        total = 0.0
        for b in range(0, xv.shape[0], 256):
            xb, yb = xv[b:b + 256], yv[b:b + 256]
            total += loss_fn(model(xb).reshape(-1, vocab), yb.reshape(-1)).item() * len(xb)
        bpc = total / xv.shape[0] / math.log(2)
    report = {"samples_per_s": step * BATCH / train_s, "validation_bits_per_char": bpc, "steps": step,
              "vocabulary": vocab, "unigram_bits": unigram, "parameters": sum(p.numel() for p in model.parameters()),
              "threads": args.threads, "torch": torch.__version__}
    report.update(torch_common.blas_report())
    print(json.dumps(report))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--isa", choices=("all", "native", "avx2"), default="all",
                    help="all: native, and AVX2 dispatch too on an AVX-512 CPU (bench/bench_env.py)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/char_gpt.md"),
                    help="where to write the markdown section as well (-: print only)")
    ap.add_argument("--peer", action="store_true", help="run the PyTorch side once (internal)")
    ap.add_argument("--threads", type=int, default=1, help="--peer: torch threads")
    ap.add_argument("--seed", type=int, default=1, help="--peer: torch.manual_seed")
    args = ap.parse_args()
    if args.steps < 1:
        ap.error("--steps must be at least 1")
    if args.peer:
        run_peer(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
