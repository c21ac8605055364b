#!/usr/bin/env bash
# The exercise from Docker's docs, on cairn: import a busybox base, build,
# rebuild from cache, change the last step, see the old image dangle, read
# its history, prune it. Then check the image with tools we did not write
# (skopeo, umoci) and the bad-input cases.
. "$(dirname "$0")/lib.sh"

command -v busybox >/dev/null || fail "busybox-static is not installed"
bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

ctx="$T/ctx"
mkdir -p "$ctx"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox:latest
RUN mkdir -p /data && echo built > /data/base.txt && rm /bin/vi
COPY greeting.txt /data/
CMD ["cat", "/data/greeting.txt"]
DF
echo "hello, cairn" > "$ctx/greeting.txt"

# 1. First build: every step runs.
"$CAIRN" build -t app "$ctx" > "$T/b1" 2>&1 || { cat "$T/b1"; fail "first build"; }
grep -q '^Step 1/4 : FROM busybox:latest$' "$T/b1" || fail "step line: $(cat "$T/b1")"
grep -q '^Step 2/4 : RUN mkdir' "$T/b1" || fail "RUN step line"
grep -q 'Using cache' "$T/b1" && fail "first build used a cache"
grep -qE '^Successfully built [0-9a-f]{12}$' "$T/b1" || fail "Successfully built"
grep -q '^Successfully tagged app:latest$' "$T/b1" || fail "Successfully tagged"
grep -qE '^ ---> [0-9a-f]{12}$' "$T/b1" || fail "step ids"
id1=$(sed -n 's/^Successfully built //p' "$T/b1")

# 2. Rebuild: every layer step is "Using cache", same image.
"$CAIRN" build -t app "$ctx" > "$T/b2" 2>&1 || { cat "$T/b2"; fail "rebuild"; }
assert_eq "$(grep -c ' ---> Using cache' "$T/b2")" 2 "cached steps on rebuild"
assert_eq "$(sed -n 's/^Successfully built //p' "$T/b2")" "$id1" "rebuilt image id"

# 3. Change step 3: step 2 is cached, step 3 runs.
echo "hello again" > "$ctx/greeting.txt"
"$CAIRN" build -t app "$ctx" > "$T/b3" 2>&1 || { cat "$T/b3"; fail "third build"; }
awk '/^Step 2\/4/{s=2} /^Step 3\/4/{s=3} /Using cache/{print s}' "$T/b3" > "$T/cached"
assert_eq "$(cat "$T/cached")" "2" "only step 2 cached after the change"
id3=$(sed -n 's/^Successfully built //p' "$T/b3")
[ "$id3" != "$id1" ] || fail "changed build kept the image id"

# 4. images: the old image is <none>, the new one app:latest.
"$CAIRN" images > "$T/images"
head -1 "$T/images" | grep -qE '^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE' || fail "images header: $(head -1 "$T/images")"
grep -qE "^app +latest +$id3 " "$T/images" || fail "app:latest row: $(cat "$T/images")"
grep -qE "^<none> +<none> +$id1 " "$T/images" || fail "dangling row: $(cat "$T/images")"

# 5. history: the layer steps have sizes, CMD is 0B.
"$CAIRN" history app > "$T/hist"
head -1 "$T/hist" | grep -qE '^IMAGE +CREATED +CREATED BY +SIZE +COMMENT' || fail "history header"
grep -E 'CMD' "$T/hist" | grep -q ' 0B ' || fail "CMD is not 0B: $(cat "$T/hist")"
grep -E 'COPY greeting.txt' "$T/hist" | grep -qvE ' 0B ' || fail "COPY has no size"

# 6. prune reclaims the old image.
"$CAIRN" prune -f > "$T/prune"
grep -qE 'Total reclaimed space: [0-9.]+[kMG]?B' "$T/prune" || fail "prune output: $(cat "$T/prune")"
grep -q 'Total reclaimed space: 0B' "$T/prune" && fail "prune reclaimed nothing"
"$CAIRN" images | grep -q '<none>' && fail "dangling image survived prune"
"$CAIRN" build -t app "$ctx" > "$T/b4" 2>&1 || fail "build after prune"
assert_eq "$(grep -c ' ---> Using cache' "$T/b4")" 2 "cache kept for the live image"

