#!/usr/bin/env bash
# README command 2: set up, build, and run the whole test suite: CTest
# (which replays every fuzz corpus and regression), then each libFuzzer
# target for a bounded time (scripts/fuzz.sh; PSFORGE_FUZZ_SECONDS, default 20).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
scripts/build.sh
(cd build && ctest --output-on-failure -j "$(nproc)" "$@")
scripts/fuzz.sh "${PSFORGE_FUZZ_SECONDS:-20}"
