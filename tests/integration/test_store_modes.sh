#!/usr/bin/env bash
# The store is no way up for other local users (issue 9, item 6): after a
# root build of an image whose layer holds a setuid-root shell and a
# device node, an unprivileged user reaches neither (nor the blobs, the
# cache mounts or anything else under $CAIRN_ROOT); a store left 0755 by
# an older cairn is closed up when its owner opens it; RUN steps as a
# non-root USER still work (with WORKDIR, bind and cache mounts); what
# `cairn save -o` writes keeps the user's umask.
. "$(dirname "$0")/lib.sh"

command -v setpriv > /dev/null || { echo "SKIP: no setpriv"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (builds as root)"; exit 0; }
# lib.sh makes $T with mktemp -d (0700), which alone would keep others
# out: open it, so that only the store's own modes stand in the way.
chmod 755 "$T"
as_nobody() {
    setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"
}
as_nobody test -x "$T" || fail "setup: nobody cannot reach $T"

# A base whose layer holds a setuid-root copy of busybox and a device
# node that anyone may open (/dev/null's numbers).
bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" > /dev/null
cp "$T/rootfs/bin/busybox" "$T/rootfs/suid-sh"
chmod 4755 "$T/rootfs/suid-sh"
mknod -m 666 "$T/rootfs/devnull" c 1 3
tar -C "$T/rootfs" -cf "$T/base.tar" .
"$CAIRN" import "$T/base.tar" evil:1 > /dev/null || fail "import"

ctx="$T/ctx"
mkdir -p "$ctx"
echo "context file" > "$ctx/f.txt"
cat > "$ctx/Dockerfile" <<'DF'
FROM evil:1
USER 65534:65534
WORKDIR /tmp/work
RUN echo "uid=$(id -u) pwd=$(pwd)" && echo made > /tmp/by-nobody
RUN --mount=type=bind,source=f.txt,target=/mnt/f.txt echo "bind=$(cat /mnt/f.txt)"
RUN --mount=type=cache,target=/cache,id=nobody-cache,mode=0777 echo x >> /cache/log && echo "cache=$(wc -l < /cache/log)"
DF
"$CAIRN" build --progress plain -t modes:1 "$ctx" > "$T/build.out" 2>&1 ||
    { cat "$T/build.out"; fail "build with USER nobody"; }
grep -q '^uid=65534 pwd=/tmp/work$' "$T/build.out" ||
    fail "RUN as nobody: $(grep uid= "$T/build.out")"
grep -q '^bind=context file$' "$T/build.out" || fail "bind mount as nobody"
grep -q '^cache=1$' "$T/build.out" || fail "cache mount as nobody"

# Every directory of the store is its owner's alone.
for d in "" /blobs /blobs/sha256 /snapshots /tmp /index /cache-mounts; do
    assert_eq "$(stat -c %a "$CAIRN_ROOT$d")" 700 "mode of \$CAIRN_ROOT$d"
done

# What another user must not reach, found as root.
suid=$(find "$CAIRN_ROOT/snapshots" -name suid-sh -print -quit)
dev=$(find "$CAIRN_ROOT/snapshots" -name devnull -print -quit)
[ -u "$suid" ] || fail "no setuid binary in a snapshot ($suid)"
[ -c "$dev" ] || fail "no device node in a snapshot ($dev)"
blob=$(find "$CAIRN_ROOT/blobs/sha256" -type f -print -quit)
[ -n "$blob" ] || fail "no blob"
cache=$(find "$CAIRN_ROOT/cache-mounts" -name log -print -quit)
[ -n "$cache" ] || fail "no cache mount data"

check_closed() {
    as_nobody "$suid" sh -c 'echo euid=$(id -u)' > "$T/nobody.out" 2>&1 &&
        fail "$1: nobody ran the setuid binary: $(cat "$T/nobody.out")"
    as_nobody sh -c 'exec 3< "$1"' sh "$dev" 2> /dev/null &&
        fail "$1: nobody opened the device node"
    as_nobody cat "$blob" > /dev/null 2>&1 && fail "$1: nobody read a blob"
    as_nobody cat "$cache" > /dev/null 2>&1 &&
        fail "$1: nobody read a cache mount"
    as_nobody ls "$CAIRN_ROOT" > /dev/null 2>&1 &&
        fail "$1: nobody listed the store"
    return 0
}
check_closed "new store"

# A store an older cairn left open is closed up by its owner's next
# command, whichever it is.
for d in "" /blobs /blobs/sha256 /snapshots /tmp /index /cache-mounts; do
    chmod 755 "$CAIRN_ROOT$d"
done
as_nobody test -u "$suid" || fail "setup: the opened store is not reachable"
"$CAIRN" images > /dev/null || fail "images"
assert_eq "$(stat -c %a "$CAIRN_ROOT")" 700 "mode after reopening"
check_closed "reopened store"

# The archive a user asks for is theirs, with their umask.
(umask 022 && "$CAIRN" save -o "$T/out.tar" modes:1) || fail "save"
assert_eq "$(stat -c %a "$T/out.tar")" 644 "mode of the saved archive"
(umask 027 && "$CAIRN" save -o "$T/out2.tar" modes:1) || fail "save"
assert_eq "$(stat -c %a "$T/out2.tar")" 640 "mode of the saved archive, umask 027"
echo PASS
