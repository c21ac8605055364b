#!/usr/bin/env bash
# A COPY followed by a RUN writes its snapshot while it writes its layer
# (no unpack afterwards), and that snapshot is exactly the tree unpacking
# the layer gives: paths, types, modes (--chmod), owners (--chown by name),
# symlink targets and mtimes clamped by --source-date-epoch, for context
# sources, heredocs, COPY --from a stage and an ADD of a tar (which is not
# mirrored and must fall back to the unpack).
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

epoch=1600000000
ctx="$T/ctx"
mkdir -p "$ctx/src/sub/deeper" "$ctx/src/empty" "$ctx/t"
echo first > "$ctx/src/a.txt"
# Content after a.txt in the layer, big enough that gzip takes a while:
# a.txt's snapshot file is then clearly older than the finished blob.
head -c 30000000 /dev/urandom > "$ctx/src/big.bin"
printf 'x\n' > "$ctx/src/sub/x.c"
printf 'y\n' > "$ctx/src/sub/deeper/y.c"
chmod 0750 "$ctx/src/sub"
chmod 4755 "$ctx/src/sub/x.c"
ln -s ../a.txt "$ctx/src/sub/link"
ln -s /nowhere "$ctx/src/dangling"
touch -d @1000 "$ctx/src/sub/deeper/y.c"        # older than the epoch: kept
touch -h -d @2000 "$ctx/src/dangling"
touch -d @1900000000 "$ctx/src/a.txt"           # newer: clamped
echo inner > "$ctx/t/in.txt"
tar -C "$ctx/t" -cf "$ctx/arch.tar" in.txt
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox AS gen
RUN mkdir -p /out/d && echo gen > /out/d/g.txt && ln -s g.txt /out/d/gl
FROM busybox
COPY --chown=app:extra src/ /app/
COPY --chmod=0600 src/a.txt src/sub/x.c /opt/two/
COPY <<EOF /etc/hello.conf
hello
EOF
COPY --from=gen /out/ /gen/
ADD arch.tar /added/
RUN ls -lnR /app /opt /gen /added > /listing
DF

build() {
    "$CAIRN" build --progress plain --source-date-epoch "$epoch" -t snap "$@" "$ctx" \
        > "$T/build.out" 2>&1 || { cat "$T/build.out"; fail "build $*"; }
}

# layer_field N FIELD: field of the N-th layer (0-based) of the image.
layer_field() {
    "$CAIRN" inspect snap | jq -r ".[0].Store.Layers[$1].$2"
}

# listing DIR: one line per entry under DIR (not DIR itself), sorted.
listing() {
    (cd "$1" && find . -mindepth 1 -printf '%P %y %m %U %G %T@ %s %l\n' | LC_ALL=C sort)
}

build
# Layers: busybox, COPY src/, COPY two files, heredoc, COPY --from, ADD, RUN.
nl=$("$CAIRN" inspect snap | jq '.[0].Store.Layers | length')
assert_eq "$nl" 7 "layers"
copies="1 2 3 4 5"
for i in $copies; do
    s=$(layer_field "$i" Snapshot)
    [ "$s" != null ] && [ -d "$CAIRN_ROOT/$s" ] || fail "layer $i has no snapshot after the build"
    listing "$CAIRN_ROOT/$s" > "$T/mirror.$i"
done

# The COPY wrote its snapshot before its blob was finished: a.txt's inode
# changed (created, chown, chmod, times) before the blob's last write. An
# unpack, which reads the finished blob, could only make it later.
blob1="$CAIRN_ROOT/$(layer_field 1 Path)"
snap1="$CAIRN_ROOT/$(layer_field 1 Snapshot)"
a_ctime=$(stat -c %.9Z "$snap1/app/a.txt")
blob_mtime=$(stat -c %.9Y "$blob1")
awk -v a="$a_ctime" -v b="$blob_mtime" 'BEGIN { exit !(a < b) }' ||
    fail "COPY snapshot not written with the layer (a.txt ctime $a_ctime, blob mtime $blob_mtime)"

# Spot checks of what the listing must show.
grep -qx 'app/a.txt f 644 1000 2000 1600000000.0000000000 6 ' "$T/mirror.1" ||
    fail "a.txt: owner app:extra, clamped mtime: $(grep '^app/a.txt ' "$T/mirror.1")"
