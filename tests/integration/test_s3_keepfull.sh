#!/usr/bin/env bash
# "A full disk never fails a write the bucket took" (docs/storage.md "The
# promise: write-through", the local copy after the ack). A node's --dir is
# a small tmpfs: a 24 MiB blob's temp file fits, LMDB's copy of it after the
# ack does not (ENOSPC while staging: a real lack of room, not an eviction;
# --max-size below the blob would refuse the write itself). Against a real
# Swift with s3api on 127.0.0.1:
# 1. the write through ByteStream is acknowledged OK, and the object is in
#    the bucket byte for byte;
# 2. the node reports that no local copy was kept (store full), stays up,
#    and LMDB holds no blob;
# 3. a read through the same node returns the blob whole (from the bucket:
#    LMDB has no copy), and FindMissingBlobs says present;
# 4. the node keeps serving: a small write and its read work, and it stops
#    cleanly (exit 0, no sanitizer report).
# The tmpfs lives in a mount namespace of the test's own, so it goes away
# with the test however the test ends.
if [ -z "${CAIRN_KEEPFULL_NS:-}" ]; then
    if ! unshare -m --propagation private true 2>/dev/null; then
        echo "SKIP: test_s3_keepfull needs a mount namespace (unshare -m)"
        exit 0
    fi
    exec env CAIRN_KEEPFULL_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/s3_nodes_lib.sh"

SIZE=$((24 << 20))
mkdir -p "$T/mnt"
if ! mount -t tmpfs -o size=$((SIZE + SIZE / 2)) tmpfs "$T/mnt" 2>"$T/mount.err"; then
    echo "SKIP: test_s3_keepfull needs to mount a tmpfs: $(cat "$T/mount.err")"
    exit 0
fi
# The bucket first (s3_lib's own exit step), then the mount, then the nodes
# and $T.
trap 's3_stop; umount -l "$T/mnt" 2>/dev/null; _nodes_cleanup' EXIT

NODE_DIR=$T/mnt/node1 node_start 1 --metrics-listen 127.0.0.1:0
MP=$(sed -n 's/^metrics on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/cairnd$CD_N.out")
blobs_in_lmdb() {
    curl -s --max-time 10 "http://127.0.0.1:$MP/metrics" | sed -n 's/^cairnd_store_blobs //p'
}
write() { # FILE NAME
    at 1 write "main/uploads/$2/blobs/$(digest "$1")" "$1" chunk=1048576
}

# 1. Acknowledged, and in the bucket byte for byte.
head -c "$SIZE" /dev/urandom >"$T/a"
key=$(bucket_key cas main "$T/a")
expect 0 write "$T/a" a && pass "a full disk under LMDB: the write is acknowledged OK" ||
    fail "write a"
[ "$(s3_get_raw "$key" "$T/a.raw")" = 200 ] && cmp -s "$T/a.raw" "$T/a" &&
    pass "the object is in the bucket, byte for byte" || fail "object $key not whole in the bucket"
rm -f "$T/a.raw"

# 2. The local copy after the ack fails for lack of room: reported, not fatal.
# (LMDB turns the short write of a full disk into EIO, so the reason given
# is "database error", not "store is full".)
msg="bucket: $key is in the bucket, but no local copy was kept"
for i in $(seq 1 600); do
    grep -q "$msg" "${NL[1]}" && break
    kill -0 "${NPID[1]}" 2>/dev/null || break
    sleep 0.1
done
grep -q "$msg" "${NL[1]}" &&
    pass "the node reports the local copy was not kept: $(grep -o 'no local copy.*' "${NL[1]}" | head -1)" ||
    fail "no 'no local copy was kept' report: $(grep -i 'bucket:' "${NL[1]}" | tail -3)"
kill -0 "${NPID[1]}" 2>/dev/null && pass "the node is still up" || fail "the node died: $(tail -5 "${NL[1]}")"
[ "$(blobs_in_lmdb)" = 0 ] && pass "LMDB holds no copy" || fail "LMDB holds $(blobs_in_lmdb) blobs, not 0"

# 3. Read through the same node: from the bucket, whole.
expect 0 at 1 read "main/blobs/$(digest "$T/a")" && cmp -s "$T/last.out" "$T/a" &&
    pass "a read through the same node returns the blob whole" || fail "read a after the skipped copy"
expect 0 at 1 fmb main "$(digest "$T/a")" && [ ! -s "$T/last.out" ] &&
    pass "FindMissingBlobs through the node: present" || fail "fmb a: $(cat "$T/last.out")"

# 4. The node keeps serving.
head -c $((64 << 10)) /dev/urandom >"$T/s"
expect 0 write "$T/s" s && expect 0 at 1 read "main/blobs/$(digest "$T/s")" &&
    cmp -s "$T/last.out" "$T/s" && pass "a small write and its read afterwards work" ||
    fail "small write and read after the full disk"
grep -E "no local copy|not kept|fill" "${NL[1]}" | sed "s/^/    log: /"
node_stop 1
finish