# 7. Tools we did not write read the image.
if command -v skopeo >/dev/null; then
    "$CAIRN" save app -o "$T/app.tar" || fail "save"
    skopeo inspect "docker-archive:$T/app.tar" > "$T/skopeo.json" || fail "skopeo docker-archive"
    jq -e '.Layers | length == 3' "$T/skopeo.json" >/dev/null || fail "skopeo layers: $(cat "$T/skopeo.json")"
fi
if command -v umoci >/dev/null; then
    mkdir "$T/layout" && tar -C "$T/layout" -xf "$T/app.tar"
    umoci unpack --image "$T/layout:app:latest" "$T/bundle" >/dev/null 2>"$T/umoci.err" ||
        umoci unpack --image "$T/layout:latest" "$T/bundle" >/dev/null 2>>"$T/umoci.err" ||
        fail "umoci unpack: $(cat "$T/umoci.err")"
    assert_eq "$(cat "$T/bundle/rootfs/data/greeting.txt")" "hello again" "unpacked COPY file"
    assert_eq "$(cat "$T/bundle/rootfs/data/base.txt")" "built" "unpacked RUN file"
    [ -e "$T/bundle/rootfs/bin/vi" ] && fail "whiteout not applied: /bin/vi still there"
    [ -e "$T/bundle/rootfs/bin/sh" ] || fail "base file missing after unpack"
fi

# 8. Bad input: clear error, non-zero exit, the store's images unchanged.
"$CAIRN" images -a -q | sort > "$T/before"
bad() { # bad NAME EXPECTED-TEXT build-args...
    local name=$1 want=$2; shift 2
    if "$CAIRN" build "$@" > "$T/bad.out" 2>&1; then fail "$name: build succeeded"; fi
    grep -q "$want" "$T/bad.out" || fail "$name: expected '$want' in: $(cat "$T/bad.out")"
}
bad "missing context" "not found" "$T/nope"
mkdir "$T/empty"
bad "missing Dockerfile" "Dockerfile" "$T/empty"
mkdir "$T/b" && cp "$ctx/greeting.txt" "$T/b/"
printf 'FROM busybox\nCOPY missing.txt /\n' > "$T/b/Dockerfile"
bad "missing COPY source" 'Dockerfile:2' "$T/b"
printf 'FROM busybox\nCOPY ../x /\n' > "$T/b/Dockerfile"
bad "COPY outside" 'outside the build context' "$T/b"
printf 'FROM busybox\nCOPY --from=nostage /x /\n' > "$T/b/Dockerfile"
bad "unknown stage" 'nostage' "$T/b"
printf 'FROM busybox AS one\nRUN true\n' > "$T/b/Dockerfile"
bad "unknown target" 'target stage "two" could not be found' --target two "$T/b"
printf 'FROM busybox\nRUN echo before && exit 3\n' > "$T/b/Dockerfile"
bad "failing RUN" 'returned a non-zero code: 3' "$T/b"
grep -q 'step 2/2' "$T/bad.out" || fail "failing RUN does not name the step"
printf 'FROM busybox\nCOPY --chown=nosuchuser greeting.txt /\n' > "$T/b/Dockerfile"
bad "bad --chown" 'nosuchuser' "$T/b"
printf 'FROM nosuchimage:1\nRUN true\n' > "$T/b/Dockerfile"
# --pull=never: no Docker Hub here (a missing base is pulled by default).
bad "unknown base" 'cairn import' --pull=never "$T/b"
"$CAIRN" images -a -q | sort > "$T/after"
cmp -s "$T/before" "$T/after" || fail "images changed by failed builds"
printf 'not a tar' > "$T/corrupt.tar"
"$CAIRN" import "$T/corrupt.tar" broken:1 > "$T/bad.out" 2>&1 && fail "corrupt import accepted"
"$CAIRN" images | grep -q broken && fail "corrupt import left an image"

# 9. The same deterministic Dockerfile in two stores gives the same digest.
for r in r1 r2; do
    CAIRN_ROOT="$T/$r" SOURCE_DATE_EPOCH=1700000000 "$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null
    CAIRN_ROOT="$T/$r" SOURCE_DATE_EPOCH=1700000000 "$CAIRN" build -t det "$ctx" > "$T/$r.out" 2>&1 ||
        fail "deterministic build in $r: $(cat "$T/$r.out")"
done
assert_eq "$(sed -n 's/^Successfully built //p' "$T/r1.out")" \
    "$(sed -n 's/^Successfully built //p' "$T/r2.out")" "image id in two stores"

echo "test_build: all passed"
