#!/usr/bin/env bash
# The bucket's transient and permanent faults (docs/storage.md "Failures"),
# against a real Swift with s3api on 127.0.0.1, through a fault injector in
# front of it (s3_faults_proxy.py: forwards, or answers the next N requests
# 503 SlowDown / 500 itself, and logs each request's signed headers):
# 1. 503 SlowDown and 500 on writes, reads, HEADs, action results, the parts
#    of a multipart upload and ranged GETs (also dropped halfway) are
#    retried: the calls succeed, and the proxy counted the answers it made
#    up (so a client that did not retry would fail here); a
#    CompleteMultipartUpload whose answer is lost is acknowledged once the
#    object is checked (NoSuchUpload on the retry, as S3 says it: size and
#    the parts' multipart ETag), not when the object is not these parts;
# 2. a permanent 503: a write fails UNAVAILABLE in a bounded time (no hang)
#    and nothing reaches the bucket; blobs on the node's disk still read,
#    a blob only the bucket has is UNAVAILABLE (not NOT_FOUND);
#    FindMissingBlobs of a blob only the bucket has says missing (never
#    present); the log names SlowDown;
# 3. AWS_SESSION_TOKEN goes out as x-amz-security-token on every request,
#    signed (in SignedHeaders), and never appears in cairnd's log or output;
# 4. a clock an hour off (faketime): the start-up check fails naming the
#    clock (RequestTimeTooSkewed); a clock that jumps later fails writes
#    UNAVAILABLE with RequestTimeTooSkewed in the log.
. "$(dirname "$0")/s3_nodes_lib.sh"

PX_CTL=$T/proxy.ctl PX_LOG=$T/proxy.log
echo pass >"$PX_CTL"
"$S3_PY" "$(dirname "$0")/s3_faults_proxy.py" "$S3_PORT" "$PX_CTL" "$PX_LOG" "$T/proxy.ready" \
    >"$T/proxy.err" 2>&1 &
PX_PID=$!
for i in $(seq 1 200); do [ -s "$T/proxy.ready" ] && break; sleep 0.05; done
[ -s "$T/proxy.ready" ] || { echo "proxy did not start: $(cat "$T/proxy.err")"; exit 1; }
PROXY=http://127.0.0.1:$(cat "$T/proxy.ready")
px() { echo "$*" >"$PX_CTL"; }
# injected STATUS: how many answers the proxy made up so far
injected() { grep -c " $1 injected " "$PX_LOG" || true; }

TOKEN=tok-4242-session-secret
S3_ENDPOINT=$PROXY AWS_SESSION_TOKEN=$TOKEN node_start 1
node_start 2 # straight to the server

# 1. Transient faults.
head -c 300000 /dev/urandom >"$T/a"
px 503 3
expect 0 at 1 put main "$T/a" && [ "$(injected 503)" -eq 3 ] &&
    pass "BatchUpdateBlobs through 3 x 503 SlowDown: acknowledged after retries" ||
    fail "503 x3: injected $(injected 503)"
expect 0 at 2 get main "$(digest "$T/a")" && cmp -s "$T/last.out" "$T/a" &&
    pass "and the blob is in the bucket (read through node 2)" || fail "blob a not in the bucket"

head -c 3000000 /dev/urandom >"$T/b"
px 500 2
expect 0 at 1 write "main/uploads/u1/blobs/$(digest "$T/b")" "$T/b" chunk=1048576 &&
    [ "$(injected 500)" -eq 2 ] && pass "ByteStream Write through 2 x 500: acknowledged after retries" ||
    fail "500 x2: injected $(injected 500)"
expect 0 at 2 read "main/blobs/$(digest "$T/b")" && cmp -s "$T/last.out" "$T/b" ||
    fail "blob b not in the bucket"

# A read of a blob only the bucket has (put through node 2).
head -c 200000 /dev/urandom >"$T/c"
expect 0 at 2 put main "$T/c" || fail "put c"
px 503 2
before=$(injected 503)
expect 0 at 1 get main "$(digest "$T/c")" && cmp -s "$T/last.out" "$T/c" &&
    [ "$(injected 503)" -eq $((before + 2)) ] &&
    pass "a read from the bucket through 2 x 503: served" || fail "read c through 503s"
grep -q "GET /$S3_BUCKET/$(bucket_key cas main "$T/c") 20[06] forwarded" "$PX_LOG" ||
    { fail "the read was not forwarded after the faults"; grep GET "$PX_LOG"; }

