# The image commands (images, tag, rmi, prune, du) through the real cairn
# binary. Without images they check the empty store, help texts and errors;
# images are made with `cairn import`, and that part is skipped while
# import is not implemented (the unit tests in test_store_client.c cover
# the store itself).
source "$(dirname "$0")/lib.sh"

# Every command explains itself.
for c in images tag rmi prune du; do
    "$CAIRN" "$c" --help | grep -q "^Usage: cairn $c" || fail "$c --help"
done

# An empty store: headers only, Docker's columns.
out=$("$CAIRN" images)
assert_eq "$out" "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE" "empty images"
assert_eq "$("$CAIRN" images -q)" "" "empty images -q"
[ -f "$CAIRN_ROOT/oci-layout" ] || fail "no oci-layout"
jq -e '.manifests == []' "$CAIRN_ROOT/index.json" >/dev/null || fail "index.json"
du_types=$("$CAIRN" du | awk 'NR > 1 { print $1 }' | tr '\n' ' ')
assert_eq "$du_types" "Images Layers Snapshots Key Build " "du rows"
"$CAIRN" du | head -1 | grep -qE '^TYPE +TOTAL +ACTIVE +SIZE +RECLAIMABLE$' ||
    fail "du header"

# Errors are Docker's, with exit status 1.
set +e
err=$("$CAIRN" rmi nope 2>&1); rc=$?
set -e
assert_eq "$rc" 1 "rmi unknown: status"
assert_eq "$err" "Error: No such image: nope" "rmi unknown: message"
set +e
err=$("$CAIRN" tag nope other 2>&1); rc=$?
set -e
assert_eq "$rc" 1 "tag unknown: status"
assert_eq "$err" "Error: No such image: nope" "tag unknown: message"
set +e
"$CAIRN" tag onlyone >/dev/null 2>&1; rc=$?
set -e
assert_eq "$rc" 2 "tag usage"
assert_eq "$("$CAIRN" prune -f)" "Total reclaimed space: 0B" "empty prune"

# Images from here on come from `cairn import`.
mkdir -p "$T/rootfs/etc" && echo hello >"$T/rootfs/etc/motd"
tar -C "$T/rootfs" -cf "$T/rootfs.tar" .
set +e
imp=$("$CAIRN" import "$T/rootfs.tar" myapp:1.0 2>&1); rc=$?
set -e
if echo "$imp" | grep -q "not implemented"; then
    echo "SKIP: cairn import is not implemented yet; image part skipped"
    exit 0
fi
assert_eq "$rc" 0 "import: $imp"

id=$("$CAIRN" images -q)
[ ${#id} -eq 12 ] || fail "images -q: '$id'"
"$CAIRN" images | grep -qE "^myapp +1\.0 +$id +(Less than a second|[0-9]+ seconds?) ago +[0-9.]+k?B$" ||
    fail "images row: $("$CAIRN" images)"
skopeo inspect "oci:$CAIRN_ROOT:myapp:1.0" >/dev/null || fail "skopeo reads the store"

"$CAIRN" tag myapp:1.0 other
assert_eq "$("$CAIRN" images other | awk 'NR == 2 { print $1, $2 }')" \
    "other latest" "tag"
assert_eq "$("$CAIRN" images -q)" "$id" "one ID for two tags"
set +e
err=$("$CAIRN" rmi "$id" 2>&1); rc=$?
set -e
assert_eq "$rc" 1 "rmi ID with two repositories"
echo "$err" | grep -q "must be forced" || fail "rmi conflict: $err"
assert_eq "$("$CAIRN" rmi other)" "Untagged: other:latest" "rmi tag"

# Re-importing under the same tag leaves the first image dangling.
echo changed >"$T/rootfs/etc/motd"
tar -C "$T/rootfs" -cf "$T/rootfs2.tar" .
"$CAIRN" import "$T/rootfs2.tar" myapp:1.0 >/dev/null
"$CAIRN" images --filter dangling=true | grep -qE "^<none> +<none> +$id " ||
    fail "old image not dangling: $("$CAIRN" images)"
out=$("$CAIRN" prune -f)
echo "$out" | grep -q "^deleted: sha256:$id" || fail "prune: $out"
echo "$out" | grep -qE "^Total reclaimed space: [0-9.]+k?B$" || fail "prune: $out"
assert_eq "$("$CAIRN" images -q --filter dangling=true)" "" "dangling gone"
new=$("$CAIRN" images -q --no-trunc)
out=$("$CAIRN" rmi myapp:1.0)
assert_eq "$out" "Untagged: myapp:1.0
Deleted: $new" "rmi last tag"
assert_eq "$("$CAIRN" images -q)" "" "images left after rmi"
"$CAIRN" prune -f >/dev/null
assert_eq "$(ls "$CAIRN_ROOT/blobs/sha256" | wc -l)" 0 "blobs after prune"
echo OK
