#!/usr/bin/env bash
# gzip member reuse (docs/build.md "Compression"): after a small file that
# sorts first changes, the rebuilt COPY layer takes most of its members
# from the previous blob (the build report's members_reused), and is byte
# for byte the layer a fresh store (nothing to reuse) builds for the same
# context; gzip -t accepts it; after `cairn prune` deleted the older blob,
# another change still builds the right layer. Members of a blob fetched
# from a shared cache are never recorded (docs/security.md): a store that
# got its layer from cairnd reuses nothing.
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000

busybox_base

ctx=$T/ctx
mkdir -p "$ctx/lib/small"
echo one > "$ctx/lib/a-changed.txt"        # sorts first in the tar
seq 1 300000 > "$ctx/lib/b-text.so"       # ~2 MB that compresses
head -c 1500000 /dev/urandom > "$ctx/lib/c-noise.so"  # stored members
{ seq 1 50000; head -c 400000 /dev/urandom; seq 1 50000; } > "$ctx/lib/d-mixed.so"
for i in $(seq 1 60); do seq "$i" 900 > "$ctx/lib/small/f$i"; done
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox:latest
COPY lib/ /opt/lib/
RUN cat /opt/lib/a-changed.txt > /seen
DF

# copy_layer STORE REPORT: "digest members members_reused" of the COPY step
copy_layer() {
    jq -r '.steps[] | select(.kind == "COPY") | .layer |
        "\(.digest) \(.members) \(.members_reused)"' "$T/$2"
}
# mk STORE OUT: builds ctx in STORE with a report in $T/OUT.json
mk() {
    build "$1" "$2" -t app --progress plain --metadata-file "$T/$2.json" "$ctx"
}
blob_of() { echo "$T/$1/blobs/sha256/${2#sha256:}"; }

newstore A
mk A a1
read -r d1 n1 r1 <<<"$(copy_layer A a1.json)"
[ "$r1" = 0 ] || fail "first build reused $r1 members"
[ "$n1" -ge 10 ] || fail "first build recorded only $n1 members"

# 1. A small change: most members come from the first blob, and the
#    layer is the one a fresh store makes.
echo two > "$ctx/lib/a-changed.txt"
mk A a2
read -r d2 n2 r2 <<<"$(copy_layer A a2.json)"
[ "$d2" != "$d1" ] || fail "the change did not change the layer"
[ "$r2" -ge $((n2 - 1)) ] && [ "$r2" -gt 0 ] &&
    pass "changed build reused $r2 of $n2 members" ||
    fail "changed build reused $r2 of $n2 members"
newstore F
mk F f2
read -r df2 _ rf2 <<<"$(copy_layer F f2.json)"
[ "$df2" = "$d2" ] && pass "reused layer = fresh store's layer ($d2)" ||
    fail "reused layer $d2, fresh store's $df2"
[ "$rf2" = 0 ] || fail "fresh store reused $rf2 members"
[ "$(id_of a2)" = "$(id_of f2)" ] || fail "image ids differ: $(id_of a2) vs $(id_of f2)"
gzip -t < "$(blob_of A "$d2")" && pass "gzip -t accepts the reused layer" ||
    fail "gzip -t refuses $d2"

# 2. Prune deletes the first image's blob; a third change still builds
#    the fresh store's layer, with the right content.
CAIRN_ROOT="$T/A" "$CAIRN" prune -f >"$T/prune.out" 2>&1 || fail "prune: $(cat "$T/prune.out")"
[ ! -e "$(blob_of A "$d1")" ] || fail "prune kept the first blob"
echo three > "$ctx/lib/a-changed.txt"
mk A a3
read -r d3 n3 r3 <<<"$(copy_layer A a3.json)"
[ "$r3" -gt 0 ] || fail "after prune nothing was reused"
newstore G
mk G g3
read -r dg3 _ _ <<<"$(copy_layer G g3.json)"
[ "$d3" = "$dg3" ] && pass "after prune: layer = fresh store's ($r3 of $n3 reused)" ||
    fail "after prune: layer $d3, fresh store's $dg3"
gzip -t < "$(blob_of A "$d3")" || fail "gzip -t refuses $d3"
[ "$(tar -xzOf "$(blob_of A "$d3")" opt/lib/a-changed.txt)" = three ] ||
    fail "the layer does not hold the changed file"
tar -xzOf "$(blob_of A "$d3")" opt/lib/d-mixed.so | cmp -s - "$ctx/lib/d-mixed.so" ||
    fail "the layer's d-mixed.so differs from the context's"

# 3. A store that fetched the layer from a shared cache has nothing to
#    reuse: fetched blobs are never recorded in its member table.
cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
echo four > "$ctx/lib/a-changed.txt"
build A a4 -t app --progress plain --cache "$URL" "$ctx"
newstore R
build R r4 -t app --progress plain --metadata-file "$T/r4.json" --cache "$URL" "$ctx"
[ "$(jq -r '.steps[] | select(.kind == "COPY") | .status' "$T/r4.json")" = remote ] ||
    fail "R did not take the COPY layer from the cache: $(cat "$T/r4")"
read -r d4 _ _ <<<"$(copy_layer R r4.json)"
[ -f "$(blob_of R "$d4")" ] || fail "R's fetched COPY blob is not in its store"
echo five > "$ctx/lib/a-changed.txt"
mk R r5
read -r _ n5 r5 <<<"$(copy_layer R r5.json)"
[ "$n5" -gt 0 ] && [ "$r5" = 0 ] &&
    pass "fetched blob not recorded: 0 of $n5 members reused" ||
    fail "a store with a fetched layer reused $r5 of $n5 members"
cd_stop
finish
