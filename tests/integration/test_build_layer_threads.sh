#!/usr/bin/env bash
# The layer compressors use worker threads (CAIRN_LAYER_THREADS) without
# changing a byte: the same Dockerfile built with --source-date-epoch in
# fresh stores with 1 and 2 workers gives the same layer digests and image,
# for gzip and for zstd; the same diff_ids across gzip, zstd and none; every
# blob passes gzip -t / zstd -t. The layers span many gzip blocks and zstd
# jobs, with text, random (stored) and empty content.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
# One import, copied into each store: an import stamps its time into the
# base's config, which would make the images differ for another reason.
CAIRN_ROOT="$T/base" "$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

ctx="$T/ctx"
mkdir -p "$ctx/data"
seq 1 400000 > "$ctx/data/text.txt"             # ~2.7 MB, compresses
head -c 3000000 /dev/urandom > "$ctx/data/noise" # stored blocks
: > "$ctx/data/empty"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
COPY data/ /data/
RUN cat /data/text.txt /data/noise /data/text.txt > /data/mix && rm /data/empty
DF

# build ROOT THREADS COMPRESSION: prints "digest diff_id" per layer.
build() {
    cp -a "$T/base" "$T/$1"
    CAIRN_ROOT="$T/$1" CAIRN_LAYER_THREADS=$2 "$CAIRN" build --progress plain \
        --source-date-epoch 1000 --compression "$3" -t threads "$ctx" > "$T/$1.out" 2>&1 ||
        { cat "$T/$1.out"; fail "build $1"; }
    CAIRN_ROOT="$T/$1" "$CAIRN" inspect threads |
        jq -r '.[0].Store.Layers[1:][] | "\(.Digest) \(.DiffID)"'
}

for comp in gzip zstd; do
    one=$(build "$comp-1" 1 "$comp")
    two=$(build "$comp-2" 2 "$comp")
    assert_eq "$(wc -l <<<"$one")" 2 "$comp: layers built"
    assert_eq "$two" "$one" "$comp: layer digests with 2 workers against 1"
    assert_eq "$(CAIRN_ROOT="$T/$comp-2" "$CAIRN" images -q threads)" \
        "$(CAIRN_ROOT="$T/$comp-1" "$CAIRN" images -q threads)" "$comp: image id"
    while read -r digest _; do
        blob="$T/$comp-2/blobs/sha256/${digest#sha256:}"
        [ -f "$blob" ] || fail "$comp: blob $digest not in the store"
        if [ "$comp" = gzip ]; then
            gzip -t < "$blob" || fail "gzip -t refuses $digest"
        else
            zstd -q -t < "$blob" || fail "zstd -t refuses $digest"
        fi
    done <<<"$two"
    cut -d' ' -f2 <<<"$one" > "$T/diff_ids.$comp"
done
none=$(build none-2 2 none)
cut -d' ' -f2 <<<"$none" > "$T/diff_ids.none"
cmp -s "$T/diff_ids.gzip" "$T/diff_ids.zstd" || fail "diff_ids differ between gzip and zstd"
cmp -s "$T/diff_ids.gzip" "$T/diff_ids.none" || fail "diff_ids differ between gzip and none"

echo "test_build_layer_threads: all passed"
