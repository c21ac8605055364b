#!/usr/bin/env bash
# The written promise of a big blob through a node (docs/storage.md "The
# promise: write-through"): its bytes go to the bucket while they arrive,
# LMDB is filled from the upload's temp file after the acknowledgement.
# Against a real Swift with s3api on 127.0.0.1:
# 1. right after the ack the object is in the bucket, byte for byte (an
#    ack before CompleteMultipartUpload succeeded would fail here), and
#    through the same node FindMissingBlobs says present;
# 2. the local copy is made after the ack: LMDB's blob count reaches it,
#    and with the bucket stopped the node still serves the blob (a local
#    fill lost silently would fail here: UNAVAILABLE);
# 3. kill -9 right after the ack: nothing is lost; the node restarted on
#    its own --dir serves the blob (from LMDB, or filled from the bucket);
# 4. reads through the same node right after the ack (while the local
#    copy is being made) are served whole.
. "$(dirname "$0")/s3_nodes_lib.sh"

node_start 1 --metrics-listen 127.0.0.1:0
MP=$(sed -n 's/^metrics on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/cairnd$CD_N.out")
# blobs_in_lmdb: node 1's cairnd_store_blobs
blobs_in_lmdb() {
    curl -s --max-time 10 "http://127.0.0.1:$MP/metrics" | sed -n 's/^cairnd_store_blobs //p'
}
# wait_blobs N: until node 1's LMDB holds N blobs (at most 120 s)
wait_blobs() {
    local i
    for i in $(seq 1 1200); do
        [ "$(blobs_in_lmdb)" = "$1" ] && return 0
        sleep 0.1
    done
    return 1
}
write() { # NODE FILE NAME
    at "$1" write "main/uploads/$3/blobs/$(digest "$2")" "$2" chunk=1048576
}

# 1. In the bucket at the ack; present and readable through the node.
head -c $((40 << 20)) /dev/urandom >"$T/a"
key=$(bucket_key cas main "$T/a")
expect 0 write 1 "$T/a" a || fail "write a"
[ "$(s3_get_raw "$key" "$T/a.raw")" = 200 ] && cmp -s "$T/a.raw" "$T/a" &&
    pass "at the ack the object is in the bucket, byte for byte" || fail "object $key not whole at the ack"
rm -f "$T/a.raw"
expect 0 at 1 fmb main "$(digest "$T/a")" && [ ! -s "$T/last.out" ] &&
    pass "FindMissingBlobs through the same node right after the ack: present" ||
    fail "fmb after the ack: $(cat "$T/last.out")"

# 2. The local copy after the ack (no read came through node 1: a read of
# a blob LMDB lacks would fill it from the bucket), then the bucket stopped.
wait_blobs 1 && pass "LMDB holds the blob after the ack" ||
    fail "LMDB has $(blobs_in_lmdb) blobs, not 1: the local copy was lost"
grep -q 'no local copy' "${NL[1]}" && fail "a local copy was skipped: $(grep 'no local copy' "${NL[1]}")"
s3_stop
expect 0 at 1 read "main/blobs/$(digest "$T/a")" && cmp -s "$T/last.out" "$T/a" &&
    pass "bucket stopped: the node serves the blob from its disk" || fail "read a with the bucket stopped"
s3_restart

# 3. kill -9 right after the ack, restart on the same --dir.
head -c $((40 << 20)) /dev/urandom >"$T/b"
expect 0 write 1 "$T/b" b || fail "write b"
node_kill 1
[ "$(s3_get_raw "$(bucket_key cas main "$T/b")" "$T/b.raw")" = 200 ] && cmp -s "$T/b.raw" "$T/b" &&
    pass "kill -9 right after the ack: the object is in the bucket" || fail "b not in the bucket after the kill"
rm -f "$T/b.raw"
node_start 1
expect 0 at 1 read "main/blobs/$(digest "$T/b")" && cmp -s "$T/last.out" "$T/b" &&
    pass "the node restarted on its --dir serves it" || fail "b after the restart"

# 4. Reads while the local copy is made (a few at once, right after the ack).
head -c $((64 << 20)) /dev/urandom >"$T/c"
expect 0 write 1 "$T/c" c || fail "write c"
for i in 1 2 3; do
    at 1 read "main/blobs/$(digest "$T/c")" >"$T/c.$i" 2>"$T/c.$i.err" &
    eval "r$i=\$!"
done
ok=1
for i in 1 2 3; do
    eval "wait \$r$i" && cmp -s "$T/c.$i" "$T/c" || { ok=0; echo "    read $i: $(cat "$T/c.$i.err")"; }
    rm -f "$T/c.$i"
done
[ "$ok" -eq 1 ] && pass "3 reads during the local copy: all served whole" || fail "reads during the local copy"
node_stop 1
s3_stop
finish
