#!/usr/bin/env bash
# A blob whose bytes go bad inside cairnd's LMDB file (bit rot, a disk
# error) is never served silently: a whole read ends with DATA_LOSS naming
# the digest, the blob is quarantined (FindMissingBlobs says missing, an
# action result using it is NOT_FOUND), a re-upload stores a good copy;
# BatchReadBlobs fails only the bad blob; `cairnd --verify` finds and
# removes corruption; a cairn build repairs the cache for the next one.
. "$(dirname "$0")/remote_lib.sh"
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 0; }
export SOURCE_DATE_EPOCH=1700000000

# corrupt DIR FILE...: with cairnd stopped, flips one byte in the middle of
# each FILE's bytes wherever they appear in DIR's LMDB file.
corrupt() {
    local dir=$1; shift
    python3 - "$dir" "$@" <<'PY' || fail "could not plant corruption"
import os, sys
path = os.path.join(sys.argv[1], 'data.mdb')
data = bytearray(open(path, 'rb').read())
for f in sys.argv[2:]:
    blob = open(f, 'rb').read()
    mid = len(blob) // 2
    needle = blob[mid:mid + 256]
    at = data.find(needle)
    if at < 0:
        sys.exit('not found: ' + f)
    while at >= 0:
        data[at] ^= 0xff
        at = data.find(needle, at + 1)
open(path, 'wb').write(data)
PY
}
DATA_LOSS=15
rs() { echo "main/blobs/$(digest "$1")"; }

head -c 6000000 /dev/urandom >"$T/big"
for f in a b c d; do head -c 20000 /dev/urandom >"$T/$f"; done
echo action >"$T/action"
SRV=$T/srv
CD_DIR=$SRV cd_start
expect 0 probe write "main/uploads/u1/blobs/$(digest "$T/big")" "$T/big" chunk=1048576 || fail "upload big"
for f in a b c d; do expect 0 probe put main "$T/$f" || fail "put $f"; done
expect 0 probe put main "$T/action" || fail "put action"
expect 0 probe ac-put main "$(digest "$T/action")" "file=out:$(digest "$T/big")" || fail "ac-put"
expect 0 probe ac-get main "$(digest "$T/action")" || fail "ac-get before"
cd_stop

corrupt "$SRV" "$T/big" "$T/b"
CD_DIR=$SRV cd_start
# 1. A read of the whole blob: DATA_LOSS naming the digest; the last
# message (which would complete the wrong bytes) is never sent.
expect_msg $DATA_LOSS "$(sha "$T/big")/6000000 is corrupt" probe read "$(rs "$T/big")"
[ "$(size "$T/last.out")" -lt 6000000 ] && pass "the corrupt blob's last bytes were withheld" ||
    fail "all $(size "$T/last.out") bytes of a corrupt blob were sent"
grep -q " warn blob main/$(sha "$T/big")/6000000 is corrupt" "$CD_LOG" && pass "quarantine logged at warn" ||
    fail "no warning in the log: $(grep -i corrupt "$CD_LOG")"
# 2. Quarantined: missing, and the action result using it is NOT_FOUND.
expect 0 probe fmb main "$(digest "$T/big")" && grep -q "$(sha "$T/big")" "$T/last.out" &&
    pass "FindMissingBlobs reports the quarantined blob missing" || fail "fmb: $(cat "$T/last.out")"
expect $NOT_FOUND probe ac-get main "$(digest "$T/action")" && pass "result using it is NOT_FOUND"
expect $NOT_FOUND probe read "$(rs "$T/big")" && pass "a second read is NOT_FOUND"
# 3. A re-upload stores a good copy that reads back (verified).
expect 0 probe write "main/uploads/u2/blobs/$(digest "$T/big")" "$T/big" chunk=1048576 || fail "re-upload"
expect 0 probe read "$(rs "$T/big")" && cmp -s "$T/last.out" "$T/big" &&
    pass "re-uploaded blob reads back whole" || fail "re-uploaded blob does not read back"
expect 0 probe ac-get main "$(digest "$T/action")" && pass "the action result is complete again"

# 4. BatchReadBlobs: the bad blob gets its own DATA_LOSS, the others are
# served; then it is missing and BatchUpdateBlobs replaces it.
expect 0 probe get main "$(digest "$T/a")" "$(digest "$T/b")" "$(digest "$T/c")" || fail "batch read"
grep -qx "$(digest "$T/a") OK 20000" "$T/last.out" && grep -qx "$(digest "$T/b") DATA_LOSS 0" "$T/last.out" &&
    grep -qx "$(digest "$T/c") OK 20000" "$T/last.out" &&
    grep -q "$(sha "$T/b")/20000 is corrupt" "$T/last.err" &&
    pass "batch read: DATA_LOSS for the bad blob only" || fail "batch read: $(cat "$T/last.out" "$T/last.err")"
