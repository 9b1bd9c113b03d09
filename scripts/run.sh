#!/usr/bin/env bash
# README command 1: set up, build, and train the Fashion-MNIST MLP, showing
# progress and printing the final test accuracy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
scripts/build.sh
mkdir -p runs
exec build/bin/ps-train --config configs/fashion_mnist_mlp.yaml --summary runs/fashion_mnist_mlp.json "$@"
