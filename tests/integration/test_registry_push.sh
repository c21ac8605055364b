#!/usr/bin/env bash
# cairn push against Debian's docker-registry (plain HTTP on 127.0.0.1):
# a built image is pushed with docker push's lines; the registry holds
# exactly the store's manifest (the digest `images --digests` shows) and
# skopeo/umoci read back the tree cairn built; a second push uploads
# nothing; a push to another repository mounts every blob, and a layer
# pulled from another repository is mounted from there; build --push
# pushes every -t; zstd layers are refused unless asked for; an image
# that is not stored is an error.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start http

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"
mkdir -p "$T/ctx"
echo "copied file" > "$T/ctx/file.txt"
cat > "$T/ctx/Dockerfile" <<'DF'
FROM busybox
RUN echo built-by-cairn > /hi.txt && rm /bin/vi
COPY file.txt /data/file.txt
CMD ["cat", "/hi.txt"]
DF
img=$REG_ADDR/team/app:v1
"$CAIRN" build -t "$img" "$T/ctx" > "$T/b1" 2>&1 || { cat "$T/b1"; fail "build"; }
stored=$("$CAIRN" inspect "$img" | jq -r '.[0].Id')

# 1. The push, with docker push's lines.
"$CAIRN" push "$img" > "$T/p1" 2>&1 || { cat "$T/p1"; fail "push"; }
grep -q "^The push refers to repository \[$REG_ADDR/team/app\]$" "$T/p1" ||
    fail "repository line: $(cat "$T/p1")"
assert_eq "$(grep -cE '^[0-9a-f]{12}: Preparing$' "$T/p1")" 3 "preparing lines"
assert_eq "$(grep -cE '^[0-9a-f]{12}: Pushed$' "$T/p1")" 3 "pushed lines"
line=$(tail -1 "$T/p1")
[[ $line =~ ^v1:\ digest:\ (sha256:[0-9a-f]{64})\ size:\ ([0-9]+)$ ]] || fail "digest line: $line"
digest=${BASH_REMATCH[1]}
size=${BASH_REMATCH[2]}
# The registry holds the store's manifest bytes, so the digests agree.
skopeo inspect --tls-verify=false --raw "docker://$img" > "$T/raw.json" || fail "skopeo inspect"
assert_eq "sha256:$(sha256sum < "$T/raw.json" | cut -d' ' -f1)" "$digest" "registry's manifest digest"
assert_eq "$(stat -c %s "$T/raw.json")" "$size" "manifest size"
cmp "$T/raw.json" "$CAIRN_ROOT/blobs/sha256/${digest#sha256:}" || fail "pushed manifest differs from the stored one"
"$CAIRN" images --digests | grep -qE "^$REG_ADDR/team/app +v1 +$digest " ||
    fail "images --digests: $("$CAIRN" images --digests)"
assert_eq "$("$CAIRN" inspect "$img" | jq -r '.[0].RepoDigests[0]')" \
    "$REG_ADDR/team/app@$digest" "inspect RepoDigests"
assert_eq "$("$CAIRN" inspect "$img" | jq -r '.[0].Id')" "$stored" "image id after push"
# The image config and tree, read back by tools we did not write.
skopeo inspect --tls-verify=false --config "docker://$img" | jq -e '.config.Cmd == ["cat","/hi.txt"]' >/dev/null ||
    fail "pushed config"
skopeo copy -q --src-tls-verify=false "docker://$img" "oci:$T/copy:app" || fail "skopeo copy"
umoci unpack --rootless --image "$T/copy:app" "$T/bundle" > /dev/null 2> "$T/umoci.err" ||
    fail "umoci unpack: $(cat "$T/umoci.err")"
