#!/usr/bin/env bash
# Optimised build used by the demo and the benchmarks: prints the build dir.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${CAIRN_BUILD_DIR:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCAIRN_STATIC_GRPC=ON >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
echo "$PWD/$build"
