#!/usr/bin/env bash
# Configures and builds psforge into build/ (executables in build/bin/).
# Extra arguments go to the CMake configure step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j "$(nproc)"
