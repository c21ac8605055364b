#!/usr/bin/env bash
# A COPY/ADD destination goes through the parent image's symlinks as in
# Docker (FollowSymlinkInScope / BuildKit's RootPath): absolute targets
# start at the image's root, ".." stops at it, chains are followed, a
# dangling link is written through, the last component is followed too,
# and the links themselves stay links. Symlinks inside the copied tree are
# copied as they are; a symlink loop is a clear error. WORKDIR through a
# link works, a dangling one too (RUN makes its cwd inside the root,
# through the links, making a dangling link's target). The result is
# compared with a fixed listing, and with `docker build` of the same
# Dockerfile when a dockerd can start here (the Docker part says why it
# skipped otherwise).
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
(
    cd "$T/rootfs"
    mkdir -p srv opt
    ln -s /srv app               # absolute
    ln -s srv rel                # relative
    ln -s /rel chain             # chain: /chain -> /rel -> srv
    ln -s ../../../srv out       # above the root: stops at it
    ln -s /nowhere dangling      # dangling, a directory below it
    ln -s /nowhere2 dang2        # dangling, copied into (trailing /)
    ln -s /nowhere3 dang3        # dangling, copied onto
    ln -s ../srv opt/up          # relative, from a subdirectory
    ln -s srv opt/dl             # relative, to the missing /opt/srv
    ln -s /loop2 loop1           # a loop
    ln -s /loop1 loop2
)
tar -C "$T/rootfs" -cf "$T/base.tar" .
"$CAIRN" import "$T/base.tar" symbase:1 >/dev/null || fail "import"

ctx="$T/ctx"
mkdir -p "$ctx/dir/sub"
echo f > "$ctx/f"
echo g > "$ctx/g"
echo s > "$ctx/dir/sub/s"
ln -s /etc "$ctx/dir/inner"
cat > "$ctx/Dockerfile" <<'DF'
FROM symbase:1
COPY f /app/
COPY g /app
COPY f /rel/r.txt
COPY f /chain/c/
COPY f /out/o.txt
COPY f /opt/up/u.txt
COPY f /dangling/d/
COPY dir /app/tree/
RUN echo t > /srv/target.txt && ln -s /srv/target.txt /fl
COPY g /fl
COPY f /dang2/
COPY f /dang3
COPY dir /opt/dl
WORKDIR /app/w
RUN touch here && pwd -P > /pwd.txt
COPY f rel.txt
WORKDIR /dangling/w2
RUN pwd -P >> /pwd.txt
RUN (for p in /app /rel /chain /out /dangling /dang2 /dang3 /opt/up /opt/dl /fl /srv/tree/inner; do echo "$p -> $(readlink $p)"; done; find /srv /nowhere /nowhere2 /nowhere3 /opt | sort; cat /srv/target.txt /pwd.txt) > /listing.txt
DF
"$CAIRN" build --progress plain -t symtest "$ctx" > "$T/b.out" 2>&1 || { cat "$T/b.out"; fail "build"; }

# layer_list IMAGE N: "mode path" of every entry of layer N.
layer_list() {
    local blob
    blob=$("$CAIRN" inspect "$1" | jq -r ".[0].Store.Layers[$2].Path")
    tar -tvzf "$CAIRN_ROOT/$blob" --numeric-owner | awk '{print $1, $6}'
}
# The first COPY's layer: the file in srv/, no app/ hiding the link.
assert_eq "$(layer_list symtest 1 | tr '\n' ';')" \
    "drwxr-xr-x srv/;-rw-r--r-- srv/f;" "COPY f /app/ through /app -> /srv"
# The tree's own symlink is copied, not followed.
layer_list symtest 8 | grep -qx 'lrwxrwxrwx srv/tree/inner' ||
    fail "the copied tree's symlink: $(layer_list symtest 8 | tr '\n' ';')"

