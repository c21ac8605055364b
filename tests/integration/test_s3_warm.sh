#!/usr/bin/env bash
# A warm node answers from its LMDB alone (docs/storage.md "Two tiers",
# Reads): against a real Swift with s3api on 127.0.0.1, with node 1 behind
# a proxy that logs every request it forwards (s3_faults_proxy.py, always
# "pass" here):
# 1. after blobs (20 small, one of 40 MiB) and action results were written
#    through node 1, FindMissingBlobs of them, GetActionResult of the
#    results (the completeness check across tiers), BatchReadBlobs,
#    ByteStream reads of the small blobs and of the big one send no request
#    to the bucket, and no cairnd_bucket_*_total counter moves;
# 2. the same after node 1 restarts on its --dir (warm from disk, nothing
#    in memory);
# 3. the check is not blind: a result one of whose blobs only the bucket
#    has (written through node 2) is a hit on node 1 after exactly one
#    HEAD, for that blob, and nothing else; its other blobs are not asked.
. "$(dirname "$0")/s3_nodes_lib.sh"

PX_CTL=$T/proxy.ctl PX_LOG=$T/proxy.log
echo pass >"$PX_CTL"
: >"$PX_LOG"
"$S3_PY" "$(dirname "$0")/s3_faults_proxy.py" "$S3_PORT" "$PX_CTL" "$PX_LOG" "$T/proxy.ready" \
    >"$T/proxy.err" 2>&1 &
PX_PID=$!
for i in $(seq 1 200); do [ -s "$T/proxy.ready" ] && break; sleep 0.05; done
[ -s "$T/proxy.ready" ] || { echo "proxy did not start: $(cat "$T/proxy.err")"; exit 1; }
PROXY=http://127.0.0.1:$(cat "$T/proxy.ready")

# node1_start: node 1 through the proxy on $T/node1, with /metrics; sets MP.
node1_start() {
    S3_ENDPOINT=$PROXY NODE_DIR=$T/node1 node_start 1 --metrics-listen 127.0.0.1:0
    MP=$(sed -n 's/^metrics on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/cairnd$CD_N.out")
}
# bucket_counters: every cairnd_bucket_*_total of node 1, one "name value" a line.
bucket_counters() {
    curl -s --max-time 10 "http://127.0.0.1:$MP/metrics" | grep '^cairnd_bucket_.*_total '
}
# requests: the lines of the proxy's log once it stopped growing (a line
# is written after its answer went out).
requests() {
    local a b
    b=$(wc -l <"$PX_LOG")
    while sleep 0.3; a=$b; b=$(wc -l <"$PX_LOG"); [ "$a" -ne "$b" ]; do :; done
    echo "$b"
}

node1_start
node_start 2 # straight to the server

# Blobs and results written through node 1: in the bucket and in its LMDB.
mkdir -p "$T/small"
smalls=()
for i in $(seq 1 20); do
    head -c $((1000 + i)) /dev/urandom >"$T/small/$i"
    smalls+=("$(digest "$T/small/$i")")
done
head -c $((40 << 20)) /dev/urandom >"$T/big"
BIG=$(digest "$T/big")
expect 0 at 1 put-many main "$T"/small/* || fail "put-many through node 1"
expect 0 at 1 write "main/uploads/u1/blobs/$BIG" "$T/big" chunk=1048576 || fail "big write through node 1"
for a in 1 2 3; do
    printf 'action %s' "$a" >"$T/action$a"
    expect 0 at 1 ac-put main "$(digest "$T/action$a")" file=a:"${smalls[$a]}" \
        file=b:"${smalls[$((a + 5))]}" file=big:"$BIG" || fail "ac-put $a through node 1"
done
grep -q " 200 forwarded" "$PX_LOG" || fail "the writes did not go through the proxy"

# lookups_and_reads: every lookup and read of what node 1 holds; each must succeed.
lookups_and_reads() {
    expect 0 at 1 fmb main "${smalls[@]}" "$BIG" && [ ! -s "$T/last.out" ] ||
        fail "FindMissingBlobs of present blobs: $(cat "$T/last.out")"
    for a in 1 2 3; do
        expect 0 at 1 ac-get main "$(digest "$T/action$a")" || fail "GetActionResult $a"
    done
    expect 0 at 1 get main "${smalls[@]}" && [ "$(grep -c ' OK ' "$T/last.out")" -eq 20 ] ||
        fail "BatchReadBlobs of 20"
    for i in 1 7 20; do
        expect 0 at 1 read "main/blobs/${smalls[$((i - 1))]}" && cmp -s "$T/last.out" "$T/small/$i" ||
            fail "ByteStream read of small blob $i"
    done
    expect 0 at 1 read "main/blobs/$BIG" && cmp -s "$T/last.out" "$T/big" || fail "ByteStream read of the big blob"
}

# 1. and 2.: the same on the running node and after a restart on its --dir.
for when in "after the writes" "after a restart on its --dir"; do
    if [ "$when" != "after the writes" ]; then
        node_stop 1
        node1_start
    fi
    bucket_counters >"$T/m0"
    r0=$(requests)
    lookups_and_reads
    bucket_counters >"$T/m1"
    r1=$(requests)
    [ "$r1" -eq "$r0" ] &&
        pass "warm node, $when: lookups and reads sent no request to the bucket" ||
        { fail "warm node, $when: $((r1 - r0)) bucket requests"; tail -n +$((r0 + 1)) "$PX_LOG" | head; }
    [ -s "$T/m0" ] && cmp -s "$T/m0" "$T/m1" &&
        pass "warm node, $when: no cairnd_bucket_*_total moved" ||
        fail "warm node, $when: counters moved: $(diff "$T/m0" "$T/m1" | grep '^>' | tr '\n' ' ')"
done

# 3. A result whose blob only the bucket has: one HEAD, for that blob.
head -c 5000 /dev/urandom >"$T/only"
expect 0 at 2 put main "$T/only" || fail "put through node 2"
printf 'action 4' >"$T/action4"
expect 0 at 1 ac-put main "$(digest "$T/action4")" file=a:"${smalls[0]}" file=o:"$(digest "$T/only")" \
    file=big:"$BIG" || fail "ac-put 4 through node 1"
r0=$(requests)
expect 0 at 1 ac-get main "$(digest "$T/action4")" || fail "GetActionResult 4 (its blob in the bucket)"
tail -n +$((r0 + 1)) "$PX_LOG" >"$T/new"
[ "$(wc -l <"$T/new")" -eq 1 ] && grep -q "^HEAD /$S3_BUCKET/$(bucket_key cas main "$T/only") 200 " "$T/new" &&
    pass "a result with a blob only the bucket has: a hit after one HEAD, for that blob" ||
    { fail "a result with a blob only in the bucket: requests:"; cat "$T/new"; }

kill "$PX_PID" 2>/dev/null
wait "$PX_PID" 2>/dev/null
node_stop 1
node_stop 2
finish