expect 0 probe fmb main "$(digest "$T/b")" && grep -q "$(sha "$T/b")" "$T/last.out" || fail "b not missing"
expect 0 probe put main "$T/b" || fail "re-put b"
expect 0 probe get main "$(digest "$T/b")" && cmp -s "$T/last.out" "$T/b" &&
    pass "BatchUpdateBlobs replaced the quarantined blob" || fail "b after re-put"

# 5. A read resumed at an offset (1 MiB in) is verified too; a read that
# stops before the end cannot be, and is served.
cd_stop
corrupt "$SRV" "$T/big"
CD_DIR=$SRV cd_start
expect 0 probe read "$(rs "$T/big")" 0 1000 || fail "a short read of the start"
expect_msg $DATA_LOSS "is corrupt" probe read "$(rs "$T/big")" 1048576
cd_stop
grep -q 'summary (exit).*quarantined=1' "$CD_LOG" && pass "the summary counts quarantined blobs" ||
    fail "summary: $(grep 'summary (exit)' "$CD_LOG")"

# 6. cairnd --verify finds and quarantines corruption in a stopped
# server's directory, exits 1, and 0 once it is clean.
corrupt "$SRV" "$T/c" "$T/d"
expect 1 "$CAIRND" --verify --dir "$SRV" || fail "--verify exit code"
grep -q "corrupt: main/$(sha "$T/c")/20000" "$T/last.out" && grep -q "corrupt: main/$(sha "$T/d")/20000" "$T/last.out" &&
    grep -q '2 corrupt' "$T/last.out" && pass "--verify: $(tail -1 "$T/last.out")" || fail "--verify: $(cat "$T/last.out")"
expect 0 "$CAIRND" --verify --dir "$SRV" && grep -q ' 0 corrupt' "$T/last.out" &&
    pass "--verify again: clean" || fail "--verify again: $(cat "$T/last.out")"
CD_DIR=$SRV cd_start
expect 0 probe fmb main "$(digest "$T/c")" "$(digest "$T/a")" && grep -q "$(sha "$T/c")" "$T/last.out" &&
    ! grep -q "$(sha "$T/a")" "$T/last.out" && pass "after --verify: c missing, a present" ||
    fail "after --verify: $(cat "$T/last.out")"
expect_msg 2 'no store in' "$CAIRND" --verify --dir "$T/nothing-here"
[ ! -e "$T/nothing-here" ] || fail "--verify created a store"
# ... and beside a running server (LMDB's lock file serialises writers).
expect 0 "$CAIRND" --verify --dir "$SRV" || fail "--verify beside a running server"
expect 0 probe get main "$(digest "$T/a")" && cmp -s "$T/last.out" "$T/a" || fail "server after a concurrent --verify"
cd_stop

# 7. Builds: A uploads; a layer goes bad; B (fresh store) reads it,
# gets DATA_LOSS, runs the step and uploads the layer again; C (fresh
# store) then hits every step remotely.
hits_at() { awk '/^Step /{s=$2} /Using cache \(remote\)/{print s}' "$T/$1" | tr '\n' ' '; }
ctx=$T/ctx
mkdir -p "$ctx"
printf 'FROM scratch\nCOPY one /one\nCOPY two /two\nCOPY three /three\n' >"$ctx/Dockerfile"
for f in one two three; do head -c 3000 /dev/urandom | base64 >"$ctx/$f"; done
B=$T/bsrv
CD_DIR=$B cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
build A a1 -t t --cache "$URL" "$ctx"
cd_stop
layer3=$(jq -r '.layers[2].digest' "$T/A/blobs/sha256/$(jq -r '.manifests[0].digest' "$T/A/index.json" | cut -d: -f2)")
corrupt "$B" "$T/A/blobs/sha256/${layer3#sha256:}"
CD_DIR=$B cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
build B b1 -t t --cache "$URL" "$ctx"
[ "$(hits_at b1)" = "2/4 3/4 " ] && [ "$(id_of b1)" = "$(id_of a1)" ] &&
    pass "corrupt layer: its step ran, same image" || fail "B: hits '$(hits_at b1)', image $(id_of b1) vs $(id_of a1)"
build C c1 -t t --cache "$URL" --cache-mode read "$ctx"
[ "$(hits_at c1)" = "2/4 3/4 4/4 " ] && [ "$(id_of c1)" = "$(id_of a1)" ] &&
    pass "after B's re-upload a fresh store hits every step" || fail "C: hits '$(hits_at c1)'"
cd_stop
finish