# listing IMAGE: the /listing.txt the last RUN wrote.
listing() {
    local blob
    blob=$("$CAIRN" inspect "$1" | jq -r '.[0].Store.Layers[-1].Path')
    tar -xzOf "$CAIRN_ROOT/$blob" listing.txt
}
listing symtest > "$T/cairn.txt" || fail "no listing in the last layer"
cat > "$T/expected.txt" <<'EOF'
/app -> /srv
/rel -> srv
/chain -> /rel
/out -> ../../../srv
/dangling -> /nowhere
/dang2 -> /nowhere2
/dang3 -> /nowhere3
/opt/up -> ../srv
/opt/dl -> srv
/fl -> /srv/target.txt
/srv/tree/inner -> /etc
/nowhere
/nowhere/d
/nowhere/d/f
/nowhere/w2
/nowhere2
/nowhere2/f
/nowhere3
/opt
/opt/dl
/opt/srv
/opt/srv/inner
/opt/srv/sub
/opt/srv/sub/s
/opt/up
/srv
/srv/c
/srv/c/f
/srv/f
/srv/g
/srv/o.txt
/srv/r.txt
/srv/target.txt
/srv/tree
/srv/tree/inner
/srv/tree/sub
/srv/tree/sub/s
/srv/u.txt
/srv/w
/srv/w/here
/srv/w/rel.txt
g
/srv/w
/nowhere/w2
EOF
diff -u "$T/expected.txt" "$T/cairn.txt" || fail "the tree differs from Docker's"

# A copy onto an existing directory puts the file inside it (Docker).
mkdir -p "$T/ctx2"
echo g > "$T/ctx2/g"
printf 'FROM symbase:1\nCOPY g /srv\n' > "$T/ctx2/Dockerfile"
"$CAIRN" build --progress plain -t ontodir "$T/ctx2" > "$T/b2.out" 2>&1 || { cat "$T/b2.out"; fail "build ontodir"; }
assert_eq "$(layer_list ontodir 1 | tr '\n' ';')" "drwxr-xr-x srv/;-rw-r--r-- srv/g;" "COPY g /srv"

# A lower layer's absolute link names a path of the image, never of the
# host: /hl -> $T/hostdir (where the host has x -> /srv), replaced by a
# directory in the next layer; COPY into /hl/x/ must not go to srv/.
mkdir -p "$T/hostdir" "$T/hl/root"
ln -s /srv "$T/hostdir/x"
ln -s "$T/hostdir" "$T/hl/root/hl"
tar -C "$T/hl/root" -cf "$T/hl.tar" .
"$CAIRN" import "$T/hl.tar" hlbase:1 >/dev/null || fail "import hlbase"
printf 'FROM hlbase:1\nCOPY --from=symbase:1 /bin/busybox /bin/\nRUN ["/bin/busybox", "sh", "-c", "/bin/busybox rm /hl && /bin/busybox mkdir /hl"]\nCOPY g /hl/x/\n' > "$T/ctx2/Dockerfile"
"$CAIRN" build --progress plain -t hl "$T/ctx2" > "$T/b4.out" 2>&1 || { cat "$T/b4.out"; fail "build hl"; }
assert_eq "$(layer_list hl 3 | tr '\n' ';')" "drwxr-xr-x hl/;drwxr-xr-x hl/x/;-rw-r--r-- hl/x/g;" \
    "COPY through a directory that replaced a lower layer's link"

# A loop is an error naming the step, not a hang or a crash.
printf 'FROM symbase:1\nCOPY g /loop1/x\n' > "$T/ctx2/Dockerfile"
if "$CAIRN" build --progress plain "$T/ctx2" > "$T/b3.out" 2>&1; then
    fail "COPY through a symlink loop succeeded"
fi
grep -q 'step 2/2 .*too many symlinks' "$T/b3.out" || fail "loop error: $(cat "$T/b3.out")"

# The same Dockerfile with docker build (BuildKit), when dockerd runs here.
. "$(dirname "$0")/docker_lib.sh"
skip() {
    echo "SKIP (docker part): $*"
    echo "test_build_copy_dest: all passed"
    exit 0
}
start_dockerd || skip "$dockerd_why"
"$CAIRN" save symbase:1 -o "$T/base-img.tar" || fail "save"
dk load -i "$T/base-img.tar" > "$T/load.out" 2>&1 || fail "docker load: $(cat "$T/load.out")"
if ! DOCKER_BUILDKIT=1 dk build --network=host -o "type=tar,dest=$T/docker-out.tar" \
    "$ctx" > "$T/dbuild.out" 2>&1; then
    why=$(tail -3 "$T/dbuild.out")
    stop_dockerd
    skip "docker build cannot run here: $why"
fi
tar -xOf "$T/docker-out.tar" listing.txt > "$T/docker.txt" || fail "no listing from docker"
diff -u "$T/docker.txt" "$T/cairn.txt" || fail "cairn's tree differs from docker build's"
stop_dockerd
echo "test_build_copy_dest: all passed"
