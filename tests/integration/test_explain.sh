#!/usr/bin/env bash
# Explaining misses: a build remembers its key materials per tag, and
# `cairn build --explain` / `cairn keys --explain -t` say which input
# changed: a file of a COPY directory, a build arg a RUN uses, the base
# image, or that there is nothing to compare with.
. "$(dirname "$0")/lib.sh"

command -v busybox >/dev/null || fail "busybox-static is not installed"
bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

ctx="$T/ctx"
mkdir -p "$ctx/app"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox:latest
ARG VERSION=1.0
COPY app/ /app/
RUN echo "$VERSION" > /version
CMD ["cat", "/version"]
DF
for i in 1 2 3 4 5 6 7 8; do echo "file $i" > "$ctx/app/f$i"; done
echo old > "$ctx/app/old.txt"

# miss_lines FILE: the explanation lines, in order.
miss_lines() { grep '^ ---> cache miss: ' "$1" || true; }

# 1. No previous build of the tag: every layer step says so.
"$CAIRN" build --explain -t app "$ctx" > "$T/b1" 2>&1 || { cat "$T/b1"; fail "first build"; }
assert_eq "$(miss_lines "$T/b1" | sort -u)" " ---> cache miss: no previous build of app" "first build explanation"
assert_eq "$(miss_lines "$T/b1" | wc -l)" 2 "explained steps on the first build"

# 2. Rebuild unchanged: all hits, nothing explained.
"$CAIRN" build --explain -t app "$ctx" > "$T/b2" 2>&1 || { cat "$T/b2"; fail "rebuild"; }
assert_eq "$(grep -c ' ---> Using cache' "$T/b2")" 2 "cached steps on rebuild"
assert_eq "$(miss_lines "$T/b2")" "" "explanations on a fully cached rebuild"

# 3. Edit one file, add one, remove one, chmod one: the COPY names each,
#    the RUN after it says its parent changed.
echo "changed" > "$ctx/app/f7"
echo new > "$ctx/app/new.txt"
rm "$ctx/app/old.txt"
chmod 0755 "$ctx/app/f2"
"$CAIRN" build --explain -t app "$ctx" > "$T/b3" 2>&1 || { cat "$T/b3"; fail "build after edit"; }
awk '/^Step /{s=$2} /cache miss/{print s": "$0}' "$T/b3" > "$T/b3.miss"
cat > "$T/b3.want" <<'W'
3/5:  ---> cache miss: COPY app/: mode of app/f2 changed (0644 -> 0755)
3/5:  ---> cache miss: COPY app/: content of app/f7 changed
3/5:  ---> cache miss: COPY app/: app/new.txt added
3/5:  ---> cache miss: COPY app/: app/old.txt removed
4/5:  ---> cache miss: parent step changed
W
diff -u "$T/b3.want" "$T/b3.miss" || fail "explanations after editing app/"

# 4. A build arg a RUN uses: the COPY before it hits, the RUN names the arg.
"$CAIRN" build --explain -t app --build-arg VERSION=2.0 "$ctx" > "$T/b4" 2>&1 || { cat "$T/b4"; fail "build with VERSION=2.0"; }
assert_eq "$(awk '/^Step 3\/5/{s=1} /^Step 4\/5/{s=0} s&&/Using cache/' "$T/b4" | wc -l)" 1 "COPY cached with a new build arg"
assert_eq "$(miss_lines "$T/b4")" " ---> cache miss: RUN: build arg VERSION changed (1.0 -> 2.0)" "build arg explanation"

# 5. cairn keys --explain -t compares with the last build (VERSION=2.0).
"$CAIRN" keys --explain -t app "$ctx" > "$T/k5" 2>&1 || { cat "$T/k5"; fail "keys --explain"; }
# Beside the RUN its cause; the CMD after it differs only by its parent.
awk '/^stage-0 /{s=$2} /cache miss/{print s": "$0}' "$T/k5" > "$T/k5.miss"
cat > "$T/k5.want" <<'W'
4/5:  ---> cache miss: RUN: build arg VERSION changed (2.0 -> 1.0)
5/5:  ---> cache miss: parent step changed
W
diff -u "$T/k5.want" "$T/k5.miss" || fail "keys --explain causes"
"$CAIRN" keys --explain --json -t app --build-arg VERSION=2.0 "$ctx" > "$T/k5.json" || fail "keys --explain --json"
assert_eq "$(jq -c '[.[].causes | length] | add' "$T/k5.json")" 0 "keys --json causes for the remembered build"
"$CAIRN" keys --explain -t other "$ctx" > "$T/k5b" 2>&1 || fail "keys --explain, unknown tag"
assert_eq "$(head -1 "$T/k5b")" "no previous build of other" "keys --explain without a previous build"

# 6. A different base image under the same tag: the FROM says so, the
#    layer steps after it say their parent changed.
echo extra > "$T/rootfs/etc/extra"
tar -C "$T/rootfs" -cf "$T/busybox2.tar" .
"$CAIRN" import "$T/busybox2.tar" busybox:latest >/dev/null || fail "re-import"
"$CAIRN" build --explain -t app --build-arg VERSION=2.0 "$ctx" > "$T/b6" 2>&1 || { cat "$T/b6"; fail "build on the new base"; }
awk '/^Step /{s=$2} /cache miss/{print s": "$0}' "$T/b6" > "$T/b6.miss"
cat > "$T/b6.want" <<'W'
1/5:  ---> cache miss: FROM: base image digest changed
3/5:  ---> cache miss: parent step changed
4/5:  ---> cache miss: parent step changed
W
diff -u "$T/b6.want" "$T/b6.miss" || fail "explanations after a new base image"

# 7. Without --explain nothing is printed, but the build is remembered.
echo "again" > "$ctx/app/f1"
"$CAIRN" build -t app --build-arg VERSION=2.0 "$ctx" > "$T/b7" 2>&1 || fail "build without --explain"
assert_eq "$(miss_lines "$T/b7")" "" "explanations without --explain"
"$CAIRN" keys --explain -t app --build-arg VERSION=2.0 "$ctx" > "$T/k7" 2>&1 || fail "keys after b7"
assert_eq "$(miss_lines "$T/k7")" "" "keys --explain right after a build"

# 8. RUN --mount: a bind-mounted context file changed names the mount,
#    in the flag's words, not the key's labels.
mctx="$T/mctx"
mkdir -p "$mctx/src"
echo one > "$mctx/src/a"
cat > "$mctx/Dockerfile" <<'DF'
FROM busybox:latest
RUN --mount=type=bind,source=src,target=/mnt/src cat /mnt/src/a > /copy
DF
"$CAIRN" build -t mnt "$mctx" > "$T/b8a" 2>&1 || { cat "$T/b8a"; fail "mount build"; }
echo two > "$mctx/src/a"
"$CAIRN" build --explain -t mnt "$mctx" > "$T/b8" 2>&1 || { cat "$T/b8"; fail "mount rebuild"; }
assert_eq "$(miss_lines "$T/b8")" " ---> cache miss: RUN: --mount target=/mnt/src: content of the bind mount's source changed" "bind mount explanation"

echo "ok"