assert_eq "$(cat "$T/bundle/rootfs/hi.txt")" "built-by-cairn" "RUN's file"
assert_eq "$(cat "$T/bundle/rootfs/data/file.txt")" "copied file" "COPY's file"
[ -e "$T/bundle/rootfs/bin/vi" ] && fail "the deleted file came back"
# And the same tree as cairn's own copy of the image (its store is an OCI layout).
skopeo copy -q "oci:$CAIRN_ROOT:$img" "oci:$T/mine:app" || fail "skopeo copy from the store"
umoci unpack --rootless --image "$T/mine:app" "$T/bundle2" > /dev/null 2>&1 || fail "umoci unpack mine"
diff -r --no-dereference "$T/bundle/rootfs" "$T/bundle2/rootfs" > "$T/diff" || fail "trees differ: $(head "$T/diff")"

# 2. A second push uploads nothing: every blob already exists.
before=$(wc -l < "$REG_ACCESS_LOG")
"$CAIRN" push "$img" > "$T/p2" 2>&1 || { cat "$T/p2"; fail "second push"; }
assert_eq "$(grep -cE '^[0-9a-f]{12}: Layer already exists$' "$T/p2")" 3 "already exists lines"
grep -q "Pushed" "$T/p2" && fail "pushed again: $(cat "$T/p2")"
sleep 0.2
tail -n +$((before + 1)) "$REG_ACCESS_LOG" > "$T/log2"
assert_eq "$(grep -cE '"(PATCH|PUT|POST) /v2/[^ ]*/blobs/' "$T/log2" || true)" 0 "blob uploads of a second push"

# 3. Another repository: every blob (layers and config) is mounted.
before=$(wc -l < "$REG_ACCESS_LOG")
"$CAIRN" push "$img" "$REG_ADDR/other/b:v2" > "$T/p3" 2>&1 || { cat "$T/p3"; fail "push to other/b"; }
assert_eq "$(grep -cE '^[0-9a-f]{12}: Mounted from team/app$' "$T/p3")" 3 "mounted lines"
assert_eq "$(tail -1 "$T/p3")" "v2: digest: $digest size: $size" "same manifest in other/b"
sleep 0.2
tail -n +$((before + 1)) "$REG_ACCESS_LOG" > "$T/log3"
assert_eq "$(grep -cE '"POST /v2/other/b/blobs/uploads/\?mount=sha256%3A[0-9a-f]{64}&from=team/app HTTP/1.1" 201 ' "$T/log3")" \
    4 "mount POSTs answered 201 (3 layers, config)"
assert_eq "$(grep -cE '"(PATCH|PUT) /v2/[^ ]*/blobs/' "$T/log3" || true)" 0 "blob bytes sent for a mount"
skopeo inspect --tls-verify=false "docker://$REG_ADDR/other/b:v2" > /dev/null || fail "other/b readable"

# 3b. A layer the store pulled from another repository is mounted from
# there (the pull recorded the repo digest); the new layer is uploaded.
# (A second store pulls the base that the first one pushed.)
"$CAIRN" push -q busybox:latest "$REG_ADDR/lib/busybox:1" > /dev/null || fail "push of the base"
export CAIRN_ROOT=$T/root2
"$CAIRN" pull -q "$REG_ADDR/lib/busybox:1" > /dev/null || fail "pull the base"
printf 'FROM %s/lib/busybox:1\nRUN echo on-base > /on-base.txt\n' "$REG_ADDR" > "$T/ctx/Dockerfile.base"
"$CAIRN" build -f "$T/ctx/Dockerfile.base" -t "$REG_ADDR/team/onbase:1" "$T/ctx" > "$T/bb" 2>&1 ||
    { cat "$T/bb" >&2; fail "build on the pulled base"; }
