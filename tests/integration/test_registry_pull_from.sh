#!/usr/bin/env bash
# FROM images and registries: a missing FROM image is pulled; a rebuild
# asks the registry nothing; --pull costs one HEAD while the tag has not
# moved, and when it moved the steps on it miss (the key holds the
# manifest digest, not the tag); --pull=never uses the store only; a
# FROM by a stored digest costs no request.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start_plain
echo one > "$T/one.txt"
echo two > "$T/two.txt"
reg_oci_image "$T/oci" one "$T/one.txt"
reg_oci_image "$T/oci" two "$T/two.txt"
reg_push "$T/oci:one" team/base:v1 || fail "skopeo push"
base=$REG_ADDR/team/base:v1

mkdir -p "$T/ctx"
printf 'FROM %s\nRUN cat /*.txt > /seen\n' "$base" > "$T/ctx/Dockerfile"
requests() { wc -l < "$REG_ACCESS_LOG"; }
build() { # build OUT ARGS...: builds $T/ctx, output in $T/OUT
    local out=$1
    shift
    "$CAIRN" build --progress plain "$@" -t app "$T/ctx" > "$T/$out" 2>&1 ||
        { cat "$T/$out"; fail "build $out"; }
}

# 1. Not in the store: pulled, then built.
build b1
grep -q "^Status: Downloaded newer image for $base$" "$T/b1" || fail "no pull: $(cat "$T/b1")"
"$CAIRN" images | grep -qE "^$REG_ADDR/team/base +v1 " || fail "base not listed"
grep -q ' ---> Using cache' "$T/b1" && fail "first build used a cache"

# 2. A rebuild asks the registry nothing.
n=$(requests)
build b2
grep -q ' ---> Using cache' "$T/b2" || fail "rebuild missed: $(cat "$T/b2")"
sleep 0.2
assert_eq "$(requests)" "$n" "requests of a rebuild"

# 3. --pull with the tag unmoved: one HEAD, still cached.
n=$(requests)
build b3 --pull
grep -q ' ---> Using cache' "$T/b3" || fail "--pull rebuild missed: $(cat "$T/b3")"
sleep 0.2
assert_eq "$(($(requests) - n))" 1 "requests of --pull with an unmoved tag"
tail -1 "$REG_ACCESS_LOG" | grep -q '"HEAD /v2/team/base/manifests/v1 ' ||
    fail "not a HEAD: $(tail -1 "$REG_ACCESS_LOG")"

# 4. The tag moves: a build without --pull keeps the stored image...
reg_push "$T/oci:two" team/base:v1 || fail "skopeo push moved"
build b4
grep -q ' ---> Using cache' "$T/b4" || fail "build without --pull missed: $(cat "$T/b4")"
# ...and --pull takes the new one: the RUN on it misses.
build b5 --pull
grep -q "^Status: Downloaded newer image for $base$" "$T/b5" || fail "--pull: $(cat "$T/b5")"
grep -q ' ---> Using cache' "$T/b5" && fail "a moved tag hit the cache: $(cat "$T/b5")"

# 5. --pull=never and a missing image: the store's message, no request.
printf 'FROM %s/team/none:v1\n' "$REG_ADDR" > "$T/ctx/Dockerfile"
n=$(requests)
if "$CAIRN" build --pull=never "$T/ctx" > "$T/b6" 2>&1; then fail "--pull=never built"; fi
grep -q "image \"$REG_ADDR/team/none:v1\" is not in the store" "$T/b6" || fail "b6: $(cat "$T/b6")"
sleep 0.2
assert_eq "$(requests)" "$n" "requests of --pull=never"
# The default pulls, and says why it could not.
if "$CAIRN" build "$T/ctx" > "$T/b7" 2>&1; then fail "built from a missing image"; fi
grep -q "could not be pulled" "$T/b7" && grep -q "manifest unknown" "$T/b7" ||
    fail "b7: $(cat "$T/b7")"

# 6. FROM a stored digest: no request.
digest=$("$CAIRN" inspect "$base" | jq -r '.[0].RepoDigests[0]')
printf 'FROM %s\nRUN cat /*.txt > /seen\n' "$digest" > "$T/ctx/Dockerfile"
n=$(requests)
build b8
sleep 0.2
assert_eq "$(requests)" "$n" "requests of FROM a stored digest"
# (Its steps do not share keys with FROM base:v1: a key holds the FROM
# instruction's text as well as the digest, docs/cachekey.md.)
echo ok
