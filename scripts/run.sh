#!/usr/bin/env bash
# README command 1: set up, build, and train the Fashion-MNIST MLP on a local
# cluster, showing
# progress and printing the final test accuracy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
scripts/build.sh
mkdir -p runs
# A local cluster: a coordinator, 2 servers and 2 workers (cluster section of the config).
exec build/bin/ps-launch --config configs/fashion_mnist_mlp.yaml --summary runs/fashion_mnist_mlp.json "$@"
