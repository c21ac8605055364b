#!/usr/bin/env bash
# A big layer (64 MiB of /dev/urandom in a RUN) goes in chunks: PATCHes to
# the newest Location and a closing PUT, and the registry's copy is the
# store's blob. A push killed with -9 in the middle of it leaves the store
# as it was (images, inspect, blobs, nothing left in tmp/), and a second
# push completes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start http

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"
mkdir -p "$T/ctx"
printf 'FROM busybox\nRUN head -c 67108864 /dev/urandom > /big\n' > "$T/ctx/Dockerfile"
img=$REG_ADDR/big/app:v1
"$CAIRN" build -t "$img" "$T/ctx" > "$T/b1" 2>&1 || { cat "$T/b1"; fail "build"; }
big=$(skopeo inspect "oci:$CAIRN_ROOT:$img" | jq -r '.Layers[-1]')

state() {
    "$CAIRN" images --digests --no-trunc | awk '{print $1, $2, $3, $4}'
    "$CAIRN" inspect "$img"
    (cd "$CAIRN_ROOT" && find blobs tmp index.json -printf '%p %s\n' | sort)
}
state > "$T/state0"

# 1. Killed mid-upload: 1 MiB chunks make 64 PATCHes; the kill comes after
# the first one is logged.
CAIRN_PUSH_CHUNK=1048576 "$CAIRN" push "$img" > "$T/p1" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    grep -q '"PATCH /v2/big/app/blobs/uploads/' "$REG_ACCESS_LOG" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
grep -q '"PATCH /v2/big/app/blobs/uploads/' "$REG_ACCESS_LOG" || { cat "$T/p1"; fail "no chunk was sent"; }
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
state > "$T/state1"
grep -q "digest:" "$T/p1" && echo "note: the push finished before the kill"
diff "$T/state0" "$T/state1" > "$T/sdiff" || fail "a killed push changed the store: $(cat "$T/sdiff")"

# 2. A second push completes; the big layer went in chunks to the newest
# Location each time.
before=$(wc -l < "$REG_ACCESS_LOG")
CAIRN_PUSH_CHUNK=16777216 "$CAIRN" push "$img" > "$T/p2" 2>&1 || { cat "$T/p2"; fail "second push"; }
grep -qE "^v1: digest: sha256:[0-9a-f]{64} size: [0-9]+$" "$T/p2" || fail "digest line: $(cat "$T/p2")"
sleep 0.2
tail -n +$((before + 1)) "$REG_ACCESS_LOG" > "$T/log2"
# 64 MiB of random bytes gzip to a bit over 64 MiB: 5 chunks of 16 MiB.
assert_eq "$(grep -cE '"PATCH /v2/big/app/blobs/uploads/[^ ]*_state=[^ ]* HTTP/1.1" 202 ' "$T/log2")" 5 "PATCHes of the big layer"
grep -qE "\"PUT /v2/big/app/blobs/uploads/[^ ]*digest=sha256%3A${big#sha256:} HTTP/1.1\" 201 " "$T/log2" ||
    fail "closing PUT: $(cat "$T/log2")"
cmp "$REG_STORAGE/docker/registry/v2/blobs/sha256/${big:7:2}/${big#sha256:}/data" \
    "$CAIRN_ROOT/blobs/sha256/${big#sha256:}" || fail "the registry's big layer differs"
skopeo inspect --tls-verify=false "docker://$img" > /dev/null || fail "skopeo inspect"
[ -z "$(ls -A "$CAIRN_ROOT/tmp")" ] || fail "tmp/ not empty: $(ls "$CAIRN_ROOT/tmp")"

# 3. Bad CAIRN_PUSH_CHUNK.
CAIRN_PUSH_CHUNK=12 "$CAIRN" push "$img" > "$T/e" 2>&1 && fail "tiny chunk accepted"
grep -q "CAIRN_PUSH_CHUNK must be" "$T/e" || fail "chunk message: $(cat "$T/e")"
echo ok