grep -qx 'app/sub d 750 1000 2000 .*' "$T/mirror.1" || fail "sub: mode 750: $(grep '^app/sub ' "$T/mirror.1")"
grep -qx 'app/sub/x.c f 4755 1000 2000 .*' "$T/mirror.1" || fail "x.c: setuid kept after chown"
grep -qx 'app/sub/deeper/y.c f 644 1000 2000 1000.0000000000 2 ' "$T/mirror.1" || fail "y.c: old mtime kept"
grep -qx 'app/sub/link l 777 1000 2000 1600000000.0000000000 8 ../a.txt' "$T/mirror.1" ||
    fail "symlink: $(grep '^app/sub/link ' "$T/mirror.1")"
grep -qx 'app/dangling l 777 1000 2000 2000.0000000000 8 /nowhere' "$T/mirror.1" ||
    fail "dangling symlink: $(grep '^app/dangling ' "$T/mirror.1")"
grep -qx 'app/empty d 755 1000 2000 .*' "$T/mirror.1" || fail "empty directory"
grep -qx 'opt/two/x.c f 600 0 0 .*' "$T/mirror.2" || fail "--chmod: $(cat "$T/mirror.2")"
grep -qx 'etc/hello.conf f 644 0 0 1600000000.0000000000 6 ' "$T/mirror.3" || fail "heredoc: $(cat "$T/mirror.3")"
grep -qx 'gen/d/gl l 777 0 0 .* g.txt' "$T/mirror.4" || fail "COPY --from: $(cat "$T/mirror.4")"
grep -qx 'added/in.txt f .*' "$T/mirror.5" || fail "ADD of a tar: $(cat "$T/mirror.5")"

# The reference: the same layers unpacked from their blobs. Remove the
# snapshots and rebuild with a different RUN, which reuses the COPY layers
# from the cache and unpacks them for its overlay.
for i in $copies; do
    rm -rf "${CAIRN_ROOT:?}/$(layer_field "$i" Snapshot)"
done
sed -i 's|> /listing|> /listing2|' "$ctx/Dockerfile"
build
assert_eq "$(grep -c ' ---> Using cache' "$T/build.out")" 6 "cached steps of the rebuild"
for i in $copies; do
    s=$(layer_field "$i" Snapshot)
    [ -d "$CAIRN_ROOT/$s" ] || fail "layer $i not unpacked again"
    listing "$CAIRN_ROOT/$s" > "$T/unpack.$i"
    diff "$T/unpack.$i" "$T/mirror.$i" > "$T/diff.$i" ||
        fail "layer $i: the COPY's snapshot differs from the unpacked layer: $(cat "$T/diff.$i")"
done
# And the reference really came from an unpack (the check above holds for
# mirrors only).
a_ctime=$(stat -c %.9Z "$snap1/app/a.txt")
awk -v a="$a_ctime" -v b="$blob_mtime" 'BEGIN { exit !(a > b) }' ||
    fail "the reference snapshot was not unpacked from the blob"

# The RUN saw the same tree through both kinds of snapshot.
"$CAIRN" build --progress plain --source-date-epoch "$epoch" -t snap2 "$ctx" > /dev/null 2>&1 ||
    fail "third build"

# A COPY that nothing builds on gets no snapshot (no file creations for a
# tree nobody reads).
mkdir -p "$T/ctx2"
echo last > "$T/ctx2/last.txt"
printf 'FROM busybox\nCOPY last.txt /last.txt\nCMD ["cat", "/last.txt"]\n' > "$T/ctx2/Dockerfile"
"$CAIRN" build --progress plain -t last "$T/ctx2" > "$T/b2.out" 2>&1 || { cat "$T/b2.out"; fail "last build"; }
diff_id=$("$CAIRN" inspect last | jq -r '.[0].Store.Layers[1].DiffID')
digest=$("$CAIRN" inspect last | jq -r '.[0].Store.Layers[1].Digest')
[ ! -e "$CAIRN_ROOT/snapshots/${diff_id#sha256:}" ] || fail "snapshot made for a final COPY"
[ -z "$(ls -A "$CAIRN_ROOT/tmp")" ] || fail "staging left in tmp/: $(ls -A "$CAIRN_ROOT/tmp")"

# Mirroring never changes the layer: the same COPY with a RUN after it
# (mirrored, --no-cache so it really runs) has the same digest.
printf 'FROM busybox\nCOPY last.txt /last.txt\nRUN true\n' > "$T/ctx2/Dockerfile"
"$CAIRN" build --progress plain --no-cache -t last2 "$T/ctx2" > "$T/b3.out" 2>&1 || { cat "$T/b3.out"; fail "last2 build"; }
assert_eq "$("$CAIRN" inspect last2 | jq -r '.[0].Store.Layers[1].Digest')" "$digest" "COPY layer with a mirror"

echo "test_build_copy_snapshot: all passed"
