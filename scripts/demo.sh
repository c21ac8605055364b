#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on the embedded
# example: the exercise from Docker's docs on cairn. Import a busybox base
# (made here from Debian's busybox-static), build a small Dockerfile, rebuild
# it from cache, change its last step, and look at images, history, prune.
# Runs in a throwaway store; needs root (the RUN sandbox uses namespaces
# and overlayfs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=$(scripts/build.sh)
cairn="$build/cairn"
work=$(mktemp -d /tmp/cairn-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
export CAIRN_ROOT="$work/store"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "cache keys of examples/hello (no build needed)"
"$cairn" keys examples/hello

say "import a busybox base image"
bash tests/rootfs.sh "$work/rootfs" >/dev/null
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
"$cairn" import "$work/busybox.tar" busybox:latest

mkdir -p "$work/app"
cat > "$work/app/Dockerfile" <<'DF'
FROM busybox:latest
RUN mkdir -p /data && echo "built at step 2" > /data/base.txt
COPY greeting.txt /data/
CMD ["cat", "/data/base.txt", "/data/greeting.txt"]
DF
echo "hello from cairn" > "$work/app/greeting.txt"

say "first build: every step runs"
"$cairn" build -t demo "$work/app"
say "rebuild: every step is cached"
"$cairn" build -t demo "$work/app"
say "change step 3: step 2 stays cached"
echo "hello again" > "$work/app/greeting.txt"
"$cairn" build -t demo "$work/app"

say "images: the old image is now <none>"
"$cairn" images
say "history of demo"
"$cairn" history demo
say "prune"
"$cairn" prune -f
"$cairn" images
say "disk usage"
"$cairn" du
