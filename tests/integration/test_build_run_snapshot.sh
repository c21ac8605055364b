#!/usr/bin/env bash
# A RUN's upper directory becomes its layer's snapshot (settled and
# renamed, never unpacked from the blob nor deleted file by file), and that
# snapshot is exactly the tree unpacking the layer gives: paths, types,
# modes, owners, whole-second mtimes (clamped by --source-date-epoch, or
# not), symlink targets, hard links, whiteouts and the opaque marker, with
# none of overlayfs' other attributes. The following RUN sees it.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

ctx="$T/ctx"
mkdir -p "$ctx"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
RUN mkdir -p /od /keep && echo a > /od/a && echo b > /od/b && echo k > /keep/k && echo gone > /keep/gone
RUN rm -rf /od && mkdir /od && echo c > /od/c && rm /keep/gone /bin/vi && \
    mkdir -p /new/deep && echo x > /new/deep/x && chmod 4755 /new/deep/x && \
    ln /new/deep/x /new/hard && ln -s deep/x /new/sym && mkfifo /new/fifo && \
    chown -h 1000:2000 /new/sym /new/fifo && chmod 0700 /new/deep && echo k2 >> /keep/k && sleep 1
RUN ls -lnR /od /keep /new > /listing && cat /od/c /new/hard /keep/k >> /listing
DF

# listing DIR: one line per entry under DIR (not DIR itself) with every
# extended attribute, sorted; inode numbers only as hard-link groups; no
# times for whiteouts (overlayfs hides them; neither side sets them).
listing() {
    python3 - "$1" <<'PY'
import os, stat, sys
root = sys.argv[1]
out, inodes = [], {}
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        p = os.path.join(d, n)
        st = os.lstat(p)
        rel = os.path.relpath(p, root)
        x = sorted("%s=%r" % (k, os.getxattr(p, k, follow_symlinks=False))
                   for k in os.listxattr(p, follow_symlinks=False))
        link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else ""
        dev = "%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)) \
            if stat.S_ISCHR(st.st_mode) else ""
        grp = inodes.setdefault(st.st_ino, len(inodes)) if st.st_nlink > 1 and \
            stat.S_ISREG(st.st_mode) else ""
        wh = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        out.append("%s %o %d:%d %s %d %s %s %s [%s]" % (
            rel, st.st_mode, st.st_uid, st.st_gid,
            "-" if wh else str(st.st_mtime_ns),
            st.st_size if stat.S_ISREG(st.st_mode) else 0, link, dev, grp,
            " ".join(x)))
print("\n".join(sorted(out)))
PY
}

# layer_field TAG N FIELD: field of the N-th layer (0-based) of the image.
layer_field() {
    "$CAIRN" inspect "$1" | jq -r ".[0].Store.Layers[$2].$3"
}

check() { # check NAME [BUILD ARGS...]: one configuration
    local name=$1
    shift
    "$CAIRN" build --progress plain --no-cache "$@" -t "$name" "$ctx" > "$T/$name.out" 2>&1 ||
        { cat "$T/$name.out"; fail "$name: build"; }
    assert_eq "$("$CAIRN" inspect "$name" | jq '.[0].Store.Layers | length')" 4 "$name: layers"
    local i s
    for i in 1 2 3; do
        s=$(layer_field "$name" "$i" Snapshot)
        [ "$s" != null ] && [ -d "$CAIRN_ROOT/$s" ] ||
            fail "$name: RUN layer $i has no snapshot after the build"
        listing "$CAIRN_ROOT/$s" > "$T/$name.settled.$i"
    done
    # Adopted, not unpacked: od/c was made by the command, a second before
    # the blob file was created; an unpack could only make it later.
    local snap2 blob2
    snap2="$CAIRN_ROOT/$(layer_field "$name" 2 Snapshot)"
    blob2="$CAIRN_ROOT/$(layer_field "$name" 2 Path)"
    awk -v a="$(stat -c %.9W "$snap2/od/c")" -v b="$(stat -c %.9W "$blob2")" \
        'BEGIN { exit !(a < b) }' || fail "$name: the RUN's snapshot was unpacked, not adopted"
    grep -q "trusted.overlay.opaque=b'y'" <<<"$(grep '^od ' "$T/$name.settled.2")" ||
        fail "$name: od lost its opaque marker: $(grep '^od ' "$T/$name.settled.2")"
    grep -q '^keep/gone 20000 0:0 ' "$T/$name.settled.2" || fail "$name: no whiteout for keep/gone"
    ! grep -q 'overlay\.\(origin\|impure\)' "$T/$name.settled."* ||
        fail "$name: overlayfs attributes left in a snapshot"
    [ -z "$(ls -A "$CAIRN_ROOT/tmp")" ] || fail "$name: left in tmp/: $(ls -A "$CAIRN_ROOT/tmp")"

    # The reference: the same layers unpacked from their blobs, for a
    # rebuild whose last RUN differs.
    for i in 1 2 3; do
        rm -rf "${CAIRN_ROOT:?}/$(layer_field "$name" "$i" Snapshot)"
    done
    sed -i "s|> /listing|> /listing.$name|" "$ctx/Dockerfile"
    "$CAIRN" build --progress plain "$@" -t "$name-ref" "$ctx" > "$T/$name-ref.out" 2>&1 ||
        { cat "$T/$name-ref.out"; fail "$name: rebuild"; }
    sed -i "s|> /listing.$name|> /listing|" "$ctx/Dockerfile"
    assert_eq "$(grep -c ' ---> Using cache' "$T/$name-ref.out")" 2 "$name: cached RUNs of the rebuild"
    for i in 1 2; do
        s=$(layer_field "$name-ref" "$i" Snapshot)
        [ -d "$CAIRN_ROOT/$s" ] || fail "$name: layer $i not unpacked again"
        listing "$CAIRN_ROOT/$s" | grep -v '^ *$' > "$T/$name.unpack.$i" || true
        diff "$T/$name.unpack.$i" "$T/$name.settled.$i" > "$T/$name.diff.$i" ||
            fail "$name: RUN layer $i: the settled upper differs from the unpacked layer: $(cat "$T/$name.diff.$i")"
    done
    # The last RUN read the same tree through the settled and the unpacked
    # snapshots (its listing sits in its own layer).
    [ "$(layer_field "$name" 3 DiffID)" != null ] || fail "$name: no last layer"
}

check epoch --source-date-epoch 1600000000
grep -q '^new/deep/x 104755 0:0 1600000000000000000 2 ' "$T/epoch.settled.2" ||
    fail "epoch: x not clamped or lost setuid: $(grep '^new/deep/x ' "$T/epoch.settled.2")"
check plain
grep -Eq '^new/deep/x 104755 0:0 [0-9]+000000000 2 ' "$T/plain.settled.2" ||
    fail "plain: x's mtime not in whole seconds: $(grep '^new/deep/x ' "$T/plain.settled.2")"

echo "test_build_run_snapshot: all passed"