# Big blobs: a multipart upload and parallel ranged GETs (parts of 16 MiB)
# through faults.
head -c $((40 << 20)) /dev/urandom >"$T/big"
# The first request initiates the upload: the faults fall on the parts,
# sent again from the file.
px 503 3 after 1
before=$(injected 503)
expect 0 at 1 write "main/uploads/u3/blobs/$(digest "$T/big")" "$T/big" chunk=1048576 &&
    [ "$(injected 503)" -eq $((before + 3)) ] &&
    grep -q "PUT /$S3_BUCKET/$(bucket_key cas main "$T/big")?partNumber=.* 503 injected" "$PX_LOG" &&
    grep -q "POST /$S3_BUCKET/$(bucket_key cas main "$T/big")?uploadId=.* 200 forwarded" "$PX_LOG" &&
    pass "a 40 MiB multipart upload through 3 x 503: acknowledged" || fail "multipart upload through 503s"
expect 0 at 2 read "main/blobs/$(digest "$T/big")" && cmp -s "$T/last.out" "$T/big" &&
    pass "and it reads back whole through node 2" || fail "big blob not whole in the bucket"
head -c $((40 << 20)) /dev/urandom >"$T/big2"
expect 0 at 2 write "main/uploads/u4/blobs/$(digest "$T/big2")" "$T/big2" chunk=1048576 || fail "write big2"
px 500 3
before=$(injected 500)
expect 0 at 1 read "main/blobs/$(digest "$T/big2")" && cmp -s "$T/last.out" "$T/big2" &&
    [ "$(injected 500)" -eq $((before + 3)) ] &&
    pass "a 40 MiB read from the bucket through 3 x 500: whole" || fail "big read through 500s"
# resumed_ranges FILE: some GET of FILE's object asked for a range that
# starts inside a 16 MiB part: a resumption after the bytes delivered.
resumed_ranges() {
    grep "GET /$S3_BUCKET/$(bucket_key cas main "$1") " "$PX_LOG" |
        sed -n 's/.* range=bytes=\([0-9]*\)-.*/\1/p' | awk '$1 % 16777216 { f = 1 } END { exit !f }'
}
# Connections dropped halfway through the answer: the ranges resume.
head -c $((40 << 20)) /dev/urandom >"$T/big3"
expect 0 at 2 write "main/uploads/u5/blobs/$(digest "$T/big3")" "$T/big3" chunk=1048576 || fail "write big3"
px 0 2
expect 0 at 1 read "main/blobs/$(digest "$T/big3")" && cmp -s "$T/last.out" "$T/big3" &&
    [ "$(grep -c " cut " "$PX_LOG")" -eq 2 ] && resumed_ranges "$T/big3" &&
    pass "a 40 MiB read through 2 connections dropped halfway: whole" ||
    fail "big read through dropped connections: $(grep -c " cut " "$PX_LOG") cut"
px pass

# A CompleteMultipartUpload whose answer is lost (the proxy forwards it and
# drops the answer): the upload completed, the node cannot know, and
# retries. Swift answers the retry 200 (it knows the object's upload id);
# S3 answers NoSuchUpload (the proxy plays that part): the node HEADs the
# object and acknowledges only because it has the size and the multipart
# ETag of these very parts. A NoSuchUpload to a first attempt (the upload
# never completed) is UNAVAILABLE, and nothing is in the bucket.
# completes FILE: CompleteMultipartUpload POSTs of FILE's object seen
completes() { grep -c "^POST /$S3_BUCKET/$(bucket_key cas main "$1")?uploadId=" "$PX_LOG" || true; }
for mode in lost lost-nsu; do
    head -c $((40 << 20)) /dev/urandom >"$T/lc-$mode"
    k=$(bucket_key cas main "$T/lc-$mode")
    retry=$([ $mode = lost ] && echo "200 forwarded" || echo "404 injected")
    px "$mode" 1
    expect 0 at 1 write "main/uploads/lc-$mode/blobs/$(digest "$T/lc-$mode")" "$T/lc-$mode" chunk=1048576 &&
        [ "$(completes "$T/lc-$mode")" -eq 2 ] &&
        grep "^POST /$S3_BUCKET/$k?uploadId=" "$PX_LOG" | head -1 | grep -q " 200 dropped " &&
        grep "^POST /$S3_BUCKET/$k?uploadId=" "$PX_LOG" | tail -1 | grep -q " $retry " &&
        { [ $mode = lost ] || grep -q "^HEAD /$S3_BUCKET/$k 200 " "$PX_LOG"; } &&
        pass "complete's answer lost, retry answered $retry: acknowledged after exactly 2 completes" ||
        fail "lost complete ($mode): $(grep "^POST /$S3_BUCKET/$k" "$PX_LOG")"
    px pass
    [ "$(s3_get_raw "$k" "$T/lc.back")" = 200 ] && cmp -s "$T/lc.back" "$T/lc-$mode" &&
        pass "and the object is in the bucket, byte for byte" || fail "lost complete ($mode): object not right"
    rm -f "$T/lc.back"
