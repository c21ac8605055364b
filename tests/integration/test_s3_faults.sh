#!/usr/bin/env bash
# The bucket tier's faults (docs/storage.md "Two tiers"), against a real
# Swift with s3api on 127.0.0.1:
# 1. start-up: a missing bucket, wrong credentials (403, and the secret
#    never printed) and an endpoint nobody listens on stop cairnd with a
#    clear error and a nonzero exit;
# 2. a node killed with -9 in the middle of a stream of uploads: every
#    upload it acknowledged reads back, byte for byte, through another node,
#    and through the killed node when it restarts on its own --dir;
# 3. the bucket stopped under a stream of uploads: writes fail UNAVAILABLE
#    and none that was acknowledged is lost; reads of blobs on the node's
#    disk go on; after a restart writes work again;
# 4. an object corrupted in the bucket is caught by the digest: not
#    served (NOT_FOUND), reported in the log, removed from the bucket, so
#    FindMissingBlobs says missing and a client's upload repairs it; a
#    streamed read of one ends DATA_LOSS before its last bytes; an object
#    of the wrong size is NOT_FOUND, reported and deleted;
# 5. action results: written through, read through another node, and the
#    completeness check counts blobs that only the bucket has.
. "$(dirname "$0")/s3_nodes_lib.sh"

# 1. Start-up checks.
start_fails() { # PATTERN ARGS...: cairnd exits nonzero saying PATTERN
    local pat=$1; shift
    local rc=0
    timeout 60 "$CAIRND" --listen 127.0.0.1:0 --dir "$T/never" --max-size 1G "$@" \
        >"$T/start.out" 2>"$T/start.err" || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -qi -- "$pat" "$T/start.err"; then
        pass "start-up refused: $(grep -i -- "$pat" "$T/start.err" | head -1)"
    else
        fail "start-up with $*: exit $rc, $(cat "$T/start.err" | head -3)"
    fi
    grep -q 'listening on' "$T/start.out" && fail "cairnd served with $*"
}
S3=(--s3-endpoint "$S3_ENDPOINT" --s3-path-style)
start_fails 'no-such-bucket' --backend s3://no-such-bucket "${S3[@]}"
AWS_SECRET_ACCESS_KEY=wrong-secret-3141 start_fails '403\|signature\|denied' --backend "$S3_URL" "${S3[@]}"
grep -q 'wrong-secret-3141' "$T/start.err" "$T/start.out" && fail "the secret key was printed"
start_fails 'at http://127.0.0.1:1: ' --backend "$S3_URL" --s3-endpoint http://127.0.0.1:1 --s3-path-style
start_fails 'needs --s3-endpoint' --backend "$S3_URL"
start_fails 's3://BUCKET' --backend http://x "${S3[@]}"

# --s3-credentials-file comes first: a wrong secret in the environment
# does not matter, and a wrong one in the file stops cairnd.
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$T/creds"
chmod 600 "$T/creds"
AWS_SECRET_ACCESS_KEY=wrong-secret-3141 node_start 9 --s3-credentials-file "$T/creds"
echo creds >"$T/credblob"
expect 0 at 9 put main "$T/credblob" && pass "credentials from --s3-credentials-file" || fail "put with file credentials"
node_stop 9
sed -i 's/^aws_secret_access_key = .*/aws_secret_access_key = wrong-secret-3141/' "$T/creds"
start_fails 'SignatureDoesNotMatch' --backend "$S3_URL" "${S3[@]}" --s3-credentials-file "$T/creds"
grep -q 'wrong-secret-3141' "$T/start.err" "$T/start.out" && fail "the secret key from the file was printed"

