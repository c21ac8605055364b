#!/usr/bin/env bash
# A full disk under the store: a RUN whose command runs out of space, and
# a RUN whose layer does not fit, fail with a clear "no space left" error
# naming the step and a non-zero exit; afterwards `cairn images` works and,
# after a prune, a small build succeeds.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/mnt"
if ! mount -t tmpfs -o size=8m tmpfs "$T/mnt" 2>"$T/mount.err"; then
    echo "SKIP: test_build_full_disk needs to mount a tmpfs: $(cat "$T/mount.err")"
    exit 0
fi
trap 'umount -l "$T/mnt" 2>/dev/null; rm -rf "$T"' EXIT
export CAIRN_ROOT="$T/mnt/root"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"
"$CAIRN" images -q > "$T/images.before"

# expect_full OUT STEP: the failure says which step and that the disk is full.
expect_full() {
    grep -q "cairn build: step $2 " "$1" || fail "step $2 not named: $(cat "$1")"
    grep -qi 'no space left on device' "$1" || fail "no 'no space left' error: $(cat "$1")"
}

ctx="$T/ctx"
mkdir -p "$ctx"
# 1. The command itself runs out of space (20 MB into an 8 MB store).
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
RUN echo small > /small
RUN head -c 20000000 /dev/zero > /big
DF
if "$CAIRN" build --progress plain "$ctx" > "$T/b1.out" 2>&1; then fail "20 MB RUN on an 8 MB disk succeeded"; fi
expect_full "$T/b1.out" 3/3
"$CAIRN" images > "$T/images.out" 2>&1 || fail "images after a full disk: $(cat "$T/images.out")"
"$CAIRN" images -q | cmp -s - "$T/images.before" || fail "images changed by the failed build"

# 2. The command fits, its layer does not: leave 3 MB free, write 2 MB
# that do not compress (the upper dir takes 2 MB, the layer 2 MB more).
avail_kb=$(df -k --output=avail "$T/mnt" | tail -1 | tr -d ' ')
fill_kb=$((avail_kb - 3 * 1024))
[ "$fill_kb" -gt 0 ] || fail "store too big for the test: ${avail_kb} kB free"
head -c "$((fill_kb * 1024))" /dev/zero > "$T/mnt/filler"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
RUN head -c 2000000 /dev/urandom > /random
DF
if "$CAIRN" build --progress plain "$ctx" > "$T/b2.out" 2>&1; then fail "layer larger than the free space succeeded"; fi
expect_full "$T/b2.out" 2/2
rm -f "$T/mnt/filler"
"$CAIRN" images > "$T/images.out" 2>&1 || fail "images after a full layer write: $(cat "$T/images.out")"
bad=$(find "$CAIRN_ROOT/blobs" -mindepth 1 -regextype posix-extended \
    ! -path "$CAIRN_ROOT/blobs/sha256" ! -regex "$CAIRN_ROOT/blobs/sha256/[0-9a-f]{64}" -print)
[ -z "$bad" ] || fail "partial names under blobs/: $bad"

# 3. After a prune, a small build succeeds and is tagged.
"$CAIRN" prune -f > "$T/prune.out" 2>&1 || { cat "$T/prune.out"; fail "prune"; }
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
RUN echo small > /small
CMD ["cat", "/small"]
DF
"$CAIRN" build --progress plain -t small "$ctx" > "$T/b3.out" 2>&1 || { cat "$T/b3.out"; fail "small build after the full disk"; }
"$CAIRN" images | grep -qE '^small +latest ' || fail "small image missing"

echo "test_build_full_disk: all passed"
