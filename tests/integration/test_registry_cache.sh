#!/usr/bin/env bash
# A registry and the shared cache together (issue 11, "With --cache"): a
# fresh machine with a warm cairnd and `FROM registry/base` gets the base
# from the registry and every other layer from the cache; nothing is
# downloaded twice: each of the base's blobs is fetched from the registry
# once, no step runs, and a rebuild asks the registry for no blob.
. "$(dirname "$0")/remote_lib.sh"
. "$(dirname "$0")/registry_lib.sh"
export SOURCE_DATE_EPOCH=1700000000
command -v busybox >/dev/null || { echo "SKIP: busybox-static is not installed"; exit 0; }

reg_start_plain
echo base > "$T/base.txt"
reg_oci_image "$T/oci" base "$T/base.txt"
reg_push "$T/oci:base" team/base:v1 || fail "skopeo push"
base=$REG_ADDR/team/base:v1

ctx=$T/ctx
mkdir -p "$ctx/app"
cat > "$ctx/Dockerfile" <<DF
FROM $base
RUN echo RUN-ONE-RAN && mkdir -p /data && cat /base.txt > /data/one
COPY app/ /app/
RUN echo RUN-TWO-RAN && cat /app/* >> /data/one
DF
echo a > "$ctx/app/a"

cd_start
URL=grpc://127.0.0.1:$CD_PORT/main

# blob_gets: the registry's GETs of blobs so far, one line per request path
blob_gets() { grep -oE '"GET /v2/[^ ]*/blobs/sha256:[0-9a-f]{64}' "$REG_ACCESS_LOG" | sort || true; }

# 1. Machine A: an empty store; the base is pulled, every step runs and
# is uploaded.
mkdir -p "$T/A" "$T/B"
build A a1 -t app --cache "$URL" "$ctx"
grep -q "^Status: Downloaded newer image for $base$" "$T/a1" || fail "A did not pull the base: $(cat "$T/a1")"
summary a1 | grep -q ' 0 remote hits, 3 run' || fail "A summary: $(summary a1)"
blob_gets > "$T/gets.a"
base_blobs=$(wc -l < "$T/gets.a")
[ "$base_blobs" -ge 2 ] || fail "A fetched $base_blobs base blobs (want the config and a layer)"

# 2. Machine B: a fresh store. The base comes from the registry (each of
# its blobs once), every step is a remote hit, nothing runs, and the image
# is A's.
build B b1 -t app --cache "$URL" "$ctx"
grep -q "^Status: Downloaded newer image for $base$" "$T/b1" || fail "B did not pull the base: $(cat "$T/b1")"
summary b1 | grep -q ' 3 remote hits, 0 run' || fail "B summary: $(summary b1)"
grep -qx 'RUN-[A-Z]*-RAN' "$T/b1" && fail "B ran a RUN step"
[ "$(id_of b1)" = "$(id_of a1)" ] || fail "B image $(id_of b1) != A image $(id_of a1)"
blob_gets > "$T/gets.ab"
comm -13 "$T/gets.a" "$T/gets.ab" > "$T/gets.b"
[ "$(wc -l < "$T/gets.b")" -eq "$base_blobs" ] ||
    fail "B's blob GETs: $(wc -l < "$T/gets.b"), want $base_blobs: $(cat "$T/gets.b")"
[ -z "$(sort "$T/gets.b" | uniq -d)" ] || fail "B fetched a blob twice: $(sort "$T/gets.b" | uniq -d)"
# The cache sent B the steps' layers only: the base's layer is not among
# what came down, so its bytes were not fetched twice (registry and cache).
for s in A B; do
    CAIRN_ROOT="$T/$s" "$CAIRN" inspect app | jq -r '.[0].RootFS.Layers[]' > "$T/layers.$s" || fail "inspect $s"
done
cmp -s "$T/layers.A" "$T/layers.B" || fail "layers differ between A and B"
down=$(field b1 'bytes down')
base_size=$(find "$REG_STORAGE/docker/registry/v2/blobs" -name data -size +4k -printf '%s\n' | sort -n | tail -1)
[ -n "$down" ] && [ "$down" -lt "$base_size" ] ||
    fail "B took $down bytes from the cache, as much as the base layer ($base_size): it came twice"
pass "B: the base from the registry ($base_blobs blobs), 3 remote hits ($down bytes), same image"

# 3. B rebuilds with the cache: local hits, no blob from the registry.
n=$(blob_gets | wc -l)
build B b2 -t app --cache "$URL" "$ctx"
summary b2 | grep -q '3 local hits, 0 remote hits, 0 run' || fail "B rebuild: $(summary b2)"
[ "$(blob_gets | wc -l)" -eq "$n" ] || fail "a rebuild fetched $(( $(blob_gets | wc -l) - n )) blob(s)"
pass "B rebuild: local hits, no registry blob"

finish