# blobs N: makes $T/blob1..N, 200 KB to 2.2 MB, random.
blobs() {
    local i
    for i in $(seq 1 "$1"); do head -c $((i * 100000 + 200000)) /dev/urandom >"$T/blob$i"; done
}
# upload_loop NODE FIRST LAST ACKED: uploads blobs FIRST..LAST through NODE,
# one at a time, appending i to ACKED for each acknowledged; exit codes in
# ACKED.codes.
upload_loop() {
    local n=$1 i rc
    for i in $(seq "$2" "$3"); do
        rc=0
        at "$n" write "main/uploads/k$i/blobs/$(digest "$T/blob$i")" "$T/blob$i" chunk=262144 \
            >/dev/null 2>&1 || rc=$?
        echo "$i $rc" >>"$4.codes"
        [ "$rc" -eq 0 ] && echo "$i" >>"$4"
    done
}
# wait_lines FILE N: until FILE has N lines (at most 120 s)
wait_lines() {
    local i
    for i in $(seq 1 1200); do
        [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
# all_read NODE ACKED: every blob in ACKED reads back whole through NODE
all_read() {
    local i bad=0 n=0
    while read -r i; do
        n=$((n + 1))
        at "$1" read "main/blobs/$(digest "$T/blob$i")" >"$T/back" 2>"$T/back.err" &&
            cmp -s "$T/back" "$T/blob$i" || { bad=$((bad + 1)); echo "    blob$i: $(cat "$T/back.err")"; }
    done <"$2"
    [ "$n" -gt 0 ] && [ "$bad" -eq 0 ]
}

blobs 40
node_start 1
node_start 2

# 2. kill -9 of node 1 while it takes uploads.
upload_loop 1 1 20 "$T/acked1" &
LOOP=$!
wait_lines "$T/acked1" 3 || fail "no upload acknowledged before the kill"
node_kill 1
wait "$LOOP"
all_read 2 "$T/acked1" && pass "kill -9 mid-upload: all $(wc -l <"$T/acked1") acknowledged blobs read back through node 2" ||
    fail "kill -9: an acknowledged blob is lost"
[ "$(wc -l <"$T/acked1")" -lt 20 ] || echo "note: every upload finished before the kill"
# Node 1 again on its own --dir: after a process kill the page cache has
# every commit (synced or not): it opens and serves every acknowledged
# blob, from its disk or, for a blob whose local copy (made after the
# ack) the kill cut short, filled from the bucket.
node_start 1
all_read 1 "$T/acked1" && pass "node 1 restarted after kill -9 on its --dir: all acknowledged blobs served" ||
    fail "node 1 restarted on its --dir: an acknowledged blob is lost"
node_stop 1
# (the bucket line at exit is printed only when a counter is not 0)
fills1=$(bucket_stat "${NL[1]}" | grep -o ' fills=[0-9]*' | cut -d= -f2)
echo "note: node 1 filled ${fills1:-0} of $(wc -l <"$T/acked1") blobs from the bucket after the restart"

# 3. The bucket stopped under a stream of uploads to node 2.
upload_loop 2 21 40 "$T/acked2" &
LOOP=$!
wait_lines "$T/acked2" 2 || fail "no upload acknowledged before the bucket stopped"
s3_stop
wait "$LOOP"
grep -q ' 14$' "$T/acked2.codes" && pass "bucket stopped: uploads fail UNAVAILABLE" ||
    fail "bucket stopped: codes $(tr '\n' ' ' <"$T/acked2.codes")"
grep -v ' 0$' "$T/acked2.codes" | grep -qv ' 14$' && fail "other codes: $(tr '\n' ' ' <"$T/acked2.codes")"
echo action-x >"$T/act"
expect $UNAVAILABLE at 2 ac-put main "$(digest "$T/act")" "file=o:$(digest "$T/blob21")" &&
    pass "bucket stopped: UpdateActionResult is UNAVAILABLE"
head -c 3000 /dev/urandom >"$T/tiny"
expect $UNAVAILABLE at 2 put main "$T/tiny" && pass "bucket stopped: BatchUpdateBlobs is UNAVAILABLE"
first=$(head -1 "$T/acked2")
expect 0 at 2 read "main/blobs/$(digest "$T/blob$first")" && cmp -s "$T/last.out" "$T/blob$first" &&
    pass "bucket stopped: a blob on the node's disk still reads" || fail "local read with the bucket stopped"
expect 0 at 2 fmb main "$(digest "$T/tiny")" && grep -q "$(sha "$T/tiny")" "$T/last.out" &&
    pass "bucket stopped: the refused blob is missing" || fail "fmb tiny: $(cat "$T/last.out")"
grep -q 'bucket: PUT' "${NL[2]}" && pass "the failures are in the log" || fail "no bucket warning in node 2's log"
s3_restart
expect 0 at 2 put main "$T/tiny" && pass "bucket back: writes work again" || fail "write after restart"
node_start 3
all_read 3 "$T/acked2" && pass "bucket stopped: all $(wc -l <"$T/acked2") acknowledged blobs read through node 3" ||
    fail "bucket stop: an acknowledged blob is lost"

# 4. A corrupted object.
head -c 300000 /dev/urandom >"$T/victim"
expect 0 at 2 put main "$T/victim" || fail "put victim"
KEY=$(bucket_key cas main "$T/victim")
s3_corrupt "$KEY" || fail "s3_corrupt"
expect $NOT_FOUND at 3 get main "$(digest "$T/victim")" && pass "a corrupt object is not served (BatchReadBlobs)" ||
    fail "corrupt object: $(head -c 200 "$T/last.err")"
grep -q "object $KEY does not match its digest" "${NL[3]}" && pass "the corrupt object is reported" ||
    fail "no report in node 3's log"
code=$(s3_get_raw "$KEY" "$T/gone")
[ "$code" = 404 ] && pass "the corrupt object was deleted" || fail "corrupt object: HTTP $code"
expect 0 at 3 fmb main "$(digest "$T/victim")" && grep -q "$(sha "$T/victim")" "$T/last.out" ||
    fail "the corrupt blob is not missing"
expect 0 at 3 put main "$T/victim" || fail "re-upload victim"
node_start 4
expect 0 at 4 get main "$(digest "$T/victim")" && cmp -s "$T/last.out" "$T/victim" &&
    pass "a re-upload repaired it" || fail "victim after re-upload"

# ... and streamed (ByteStream Read of a blob only the bucket has): the
# read ends DATA_LOSS and the last bytes are withheld.
head -c 3000000 /dev/urandom >"$T/victim2"
expect 0 at 2 write "main/uploads/v2/blobs/$(digest "$T/victim2")" "$T/victim2" chunk=1048576 || fail "write victim2"
KEY2=$(bucket_key cas main "$T/victim2")
s3_corrupt "$KEY2" || fail "s3_corrupt victim2"
expect 15 at 4 read "main/blobs/$(digest "$T/victim2")" && [ "$(size "$T/last.out")" -lt 3000000 ] &&
    pass "a corrupt object streamed: DATA_LOSS, $(size "$T/last.out") of 3000000 bytes sent" ||
    fail "streamed corrupt object: $(size "$T/last.out") bytes, $(head -c 200 "$T/last.err")"
grep -q "object $KEY2 does not match its digest" "${NL[4]}" || fail "streamed corrupt object not reported"
expect 0 at 4 fmb main "$(digest "$T/victim2")" && grep -q "$(sha "$T/victim2")" "$T/last.out" &&
    pass "and it is missing now (not stored locally, deleted from the bucket)" || fail "victim2 not missing"

# ... and an object of the wrong size (put straight into the bucket under
# a blob's name): NOT_FOUND through both read paths, reported, deleted.
for how in get read; do
    head -c 300000 /dev/urandom >"$T/sb-$how"
    head -c 1000 "$T/sb-$how" >"$T/sb-$how.short"
    k=$(bucket_key cas main "$T/sb-$how")
    s3_put_raw "$k" "$T/sb-$how.short" || fail "s3_put_raw"
    if [ $how = get ]; then
        expect $NOT_FOUND at 4 get main "$(digest "$T/sb-$how")"
    else
        expect $NOT_FOUND at 4 read "main/blobs/$(digest "$T/sb-$how")"
    fi && grep -q "object $k has the wrong size" "${NL[4]}" && [ "$(s3_get_raw "$k" "$T/gone")" = 404 ] &&
        pass "a short object ($how): NOT_FOUND, reported, deleted" || fail "short object ($how)"
done

# 5. Action results across nodes and tiers: blob on node 2's disk and in
# the bucket; node 4 has neither the result nor the blob locally.
echo action-y >"$T/act2"
head -c 100000 /dev/urandom >"$T/out2"
expect 0 at 2 put main "$T/out2" || fail "put out2"
expect 0 at 2 ac-put main "$(digest "$T/act2")" "file=o:$(digest "$T/out2")" || fail "ac-put"
NODE_DIR=$T/node5 node_start 5
expect 0 at 5 ac-get main "$(digest "$T/act2")" && pass "an action result written through node 2 is served by node 5" ||
    fail "ac-get on node 5"
# A result whose blob is nowhere: NOT_FOUND on every node.
echo action-z >"$T/act3"
head -c 1000 /dev/urandom >"$T/never"
expect 0 at 2 ac-put main "$(digest "$T/act3")" "file=o:$(digest "$T/never")" || fail "ac-put act3"
expect $NOT_FOUND at 5 ac-get main "$(digest "$T/act3")" && pass "incomplete across tiers: NOT_FOUND"

for n in 2 3 4 5; do node_stop $n; done
s3_stop
finish
