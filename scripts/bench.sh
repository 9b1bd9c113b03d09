#!/usr/bin/env bash
# Installs the benchmark peers' packages, builds, and runs the benchmarks;
# each writes its table to bench/results/, which bench/RESULTS.md quotes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh --bench
scripts/build.sh
build/bin/op_bench --threads 1 | tee bench/results/op_bench_1thread.txt
build/bin/op_bench --threads 2 | tee bench/results/op_bench_2threads.txt
/usr/bin/python3 bench/mlp_throughput.py --runs 3 --epochs 2