done
head -c $((40 << 20)) /dev/urandom >"$T/lc-nsu"
k=$(bucket_key cas main "$T/lc-nsu")
px nsu 1
expect $UNAVAILABLE at 1 write "main/uploads/lc-nsu/blobs/$(digest "$T/lc-nsu")" "$T/lc-nsu" chunk=1048576 &&
    [ "$(completes "$T/lc-nsu")" -eq 1 ] && [ "$(s3_get_raw "$k" "$T/gone")" = 404 ] &&
    pass "NoSuchUpload to the first complete: UNAVAILABLE, one complete, no object" ||
    fail "nsu on the first complete: $(grep "^POST /$S3_BUCKET/$k" "$PX_LOG")"
# ... and when the name holds an object of the right size but other bytes
# (not what these parts make: another multipart ETag, or none), the
# NoSuchUpload is not taken for success either.
head -c $((40 << 20)) /dev/urandom >"$T/lc-other"
s3_put_raw "$k" "$T/lc-other" || fail "s3_put_raw lc-other"
px nsu 1 after 0 # (another line than the last: the proxy counts anew)
expect $UNAVAILABLE at 1 write "main/uploads/lc-nsu2/blobs/$(digest "$T/lc-nsu")" "$T/lc-nsu" chunk=1048576 &&
    grep -q "^HEAD /$S3_BUCKET/$k 200 " "$PX_LOG" &&
    pass "NoSuchUpload, an object of the right size but not these parts' ETag: UNAVAILABLE" ||
    fail "nsu with a same-size object: $(grep "^[A-Z]* /$S3_BUCKET/$k" "$PX_LOG" | tail -3)"
px pass

# 2. A permanent 503.
px 503 always
head -c 100000 /dev/urandom >"$T/d"
before=$(injected 503)
t0=$(date +%s%N)
expect $UNAVAILABLE timeout 60 "$PROBE" --addr "127.0.0.1:${NP[1]}" put main "$T/d" &&
    pass "permanent 503: BatchUpdateBlobs is UNAVAILABLE (within the 60 s bound)"
echo "note: gave up after $((($(date +%s%N) - t0) / 1000000)) ms"
tries=$(($(injected 503) - before))
[ "$tries" -ge 2 ] && [ "$tries" -le 8 ] && pass "permanent 503: $tries attempts, then gave up" ||
    fail "permanent 503: $tries attempts"
grep -q 'SlowDown' "${NL[1]}" && pass "the log names SlowDown" || fail "no SlowDown in node 1's log"
[ "$(s3_get_raw "$(bucket_key cas main "$T/d")" "$T/gone")" = 404 ] &&
    pass "permanent 503: nothing reached the bucket" || fail "d is in the bucket"
expect 0 at 1 get main "$(digest "$T/a")" && cmp -s "$T/last.out" "$T/a" &&
    pass "permanent 503: a blob on the node's disk still reads" || fail "local read under 503"
# In the bucket, not on node 1's disk: missing (safe), never present.
head -c 5000 /dev/urandom >"$T/e"
expect 0 at 2 put main "$T/e" || fail "put e"
expect 0 timeout 60 "$PROBE" --addr "127.0.0.1:${NP[1]}" fmb main "$(digest "$T/e")" "$(digest "$T/a")" &&
    grep -q "$(sha "$T/e")" "$T/last.out" && ! grep -q "$(sha "$T/a")" "$T/last.out" &&
    pass "permanent 503: FindMissingBlobs says missing for what the disk lacks, present for what it holds" ||
    fail "fmb under 503: $(cat "$T/last.out" "$T/last.err")"
expect $UNAVAILABLE timeout 60 "$PROBE" --addr "127.0.0.1:${NP[1]}" get main "$(digest "$T/e")" &&
    pass "permanent 503: reading a blob only the bucket has is UNAVAILABLE, not NOT_FOUND"
head -c 3000000 /dev/urandom >"$T/f"
expect $UNAVAILABLE timeout 60 "$PROBE" --addr "127.0.0.1:${NP[1]}" write \
    "main/uploads/u2/blobs/$(digest "$T/f")" "$T/f" chunk=1048576 &&
    pass "permanent 503: ByteStream Write is UNAVAILABLE"
