#!/usr/bin/env bash
# --target resolves only the images of the stages the target needs, as
# BuildKit does: an unneeded stage may name an image (FROM or COPY --from)
# that is not in the store. The needed stages' keys are the same as when
# every image is present; a needed stage's missing image is still the
# error it was, naming the Dockerfile line.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

# dockerfile FROM_BAD COPY_FROM: the test's Dockerfile with the unneeded
# stages' images named as given.
dockerfile() {
    cat <<DF
FROM busybox AS good
RUN echo good > /good
FROM $1 AS bad
RUN echo never
FROM busybox AS copier
COPY --from=$2 /bin/sh /x
FROM good AS final
RUN echo final > /final
DF
}
mkdir -p "$T/a" "$T/b"
dockerfile missing:1 absent:2 > "$T/a/Dockerfile"
dockerfile busybox busybox > "$T/b/Dockerfile"

# ids OUT: the step ids (keys) a build printed.
ids() {
    grep -E '^ ---> [0-9a-f]{12}$' "$1" | tr '\n' ' '
}

for target in good final ""; do
    "$CAIRN" build --progress plain ${target:+--target "$target"} "$T/a" > "$T/a.out" 2>&1 ||
        fail "--target '$target' with an unneeded missing image: $(cat "$T/a.out")"
    grep -q 'never' "$T/a.out" && fail "--target '$target' ran the unneeded stage"
    # The same stages with every image present: same keys, all cached.
    "$CAIRN" build --progress plain ${target:+--target "$target"} "$T/b" > "$T/b.out" 2>&1 ||
        fail "--target '$target' with every image: $(cat "$T/b.out")"
    [ -n "$(ids "$T/a.out")" ] || fail "no step ids in: $(cat "$T/a.out")"
    assert_eq "$(ids "$T/b.out")" "$(ids "$T/a.out")" "keys of --target '$target'"
    grep -q ' ---> Using cache' "$T/b.out" || fail "--target '$target' rebuilt: $(cat "$T/b.out")"
done

# A needed stage's missing image: the error names the line and the image.
# --pull=never: the test talks to no registry (Docker Hub is not here).
if "$CAIRN" build --progress plain --pull=never --target bad "$T/a" > "$T/bad.out" 2>&1; then
    fail "--target bad built without its image"
fi
grep -q 'Dockerfile:3: image "missing:1" is not in the store' "$T/bad.out" ||
    fail "--target bad error: $(cat "$T/bad.out")"
if "$CAIRN" build --progress plain --pull=never --target copier "$T/a" > "$T/copier.out" 2>&1; then
    fail "--target copier built without the image it copies from"
fi
grep -q 'Dockerfile:6: image "absent:2" is not in the store' "$T/copier.out" ||
    fail "--target copier error: $(cat "$T/copier.out")"
echo "test_build_target_images: all passed"
