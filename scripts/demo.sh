#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on the embedded
# example: the cache keys of examples/hello.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=$(scripts/build.sh)
echo "== cairn keys examples/hello"
"$build/cairn" keys examples/hello