px pass
# Not half-stored: neither node 1's disk nor the bucket has d or f.
expect 0 at 1 fmb main "$(digest "$T/d")" "$(digest "$T/f")" &&
    grep -q "$(sha "$T/d")" "$T/last.out" && grep -q "$(sha "$T/f")" "$T/last.out" &&
    pass "the refused writes are missing everywhere" || fail "refused writes: $(cat "$T/last.out")"
# Transient faults on HEADs (FindMissingBlobs) and on an action result.
px 503 2
before=$(injected 503)
expect 0 at 1 fmb main "$(digest "$T/e")" && ! grep -q "$(sha "$T/e")" "$T/last.out" &&
    [ "$(injected 503)" -eq $((before + 2)) ] &&
    pass "FindMissingBlobs through 2 x 503: the bucket's blob is present" ||
    fail "fmb through 503s: $(cat "$T/last.out"), injected $(($(injected 503) - before))"
echo action-r >"$T/act"
px 500 1
expect 0 at 1 ac-put main "$(digest "$T/act")" "file=o:$(digest "$T/a")" &&
    expect 0 at 2 ac-get main "$(digest "$T/act")" &&
    pass "UpdateActionResult through a 500: written through, served by node 2" ||
    fail "ac-put through a 500"
px pass
expect 0 at 1 put main "$T/d" && pass "faults gone: the write succeeds" || fail "put d after the faults"

# 3. The session token: sent and signed on every request of node 1.
n1=$(grep -c " token=$TOKEN\$" "$PX_LOG")
nall=$(wc -l <"$PX_LOG")
unsigned=$(grep " token=$TOKEN\$" "$PX_LOG" | grep -vc 'signed=[^ ]*x-amz-security-token' || true)
[ "$n1" -gt 0 ] && [ "$n1" -eq "$nall" ] && [ "$unsigned" -eq 0 ] &&
    pass "AWS_SESSION_TOKEN sent as x-amz-security-token and signed on all $n1 requests" ||
    fail "session token: $n1 of $nall requests carry it, $unsigned unsigned"
node_stop 1
grep -q "$TOKEN" "${NL[1]}" "$T"/cairnd*.out && fail "the session token was printed" ||
    pass "the session token is not in cairnd's log"

# 4. A clock an hour ahead: RequestTimeTooSkewed at start-up.
FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
command -v faketime >/dev/null && [ -e "$FAKETIME_LIB" ] ||
    fail "faketime is not installed (scripts/deps.sh)"
rc=0
ASAN_OPTIONS=$ASAN_OPTIONS:verify_asan_link_order=0 timeout 60 faketime -f '+1h' \
    "$CAIRND" --listen 127.0.0.1:0 --dir "$T/skew" --max-size 1G --backend "$S3_URL" \
    --s3-endpoint "$S3_ENDPOINT" --s3-path-style >"$T/skew.out" 2>"$T/skew.err" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q 'RequestTimeTooSkewed: .*clock' "$T/skew.err"; then
    pass "clock skew at start-up: $(grep 'clock' "$T/skew.err" | head -1)"
else
    fail "clock skew: exit $rc, $(head -3 "$T/skew.err")"
fi

# ... and the clock jumping an hour ahead while cairnd runs: writes fail
# UNAVAILABLE, the log names RequestTimeTooSkewed; back in step, they work.
# (libfaketime rereads the offset file on each call; the monotonic clock
# stays real, so timers and deadlines are untouched.)
echo +0 >"$T/clock"
LD_PRELOAD=$FAKETIME_LIB FAKETIME_TIMESTAMP_FILE=$T/clock \
    FAKETIME_NO_CACHE=1 DONT_FAKE_MONOTONIC=1 ASAN_OPTIONS=$ASAN_OPTIONS:verify_asan_link_order=0 \
    node_start 3
head -c 4000 /dev/urandom >"$T/g"
echo +1h >"$T/clock"
expect $UNAVAILABLE at 3 put main "$T/g" && grep -q 'RequestTimeTooSkewed' "${NL[3]}" &&
    pass "clock skew later: UNAVAILABLE, the log says RequestTimeTooSkewed" ||
    fail "clock skew later: $(grep -i 'bucket' "${NL[3]}" | tail -2)"
echo +0 >"$T/clock"
expect 0 at 3 put main "$T/g" && pass "clock back: the write succeeds" || fail "put g after the clock came back"
node_stop 3

node_stop 2
kill "$PX_PID" 2>/dev/null; wait "$PX_PID" 2>/dev/null
s3_stop
finish
