#!/usr/bin/env bash
# Installs what is missing, builds with -Werror and ASan/UBSan, and runs every
# test through ctest. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=${CAIRN_BUILD_DIR:-build/test}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCAIRN_WERROR=ON -DCAIRN_SANITIZE=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
# The optimiser sees what the Debug build does not (-Wformat-truncation
# after inlining): the programs must build warning-free in Release too.
cmake -S . -B "$build-release" -DCMAKE_BUILD_TYPE=Release -DCAIRN_WERROR=ON >/dev/null
cmake --build "$build-release" -j"$(nproc)" --target cairn cairnd
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
