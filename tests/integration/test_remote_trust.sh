#!/usr/bin/env bash
# What the client does with cache entries it cannot use: a layer blob
# corrupted inside the server's store is refused (its digest is checked
# while it streams) and the step runs; an action result in the old format
# (the layer record in a separate layer.json blob, no node properties) is
# a quiet miss that the next upload replaces; the record a cairn result
# carries is the one in the action result's node properties; local hits
# that the server lacks are uploaded.
. "$(dirname "$0")/remote_lib.sh"
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 0; }

hits_at() { awk '/^Step /{s=$2} /Using cache \(remote\)/{print s}' "$T/$1" | tr '\n' ' '; }
export SOURCE_DATE_EPOCH=1700000000

# FROM scratch: `cairn keys` resolves it without a base image, so the test
# knows the action digests.
ctx=$T/ctx
mkdir -p "$ctx"
printf 'FROM scratch\nCOPY one /one\nCOPY two /two\nCOPY three /three\n' >"$ctx/Dockerfile"
for f in one two three; do head -c 3000 /dev/urandom | base64 >"$ctx/$f"; done
build REF ref -t t "$ctx"
CAIRN_ROOT="$T/REF" "$CAIRN" keys --json "$ctx" >"$T/keys.json" || fail "keys --json"
action() { jq -r ".[$1].key + \"/\" + (.[$1].material_size|tostring)" "$T/keys.json"; }

CD_DIR=$T/srv cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
build A a1 -t t --cache "$URL" "$ctx"
summary a1 | grep -q '0 remote hits, 3 run' || fail "A: $(summary a1)"

# 1. The result is one output file, `layer`, whose node properties say
# what the layer is; its digest is the layer blob's.
probe ac-get main "$(action 2)" >"$T/ac2" || fail "ac-get step 3"
layer3=$(jq -r '.layers[1].digest' "$T/A/blobs/sha256/$(jq -r '.manifests[0].digest' "$T/A/index.json" | cut -d: -f2)")
grep -qx "file layer ${layer3#sha256:}/[0-9]*" "$T/ac2" &&
    grep -qx 'prop layer cairn.diff_id=sha256:[0-9a-f]\{64\}' "$T/ac2" &&
    grep -qx 'prop layer cairn.media_type=application/vnd.oci.image.layer.v1.tar+gzip' "$T/ac2" &&
    [ "$(grep -c '^file ' "$T/ac2")" -eq 1 ] && pass "action result: one layer file with its record in node properties" ||
    fail "action result: $(cat "$T/ac2")"

# 2. Corrupt step 3's layer inside the server's LMDB file (the same length,
# one byte changed in each copy), restart the server, build on a fresh
# store: that layer is refused, its step runs, the others hit. The server
# runs with --no-read-verify, so it serves the wrong bytes as a cache that
# does not verify would, and the client's own check is what is tested
# (cairnd's verification: test_server_corrupt_blob.sh).
cd_stop
blob=$T/A/blobs/sha256/${layer3#sha256:}
python3 - "$T/srv" "$blob" <<'PY' || fail "could not plant the corrupt blob"
import os, sys
blob = open(sys.argv[2], 'rb').read()
n = 0
for name in os.listdir(sys.argv[1]):
    path = os.path.join(sys.argv[1], name)
    data = bytearray(open(path, 'rb').read())
    at = data.find(blob)
    while at >= 0:
        data[at + len(blob) // 2] ^= 0xff
        n += 1
        at = data.find(blob, at + 1)
    open(path, 'wb').write(data)
sys.exit(0 if n > 0 else 1)
PY
CD_DIR=$T/srv cd_start --no-read-verify
URL=grpc://127.0.0.1:$CD_PORT/main
build B b1 -t t --cache "$URL" --cache-mode read "$ctx"
[ "$(hits_at b1)" = "2/4 4/4 " ] || fail "corrupt blob: remote hits at '$(hits_at b1)', want '2/4 4/4 '"
# The blob is checked as it streams: the flipped byte breaks the gzip
# stream (or, where it does not, the digest) before the download ends.
grep -q "warning: .*layer of step key .* refused: .*\(arrived as\|gzip\|invalid\|incorrect\)" "$T/b1" || fail "corrupt blob: no warning: $(cat "$T/b1")"
[ "$(id_of b1)" = "$(id_of ref)" ] && pass "corrupt blob in the server's store refused, step ran, same image" ||
    fail "corrupt blob: image $(id_of b1) != $(id_of ref)"

cd_stop

# 3. On a fresh server: an old-format result for step 2 (layer.json
# beside the layer, no properties) is a miss without a warning; a
# readwrite build replaces it, so the next fresh store hits.
cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
build A a2 -t t --no-cache --cache "$URL" "$ctx"
echo '{"diffId":"sha256:0","empty":false}' >"$T/layer.json"
expect 0 probe put main "$T/layer.json" || fail "put layer.json"
layer2=$(jq -r '.layers[0].digest' "$T/A/blobs/sha256/$(jq -r '.manifests[0].digest' "$T/A/index.json" | cut -d: -f2)")
expect 0 probe ac-put main "$(action 1)" "file=layer.json:$(digest "$T/layer.json")" \
    "file=layer:${layer2#sha256:}/$(stat -c %s "$T/A/blobs/sha256/${layer2#sha256:}")" || fail "planting the old result"
build C c1 -t t --cache "$URL" "$ctx"
[ "$(hits_at c1)" = "3/4 4/4 " ] || fail "old result: remote hits at '$(hits_at c1)', want '3/4 4/4 '"
grep -qi 'warning' "$T/c1" && fail "old result: warnings: $(grep -i warning "$T/c1")"
[ "$(id_of c1)" = "$(id_of ref)" ] || fail "old result: image $(id_of c1)"
build D d1 -t t --cache "$URL" --cache-mode read "$ctx"
[ "$(hits_at d1)" = "2/4 3/4 4/4 " ] && pass "old-format result: quiet miss, replaced by the next upload" ||
    fail "old result was not replaced: hits at '$(hits_at d1)'"
cd_stop

# 4. A wiped server (a fresh cairnd) is refilled by a build whose steps
# are all local hits: each is looked up in the background and uploaded
# when missing. A second such build finds them there and uploads nothing.
cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
build A a3 -t t --cache "$URL" "$ctx"
summary a3 | grep -qE '3 local hits, 0 remote hits, 0 run, 0 bytes down, [1-9][0-9]* bytes up' ||
    fail "local hits not uploaded: $(summary a3)"
build A a4 -t t --cache "$URL" "$ctx"
summary a4 | grep -q '3 local hits, 0 remote hits, 0 run, 0 bytes down, 0 bytes up' ||
    fail "present local hits uploaded again: $(summary a4)"
build E e1 -t t --cache "$URL" --cache-mode read "$ctx"
[ "$(hits_at e1)" = "2/4 3/4 4/4 " ] && [ "$(id_of e1)" = "$(id_of ref)" ] &&
    pass "local hits refill a wiped server; a fresh store then hits everything" ||
    fail "after the refill: hits at '$(hits_at e1)', image $(id_of e1)"
cd_stop
finish
