#!/usr/bin/env bash
# A relative CAIRN_ROOT (CAIRN_ROOT=store) is taken from the current
# directory: a build with a RUN works (the sandbox mounts its overlay from
# snapshot paths under the root after changing directory), and the store
# it made is the one an absolute path to the same directory opens.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
mkdir -p "$T/work" "$T/ctx"
cd "$T/work"
CAIRN_ROOT=store "$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"
printf 'FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /b.txt\n' > "$T/ctx/Dockerfile"
echo hello > "$T/ctx/a.txt"
CAIRN_ROOT=store "$CAIRN" build --progress plain -t rel "$T/ctx" > "$T/out" 2>&1 ||
    { cat "$T/out"; fail "build with a relative CAIRN_ROOT"; }
[ -d "$T/work/store/blobs/sha256" ] || fail "the store is not under the current directory"
# From another directory, the absolute path finds the same image, and a
# rebuild is all cache.
cd /
CAIRN_ROOT="$T/work/store" "$CAIRN" images > "$T/images" || fail "images"
grep -q '^rel ' "$T/images" || fail "image rel not in the store: $(cat "$T/images")"
CAIRN_ROOT="$T/work/store" "$CAIRN" build --progress plain -t rel "$T/ctx" > "$T/out2" 2>&1 ||
    { cat "$T/out2"; fail "rebuild"; }
grep -q '2 layers from cache' "$T/out2" || fail "rebuild not from cache: $(tail -2 "$T/out2")"
echo "test_root_relative: all passed"
