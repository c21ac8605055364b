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

# The main job: two machines sharing layers through cairnd. Machine A (one
# store) builds examples/hello and uploads; machine B (a fresh store) builds
# the same thing and gets every layer step from the cache, running nothing.
say "the shared cache: start cairnd on 127.0.0.1 (port 0), a temp directory"
cairnd="$build/server/cairnd"
mkdir -p "$work/cairnd"
"$cairnd" --listen 127.0.0.1:0 --dir "$work/cairnd" --max-size 1G \
    >"$work/cairnd.out" 2>"$work/cairnd.log" &
cairnd_pid=$!
trap 'kill "$cairnd_pid" 2>/dev/null || true; wait "$cairnd_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port=
for _ in $(seq 1 100); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$work/cairnd.out")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "cairnd did not start:"; cat "$work/cairnd.log"; exit 1; }
cache="grpc://127.0.0.1:$port/main"
"$cairn" cache ping "$cache"

now() { date +%s.%N; }
# The same base image on both machines: a fixed import date gives the same
# digest, so the FROM keys (and every key after them) agree.
for m in A B; do
    SOURCE_DATE_EPOCH=1700000000 CAIRN_ROOT="$work/machine-$m" "$cairn" import "$work/busybox.tar" busybox:latest >/dev/null
done
say "machine A: build examples/hello with --cache (everything runs, uploads)"
t0=$(now)
CAIRN_ROOT="$work/machine-A" "$cairn" build -t hello --build-arg BASE=busybox:latest --cache "$cache" examples/hello | tee "$work/A.out"
t1=$(now)
say "machine B: a fresh store, the same build (all remote hits)"
CAIRN_ROOT="$work/machine-B" "$cairn" build -t hello --build-arg BASE=busybox:latest --cache "$cache" examples/hello | tee "$work/B.out"
t2=$(now)
# B took A's image record from the cache: not only the same layers, the
# same image (config and manifest digests), though B built later.
say "the same image on A and B"
for m in A B; do
    printf 'machine %s: %s, manifest %s\n' "$m" "$(sed -n 's/^Successfully built //p' "$work/$m.out")" \
        "$(jq -r '.manifests[] | select((.annotations["org.opencontainers.image.ref.name"] // "") | test("hello")) | .digest' "$work/machine-$m/index.json")"
done
say "times"
awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN {
    printf "machine A (cold, builds and uploads): %.2fs\n", b - a
    printf "machine B (fresh store, warm cache):  %.2fs\n", c - b }'
kill -TERM "$cairnd_pid"
wait "$cairnd_pid" || true
echo "cairnd stopped"
