#!/usr/bin/env bash
# kill -9 of a build, mid-RUN and mid-layer-write, leaves the store
# consistent: `cairn images` works, blobs/ and snapshots/ hold only final
# (content-addressed) names whose content matches, the sandboxed command
# died with the build, the rerun succeeds and prune clears tmp/ (the
# layer write killed with gzip and with zstd, whose threads compress). Also
# mid-COPY, while the COPY writes its snapshot with its layer.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"
"$CAIRN" images -q > "$T/images.before"

marker="cairn-crash-$$-$RANDOM"
ctx="$T/ctx"
mkdir -p "$ctx"
echo data > "$ctx/data.txt"

# wait_for FILE PATTERN: up to 30 s for PATTERN to appear in FILE.
wait_for() {
    for _ in $(seq 1 300); do
        grep -aq "$2" "$1" && return 0
        sleep 0.1
    done
    return 1
}

# check_store WHAT: the store invariants after a crash.
check_store() {
    "$CAIRN" images > "$T/images.out" 2>&1 || fail "$1: images fails: $(cat "$T/images.out")"
    local bad
    bad=$(find "$CAIRN_ROOT/blobs" -mindepth 1 -regextype posix-extended \
        ! -path "$CAIRN_ROOT/blobs/sha256" \
        ! -regex "$CAIRN_ROOT/blobs/sha256/[0-9a-f]{64}" -print)
    [ -z "$bad" ] || fail "$1: temporary names under blobs/: $bad"
    for f in "$CAIRN_ROOT"/blobs/sha256/*; do
        assert_eq "$(sha256sum < "$f" | cut -d' ' -f1)" "$(basename "$f")" "$1: blob content"
    done
    if [ -d "$CAIRN_ROOT/snapshots" ]; then
        bad=$(find "$CAIRN_ROOT/snapshots" -mindepth 1 -maxdepth 1 -regextype posix-extended \
            ! -regex "$CAIRN_ROOT/snapshots/[0-9a-f]{64}" -print)
        [ -z "$bad" ] || fail "$1: temporary names under snapshots/: $bad"
    fi
    grep -q " $T" /proc/self/mounts && fail "$1: mounts left: $(grep " $T" /proc/self/mounts)"
    return 0
}

# 1. Killed while the RUN's command runs.
cat > "$ctx/Dockerfile" <<DF
FROM busybox
COPY data.txt /data.txt
RUN echo started-$marker && sleep 30
DF
"$CAIRN" build --progress plain -t crash "$ctx" > "$T/b1.out" 2>&1 & pid=$!
wait_for "$T/b1.out" "^started-$marker" || { kill -9 "$pid"; fail "RUN did not start: $(cat "$T/b1.out")"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null && fail "killed build exited 0"
# The sandbox dies with the build (parent-death signal), within a moment.
for _ in $(seq 1 50); do
    pgrep -f "started-$marker" >/dev/null || break
    sleep 0.1
done
pgrep -f "started-$marker" >/dev/null && fail "the RUN's processes outlived the build"
check_store "kill mid-RUN"
"$CAIRN" images | grep -q '^crash ' && fail "a killed build tagged an image"

# 2. Killed while a big layer is being written (the progress line shows
# that the tar is being written), with each codec: gzip's and zstd's worker
# threads are compressing when the process dies.
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
RUN head -c 300000000 /dev/urandom > /big
DF
for comp in gzip zstd; do
    "$CAIRN" build --progress tty --compression "$comp" -t crash2 "$ctx" > "$T/b2.out" 2>&1 & pid=$!
    wait_for "$T/b2.out" "writing layer" || { kill -9 "$pid"; fail "$comp: no layer write seen: $(cat -A "$T/b2.out")"; }
    kill -9 "$pid"
    wait "$pid" 2>/dev/null && fail "$comp: killed build exited 0"
    check_store "kill mid-layer-write ($comp)"
done

# 2b. Killed while a COPY writes its layer and, in the same pass, the
# snapshot the RUN after it needs: the partial snapshot stays in tmp/,
# never under snapshots/, and the rerun's snapshot is complete.
mkdir -p "$ctx/bigdir"
head -c 200000000 /dev/urandom > "$ctx/bigdir/big.bin"
cat > "$ctx/Dockerfile" <<DF
FROM busybox
COPY bigdir/ /big/
RUN echo after-copy-$marker
DF
"$CAIRN" build --progress tty -t crash3 "$ctx" > "$T/b2b.out" 2>&1 & pid=$!
wait_for "$T/b2b.out" "writing layer" || { kill -9 "$pid"; fail "no COPY layer write seen: $(cat -A "$T/b2b.out")"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null && fail "killed build exited 0"
check_store "kill mid-COPY"
ls -d "$CAIRN_ROOT"/tmp/snap-* >/dev/null 2>&1 || fail "the COPY's partial snapshot is not in tmp/"
"$CAIRN" build --progress plain -t crash3 "$ctx" > "$T/b2c.out" 2>&1 || { cat "$T/b2c.out"; fail "rerun of the killed COPY"; }
grep -q "^after-copy-$marker" "$T/b2c.out" || fail "the RUN after the COPY did not run"
snap=$("$CAIRN" inspect crash3 | jq -r '.[0].Store.Layers[1].Snapshot')
cmp "$CAIRN_ROOT/$snap/big/big.bin" "$ctx/bigdir/big.bin" || fail "the COPY's snapshot is not complete"
check_store "after the COPY rerun"
rm -rf "$ctx/bigdir"

# 3. The store still works: the rerun succeeds (the COPY step of the first
# build completed before the kill and is reused), prune cleans up the
# leftovers in tmp/.
cat > "$ctx/Dockerfile" <<DF
FROM busybox
COPY data.txt /data.txt
RUN echo rerun-$marker
DF
"$CAIRN" build --progress plain -t crash "$ctx" > "$T/b3.out" 2>&1 || { cat "$T/b3.out"; fail "rerun after the crash"; }
assert_eq "$(grep -c ' ---> Using cache' "$T/b3.out")" 1 "COPY layer of the killed build reused"
# The killed builds left their staging (upper dir, partial layer) in tmp/.
[ -n "$(ls -A "$CAIRN_ROOT/tmp")" ] || fail "no leftovers in tmp/ after two kills"
"$CAIRN" prune -f > "$T/prune.out" 2>&1 || { cat "$T/prune.out"; fail "prune after the crash"; }
[ -z "$(ls -A "$CAIRN_ROOT/tmp")" ] || fail "prune left tmp/: $(ls -A "$CAIRN_ROOT/tmp")"
check_store "after prune"
"$CAIRN" images | grep -qE '^crash +latest ' || fail "image lost by prune"
"$CAIRN" build --progress plain -t crash "$ctx" > "$T/b4.out" 2>&1 || fail "build after prune"
assert_eq "$(grep -c ' ---> Using cache' "$T/b4.out")" 2 "cached steps after prune"

echo "test_build_crash: all passed"
