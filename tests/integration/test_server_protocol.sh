#!/usr/bin/env bash
# cairnd end to end: every REAPI cache RPC against the real server.
. "$(dirname "$0")/server_lib.sh"

cd_start

# Health and capabilities.
expect 0 probe health && grep -q 'status=1' "$T/last.out" && pass "health SERVING"
expect $NOT_FOUND probe health no.such.Service && pass "health of an unknown service"
expect 0 probe caps
grep -q 'digest_functions=1 update_enabled=1 max_batch=4194304 symlink_strategy=2 low=2.0 high=2.' "$T/last.out" \
    && pass "capabilities: $(cat "$T/last.out")" || fail "capabilities: $(cat "$T/last.out")"

# CAS: BatchUpdate / FindMissing / BatchRead.
echo hello >"$T/a"
head -c 100000 /dev/urandom >"$T/b"
A=$(digest "$T/a"); B=$(digest "$T/b")
EMPTY=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0
expect 0 probe fmb "" "$A" "$B" "$EMPTY"
[ "$(sort "$T/last.out")" = "$(printf '%s\n%s\n' "$A" "$B" | sort)" ] \
    && pass "FindMissingBlobs lists both, not the empty blob" || fail "fmb before: $(cat "$T/last.out")"
expect 0 probe put "" "$T/a" && expect 0 probe put "" "$T/b"
expect 0 probe fmb "" "$A" "$B" && [ ! -s "$T/last.out" ] && pass "nothing missing after upload"
expect 0 probe get "" "$B" && cmp -s "$T/last.out" "$T/b" && pass "BatchReadBlobs returns the bytes"
expect $NOT_FOUND probe get "" "$(printf 'f%.0s' $(seq 64))/5" && pass "BatchReadBlobs of a missing blob"

# Instances are separate namespaces.
expect 0 probe fmb other "$A" && grep -q "$A" "$T/last.out" && pass "blob of '' is missing in 'other'"
expect 0 probe put main/pr "$T/a"
expect 0 probe fmb main/pr "$A" && [ ! -s "$T/last.out" ] && pass "multi-segment instance"

# Action cache: miss, update, hit, completeness.
ACT=$(echo action1 | sha256sum | cut -c1-64)/8
expect_msg $NOT_FOUND 'no action result' probe ac-get "" "$ACT"
expect 0 probe ac-put "" "$ACT" "file=out/a:$A" "stdout=$B"
expect 0 probe ac-get "" "$ACT" && grep -q "file out/a $A" "$T/last.out" && pass "GetActionResult hit"
expect $NOT_FOUND probe ac-get other "$ACT" && pass "AC entry is per instance"
MISSING=$(printf '0%.0s' $(seq 64))/7
ACT2=$(echo action2 | sha256sum | cut -c1-64)/8
expect 0 probe ac-put "" "$ACT2" "file=x:$A" "file=y:$MISSING"
expect_msg $NOT_FOUND 'references is missing' probe ac-get "" "$ACT2"
ACT3=$(echo action3 | sha256sum | cut -c1-64)/8
expect 0 probe ac-put "" "$ACT3" "file=x:$A" "stdout=$MISSING"
expect_msg $NOT_FOUND 'references is missing' probe ac-get "" "$ACT3"
ACT4=$(echo action4 | sha256sum | cut -c1-64)/8
expect 0 probe ac-put "" "$ACT4" "tree=dir:$MISSING"
expect_msg $NOT_FOUND 'references is missing' probe ac-get "" "$ACT4"
expect 0 probe ac-put "" "$ACT4" "tree=dir:$B"
expect 0 probe ac-get "" "$ACT4" && pass "result with a present tree digest hits"

# ByteStream Read: whole, offset, limit, chunking.
head -c 3500000 /dev/urandom >"$T/big"
BIG=$(digest "$T/big")
expect 0 probe write "uploads/$(cat /proc/sys/kernel/random/uuid)/blobs/$BIG" "$T/big" chunk=1000000
grep -q "committed_size=3500000" "$T/last.out" && pass "ByteStream Write committed" || fail "write: $(cat "$T/last.out")"
expect 0 probe read "blobs/$BIG" && cmp -s "$T/last.out" "$T/big" && pass "ByteStream Read returns the blob"
grep -q 'messages=4 max_message=1048576' "$T/last.err" && pass "read in chunks of at most 1 MiB" \
    || fail "chunking: $(cat "$T/last.err")"
expect 0 probe read "blobs/$BIG" 1000 500 && cmp -s "$T/last.out" <(tail -c +1001 "$T/big" | head -c 500) \
    && pass "read_offset + read_limit"
expect 0 probe read "blobs/$BIG" 3500000 && [ ! -s "$T/last.out" ] && pass "read at offset == size is empty"
expect 0 probe read "blobs/$EMPTY" && [ ! -s "$T/last.out" ] && pass "empty blob always readable"
expect $NOT_FOUND probe read "blobs/$MISSING" && pass "read of a missing blob"

# Write of a blob that exists ends at once with its full size.
expect 0 probe write "uploads/u2/blobs/$BIG" "$T/big" count=1000 finish=0
grep -q "committed_size=3500000" "$T/last.out" && pass "write of an existing blob short-circuits"
expect 0 probe qws "uploads/u2/blobs/$BIG" && grep -q 'committed_size=3500000 complete=1' "$T/last.out" \
    && pass "QueryWriteStatus of a stored blob"

# Resumable write: half, stop (no finish), query, resume.
head -c 2000000 /dev/urandom >"$T/c"
C=$(digest "$T/c")
RES="inst/uploads/u3/blobs/$C/meta/data"
expect $INVALID_ARGUMENT probe write "$RES" "$T/c" count=1200000 finish=0 chunk=300000
expect 0 probe qws "$RES" && grep -q 'committed_size=1200000 complete=0' "$T/last.out" \
    && pass "QueryWriteStatus after a partial write" || fail "qws: $(cat "$T/last.out")"
expect 0 probe fmb inst "$C" && grep -q "$C" "$T/last.out" && pass "partial upload is not visible"
expect 0 probe write "$RES" "$T/c" from=1200000
expect 0 probe read "inst/blobs/$C" && cmp -s "$T/last.out" "$T/c" && pass "resumed upload complete and correct"
expect $NOT_FOUND probe qws "uploads/nobody/blobs/$C" && pass "QueryWriteStatus of an unknown upload"

# Unknown method.
echo -n "" >"$T/empty"
expect $UNIMPLEMENTED probe raw /no.such.Service/Method "$T/empty" && pass "unknown method UNIMPLEMENTED"

cd_stop
grep -q 'summary (exit): requests=[1-9]' "$CD_LOG" && pass "exit summary with counts" || fail "summary"
grep -q 'cache is OPEN' "$CD_LOG" && pass "open server says so at start-up"
finish