"$CAIRN" push "$REG_ADDR/team/onbase:1" > "$T/p3b" 2>&1 || { cat "$T/p3b"; fail "push onbase"; }
assert_eq "$(grep -cE '^[0-9a-f]{12}: Mounted from lib/busybox$' "$T/p3b")" 1 "base layer mounted"
assert_eq "$(grep -cE '^[0-9a-f]{12}: Pushed$' "$T/p3b")" 1 "new layer pushed"
# -q prints only what was pushed.
"$CAIRN" push -q "$REG_ADDR/team/onbase:1" > "$T/p3q" 2>&1 || { cat "$T/p3q"; fail "push -q"; }
assert_eq "$(cat "$T/p3q")" "$REG_ADDR/team/onbase:1@$("$CAIRN" inspect "$REG_ADDR/team/onbase:1" |
    jq -r '.[0].RepoDigests[0]' | cut -d@ -f2)" "push -q output"
export CAIRN_ROOT=$T/root

# 4. build --push: every -t is pushed.
echo "second" > "$T/ctx/file.txt"
"$CAIRN" build --push -t "$REG_ADDR/team/app:v2" -t "$REG_ADDR/team/next" "$T/ctx" > "$T/b2" 2>&1 ||
    { cat "$T/b2"; fail "build --push"; }
grep -q "^Successfully tagged $REG_ADDR/team/app:v2$" "$T/b2" || fail "tagged: $(cat "$T/b2")"
grep -q "^The push refers to repository \[$REG_ADDR/team/next\]$" "$T/b2" || fail "second -t not pushed: $(cat "$T/b2")"
d2=$(grep -E '^v2: digest: ' "$T/b2" | cut -d' ' -f3)
d3=$(grep -E '^latest: digest: ' "$T/b2" | cut -d' ' -f3)
assert_eq "$d3" "$d2" "both tags pushed the same manifest"
assert_eq "sha256:$(skopeo inspect --tls-verify=false --raw "docker://$REG_ADDR/team/app:v2" | sha256sum | cut -d' ' -f1)" \
    "$d2" "registry's v2"
skopeo inspect --tls-verify=false "docker://$REG_ADDR/team/next:latest" > /dev/null || fail "team/next:latest"
"$CAIRN" build --push "$T/ctx" > "$T/b3" 2>&1 && fail "build --push without -t"
grep -q -- "--push needs a name" "$T/b3" || fail "no -t message: $(cat "$T/b3")"

# 5. zstd layers: refused by default (docker 20.10 cannot pull them),
# pushed with --allow-zstd and by build --compression zstd --push.
"$CAIRN" build --no-cache --compression zstd -t "$REG_ADDR/team/z:1" "$T/ctx" > "$T/bz" 2>&1 || { cat "$T/bz"; fail "zstd build"; }
"$CAIRN" push "$REG_ADDR/team/z:1" > "$T/pz" 2>&1 && fail "zstd layers pushed by default"
grep -q "zstd-compressed, which docker 20.10 cannot pull" "$T/pz" || fail "zstd message: $(cat "$T/pz")"
"$CAIRN" push --allow-zstd "$REG_ADDR/team/z:1" > "$T/pz2" 2>&1 || { cat "$T/pz2"; fail "push --allow-zstd"; }
skopeo inspect --tls-verify=false --raw "docker://$REG_ADDR/team/z:1" |
    jq -e '[.layers[].mediaType] | index("application/vnd.oci.image.layer.v1.tar+zstd") != null' > /dev/null ||
    fail "zstd layer media type"
"$CAIRN" build --no-cache --compression zstd --push -t "$REG_ADDR/team/z:2" "$T/ctx" > "$T/bz2" 2>&1 ||
    { cat "$T/bz2"; fail "build --compression zstd --push"; }

# 6. Bad input: an image that is not stored; a digest as destination.
"$CAIRN" push "$REG_ADDR/team/none:1" > "$T/e1" 2>&1 && fail "pushed a missing image"
grep -q "An image does not exist locally with the tag: $REG_ADDR/team/none:1" "$T/e1" || fail "missing message: $(cat "$T/e1")"
"$CAIRN" push "$img" "$REG_ADDR/team/app@$digest" > "$T/e2" 2>&1 && fail "pushed to a digest"
grep -q "cannot push to a digest" "$T/e2" || fail "digest message: $(cat "$T/e2")"
echo ok
