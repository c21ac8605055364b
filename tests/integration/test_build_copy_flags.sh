#!/usr/bin/env bash
# COPY --exclude and --parents (Dockerfile 1.7 syntax): which files a copy
# selects and where they land, checked in the saved layers, and that an
# excluded file is no input of the step's key.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

ctx="$T/ctx"
mkdir -p "$ctx/app/x" "$ctx/app/y" "$ctx/app/node_modules/m"
echo 1 > "$ctx/app/x/a.txt"
echo 2 > "$ctx/app/y/a.txt"
echo 3 > "$ctx/app/x/b.md"
echo 4 > "$ctx/app/node_modules/m/i.js"
echo 5 > "$ctx/app/top.txt"
echo 6 > "$ctx/app/top.md"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
COPY --exclude=**/*.md --exclude=node_modules app /ex/
COPY --exclude=*.md app /top-only/
COPY --parents app/x/a.txt app/y/a.txt /par/
COPY --parents ./app/./x/*.txt /piv/
COPY --exclude=*.txt app/top.txt app/x/b.md /files/
ADD --exclude=**/*.txt --exclude=node_modules app /addex/
RUN echo copy-flags-done
DF

# build NAME: builds the context into $T/NAME.out, image cf:1.
build() {
    "$CAIRN" build --progress plain -t cf:1 "$ctx" > "$T/$1.out" 2>&1 ||
        { cat "$T/$1.out"; fail "build $1"; }
}
# files: the image's files (not directories) under the copy destinations.
files() {
    rm -rf "$T/img" "$T/save" && mkdir -p "$T/img" "$T/save"
    "$CAIRN" save cf:1 -o "$T/img.tar" || fail "save"
    tar -C "$T/save" -xf "$T/img.tar"
    for l in $(jq -r '.[0].Layers[]' "$T/save/manifest.json"); do
        tar -C "$T/img" -xf "$T/save/$l"
    done
    (cd "$T/img" && find ex top-only par piv files addex -type f | sort | tr '\n' ' ')
}

build b1
assert_eq "$(files)" "addex/top.md addex/x/b.md ex/top.txt ex/x/a.txt ex/y/a.txt files/b.md par/app/x/a.txt par/app/y/a.txt piv/x/a.txt top-only/node_modules/m/i.js top-only/top.txt top-only/x/a.txt top-only/x/b.md top-only/y/a.txt " "copied files"
assert_eq "$(cat "$T/img/piv/x/a.txt")" "1" "--parents pivot content"

# An excluded file changes no key; a copied one does.
build b2
assert_eq "$(grep -c ' ---> Using cache' "$T/b2.out")" 7 "rebuild cached"
echo "3 changed" > "$ctx/app/x/b.md"
echo "4 changed" > "$ctx/app/node_modules/m/i.js"
build b3
# Steps 2 (--exclude=**/*.md, node_modules) stays cached; step 3 copies
# both changed files and reruns, and so does everything after it.
grep -A1 '^Step 2/8' "$T/b3.out" | grep -q 'Using cache' || fail "an excluded file's change reran the COPY: $(cat "$T/b3.out")"
grep -A1 '^Step 3/8' "$T/b3.out" | grep -q 'Using cache' && fail "a copied file's change did not rerun the COPY"
echo "1 changed" > "$ctx/app/x/a.txt"
build b4
grep -A1 '^Step 2/8' "$T/b4.out" | grep -q 'Using cache' && fail "a copied file's change did not rerun the COPY --exclude"
files > /dev/null
assert_eq "$(cat "$T/img/ex/x/a.txt")" "1 changed" "new content copied"

# A bad pattern is an error naming the line.
printf 'FROM busybox\nCOPY --exclude=[ app /x/\n' > "$ctx/Dockerfile"
if "$CAIRN" build --progress plain "$ctx" > "$T/bad.out" 2>&1; then
    fail "a malformed --exclude pattern was accepted"
fi
grep -q 'Dockerfile:2: .*--exclude' "$T/bad.out" || fail "bad --exclude: $(cat "$T/bad.out")"

echo "test_build_copy_flags: all passed"
