#!/usr/bin/env bash
# ADD of a local tar archive extracts it into the destination (plain, gzip,
# bzip2, xz, zstd), as Docker does; other files (a lone .gz, a tar inside a
# copied directory) are copied as they are. --chown applies to extracted
# entries, --chmod does not. Entries escaping the destination are refused;
# ADD of a URL says it is not supported; --unpack=false keeps the archive.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

ctx="$T/ctx"
src="$T/src"
mkdir -p "$ctx/sub" "$src/d/e"
echo hi > "$src/d/e/f"
chmod 0600 "$src/d/e/f"
ln -s e/f "$src/d/link"
ln "$src/d/e/f" "$src/d/hard"
tar -C "$src" --owner=5 --group=6 --numeric-owner -cf "$ctx/plain.tar" d
tar -C "$src" --owner=5 --group=6 --numeric-owner -czf "$ctx/a.tar.gz" d
tar -C "$src" -cjf "$ctx/a.tbz" d
tar -C "$src" -cJf "$ctx/a.txz" d
tar -C "$src" --zstd -cf "$ctx/a.tzst" d
# A tar without a tar-ish name is still an archive (content decides).
cp "$ctx/a.tar.gz" "$ctx/blob.bin"
echo plain > "$T/p.txt" && gzip -c "$T/p.txt" > "$ctx/p.txt.gz"
cp "$ctx/plain.tar" "$ctx/sub/inner.tar"

cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
ADD plain.tar /opt/plain
ADD a.tar.gz /opt/gz
ADD a.tbz a.txz /opt/multi/
ADD --chown=app:app --chmod=0700 a.tzst /opt/zst
ADD blob.bin /opt/blob
ADD p.txt.gz /opt/
ADD sub /opt/sub
ADD --unpack=false a.tar.gz /opt/kept/
RUN set -e; \
    for d in plain gz multi zst blob; do test "$(cat /opt/$d/d/e/f)" = hi; test "$(cat /opt/$d/d/link)" = hi; done; \
    test "$(stat -c %h /opt/gz/d/hard)" = 2; \
    test "$(stat -c %u:%g:%a /opt/gz/d/e/f)" = 5:6:600; \
    test "$(stat -c %u:%g:%a /opt/plain/d/e/f)" = 5:6:600; \
    test "$(stat -c %u:%g:%a /opt/zst/d/e/f)" = 1000:1000:600; \
    test "$(stat -c %u:%g:%a /opt/zst/d)" = 1000:1000:755; \
    test -f /opt/p.txt.gz; test ! -e /opt/p.txt; \
    test -f /opt/sub/inner.tar; test ! -e /opt/sub/d; \
    test -f /opt/kept/a.tar.gz; test ! -e /opt/kept/d; \
    echo ADD-CHECKS-OK
DF
"$CAIRN" build --progress plain -t added "$ctx" > "$T/b1" 2>&1 || { cat "$T/b1"; fail "ADD build"; }
grep -q '^ADD-CHECKS-OK$' "$T/b1" || fail "checks did not run: $(cat "$T/b1")"

# The extracted files are what the layer holds (read by tar, not by us).
"$CAIRN" save added -o "$T/added.tar" || fail "save"
mkdir "$T/img" && tar -C "$T/img" -xf "$T/added.tar"
found=
for blob in "$T"/img/blobs/sha256/*; do
    # Listed to a file first: grep -q would close the pipe early, and
    # pipefail would count tar's SIGPIPE as a failure.
    tar -tvzf "$blob" > "$T/list" 2>/dev/null || continue
    if grep -q ' opt/zst/d/e/f$' "$T/list"; then
        grep ' opt/zst/d/e/f$' "$T/list" | grep -q '^-rw------- 1000/1000 ' ||
            fail "zst entry: $(grep 'opt/zst/d/e/f' "$T/list")"
        found=1
    fi
done
[ -n "$found" ] || fail "no layer holds opt/zst/d/e/f"

# Rebuild: every ADD is cached.
"$CAIRN" build --progress plain "$ctx" > "$T/b2" 2>&1 || { cat "$T/b2"; fail "rebuild"; }
assert_eq "$(grep -c ' ---> Using cache' "$T/b2")" 9 "cached steps on rebuild"

# Bad archives: clear error naming the step, non-zero exit, nothing kept.
python3 - "$T/bad" <<'PY'
import io, os, sys, tarfile
out = sys.argv[1]
os.makedirs(out)
def mk(name, entries):
    with tarfile.open(os.path.join(out, name), 'w') as t:
        for path, kind, arg in entries:
            ti = tarfile.TarInfo(path)
            if kind == 'f':
                ti.size = 1
                t.addfile(ti, io.BytesIO(b'x'))
            else:
                ti.type = tarfile.SYMTYPE if kind == 'l' else tarfile.LNKTYPE
                ti.linkname = arg
                t.addfile(ti)
mk('dotdot.tar', [('a/../../evil', 'f', None)])
mk('linkparent.tar', [('l', 'l', '/etc'), ('l/passwd', 'f', None)])
mk('linkout.tar', [('l', 'l', '../../x')])
mk('hardout.tar', [('h', 'h', '../x')])
mk('whiteout.tar', [('.wh.bin', 'f', None)])
# Hard links that the layer cannot hold: to a file outside the archive,
# and to one reached through a symlink the archive made (issue 9, 10).
mk('hardshadow.tar', [('h', 'h', '/etc/shadow')])
mk('hardvialink.tar', [('l', 'l', '/etc'), ('h', 'h', 'l/shadow')])
PY
"$CAIRN" images -a -q | sort > "$T/before"
bad() { # bad FILE EXPECTED
    mkdir -p "$T/b"
    cp "$T/bad/$1" "$T/b/"
    printf 'FROM busybox\nADD %s /opt/x/\n' "$1" > "$T/b/Dockerfile"
    if "$CAIRN" build "$T/b" > "$T/bad.out" 2>&1; then fail "$1: build succeeded"; fi
    grep -q "step 2/2 (.*Dockerfile:2 ADD)" "$T/bad.out" || fail "$1: step not named: $(cat "$T/bad.out")"
    grep -q "$2" "$T/bad.out" || fail "$1: expected '$2' in: $(cat "$T/bad.out")"
}
bad dotdot.tar 'escapes the destination'
bad linkparent.tar 'parent directory is a symlink'
bad linkout.tar 'symlink target escapes'
bad hardout.tar 'hard link target escapes'
bad whiteout.tar 'whiteout'
bad hardshadow.tar 'entry h: hard link target opt/x/etc/shadow is not a file of this layer'
bad hardvialink.tar 'entry h: hard link target opt/x/l/shadow is reached through the symlink opt/x/l'
printf 'FROM busybox\nADD http://127.0.0.1:9/x.tar /opt/\n' > "$T/b/Dockerfile"
if "$CAIRN" build "$T/b" > "$T/bad.out" 2>&1; then fail "URL ADD succeeded"; fi
grep -q 'ADD from a URL is not supported yet' "$T/bad.out" || fail "URL ADD: $(cat "$T/bad.out")"
"$CAIRN" images -a -q | sort > "$T/after"
cmp -s "$T/before" "$T/after" || fail "images changed by failed builds"
ls "$CAIRN_ROOT"/tmp 2>/dev/null | grep -q . && fail "temporary files left: $(ls "$CAIRN_ROOT/tmp")"

echo "test_build_add: all passed"
