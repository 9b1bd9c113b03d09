#!/usr/bin/env bash
# Installs the benchmark peers' packages, builds, and runs the benchmarks;
# each writes its table to bench/results/, which bench/RESULTS.md quotes.
# Run it on an otherwise idle machine: every benchmark compares against a
# peer measured in the same run, but the absolute numbers move with load.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh --bench
scripts/build.sh
mkdir -p bench/results
build/bin/op_bench --threads 1 | tee bench/results/op_bench_1thread.txt
build/bin/op_bench --threads 2 | tee bench/results/op_bench_2threads.txt
# On an AVX-512 machine, also as an AVX2 CPU would dispatch (bench/bench_env.py).
if grep -qw avx512f /proc/cpuinfo; then
  DNNL_MAX_CPU_ISA=AVX2 build/bin/op_bench --threads 1 | tee bench/results/op_bench_1thread_avx2.txt
fi
/usr/bin/python3 bench/default_job.py --seeds 5
build/bin/checkpoint_bench --runs 5 --big-floats 1000000 | tee bench/results/checkpoint_mlp.md
/usr/bin/python3 bench/mlp_throughput.py --runs 3 --epochs 2
build/bin/pushpull_bench --seconds 1.5 --runs 3 | tee bench/results/pushpull.md
/usr/bin/python3 bench/cluster_throughput.py --runs 3
/usr/bin/python3 bench/control_plane.py --workers 256 --runs 3 | tee bench/results/control_plane_256.md
/usr/bin/python3 bench/control_plane.py --workers 1024 --runs 3 | tee bench/results/control_plane_1024.md
/usr/bin/python3 bench/cnn_throughput.py --runs 3 --steps 200
/usr/bin/python3 bench/char_lstm.py --runs 3 --steps 200
/usr/bin/python3 bench/char_gpt.py --runs 3 --steps 200
# The CNN through a local cluster (2 servers, 2 workers), its full 12 epochs.
build/bin/ps-launch --config configs/fashion_mnist_cnn.yaml --run-dir "$(mktemp -d)" \
  --summary bench/results/cnn_cluster.json 2>&1 | grep -E '^(after|final)'
# Sparse tables: the CTR model against PyTorch's EmbeddingBag, and sparse push/pull.
/usr/bin/python3 bench/ctr_throughput.py --runs 3
build/bin/sparse_pushpull_bench --seconds 2 --runs 3 | tee bench/results/sparse_pushpull.md
# Tables bigger than the servers' memory, and incremental vs full table checkpoints.
/usr/bin/python3 bench/ctr_spill.py --runs 3 --train-rows 1400000 --budget-mb 1024
build/bin/table_checkpoint_bench --rows 4000000 --steps 100 --runs 3 | tee bench/results/table_checkpoint.md
