#!/usr/bin/env bash
# COPY --link makes its layer as if on an empty root (BuildKit copies onto
# scratch and merges): parent directories are 0755 root whatever the parent
# image has there, a parent symlink is not followed (the layer holds the
# path as written), and the parent's snapshots are never unpacked for it.
# A plain COPY keeps the parent's directory metadata.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"
base_diff=$("$CAIRN" inspect busybox | jq -r '.[0].Store.Layers[0].DiffID')

ctx="$T/ctx"
mkdir -p "$ctx"
echo f > "$ctx/f.txt"

# layer_list IMAGE N: "mode owner path" of every entry of layer N.
layer_list() {
    local blob
    blob=$("$CAIRN" inspect "$1" | jq -r ".[0].Store.Layers[$2].Path")
    tar -tvzf "$CAIRN_ROOT/$blob" --numeric-owner | awk '{print $1, $2, $6}'
}

# 1. A --link COPY that is the last step: nothing unpacks the base.
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
COPY --link f.txt /x/y/f.txt
DF
"$CAIRN" build --progress plain -t link1 "$ctx" > "$T/b1.out" 2>&1 || { cat "$T/b1.out"; fail "build link1"; }
[ ! -e "$CAIRN_ROOT/snapshots/${base_diff#sha256:}" ] ||
    fail "COPY --link unpacked the parent's layer"
assert_eq "$(layer_list link1 1 | tr '\n' ';')" \
    "drwxr-xr-x 0/0 x/;drwxr-xr-x 0/0 x/y/;-rw-r--r-- 0/0 x/y/f.txt;" "link1 layer"
# The same without --link looks at the parent (for x and x/y).
sed -i 's/--link //' "$ctx/Dockerfile"
"$CAIRN" build --progress plain -t plain1 "$ctx" > "$T/b1p.out" 2>&1 || { cat "$T/b1p.out"; fail "build plain1"; }
[ -d "$CAIRN_ROOT/snapshots/${base_diff#sha256:}" ] || fail "plain COPY did not look at the parent"
# --link is in the key: the plain COPY is a step of its own.
grep -q ' ---> Using cache' "$T/b1p.out" && fail "plain COPY hit the cache of the --link one"

# 2. Parent metadata and symlinks.
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
RUN mkdir -p /data && chmod 700 /data && chown 1000:1000 /data && ln -s /data /lnk
COPY f.txt /data/g.txt
COPY --link f.txt /data/f.txt
COPY --link=true f.txt /lnk/h.txt
COPY --link=false f.txt /data/i.txt
RUN ls -ln /data /lnk > /listing
DF
"$CAIRN" build --progress plain -t link2 "$ctx" > "$T/b2.out" 2>&1 || { cat "$T/b2.out"; fail "build link2"; }
assert_eq "$(layer_list link2 2 | head -1)" "drwx------ 1000/1000 data/" "plain COPY keeps the parent's directory"
assert_eq "$(layer_list link2 3 | head -1)" "drwxr-xr-x 0/0 data/" "COPY --link makes its parents 0755 root"
assert_eq "$(layer_list link2 4 | tr '\n' ';')" "drwxr-xr-x 0/0 lnk/;-rw-r--r-- 0/0 lnk/h.txt;" \
    "COPY --link does not follow the parent's symlink"
# --link=false is a plain COPY: the parent (now the --link layer's 0755
# root data/, merged on top) is looked at.
assert_eq "$(layer_list link2 5 | head -1)" "drwxr-xr-x 0/0 data/" "--link=false"

echo "test_build_copy_link: all passed"
