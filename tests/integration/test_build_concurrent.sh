#!/usr/bin/env bash
# Several cairn processes on one store: two builds of different Dockerfiles
# at once (sharing their first RUN, so both may write the same key and
# blob) both succeed and both images are listed; running both again is all
# "Using cache"; a prune started while a build runs neither breaks that
# build nor loses its layers.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

for n in a b; do
    mkdir -p "$T/$n"
    echo "file of $n" > "$T/$n/file.txt"
    cat > "$T/$n/Dockerfile" <<DF
FROM busybox
RUN echo shared > /shared && sleep 1
RUN echo $n > /which && sleep 1
COPY file.txt /file.txt
RUN head -c 2000000 /dev/urandom > /random-$n
DF
done

# 1. Two builds at the same time.
"$CAIRN" build --progress plain -t img-a "$T/a" > "$T/a.out" 2>&1 & pa=$!
"$CAIRN" build --progress plain -t img-b "$T/b" > "$T/b.out" 2>&1 & pb=$!
wait "$pa" || { cat "$T/a.out"; fail "concurrent build a"; }
wait "$pb" || { cat "$T/b.out"; fail "concurrent build b"; }
grep -q '^Successfully tagged img-a:latest$' "$T/a.out" || fail "a not tagged: $(cat "$T/a.out")"
grep -q '^Successfully tagged img-b:latest$' "$T/b.out" || fail "b not tagged: $(cat "$T/b.out")"

"$CAIRN" images > "$T/images" || fail "images after concurrent builds"
grep -qE '^img-a +latest ' "$T/images" || fail "img-a missing: $(cat "$T/images")"
grep -qE '^img-b +latest ' "$T/images" || fail "img-b missing: $(cat "$T/images")"
ls "$CAIRN_ROOT/tmp" | grep -q . && fail "temporary files left: $(ls "$CAIRN_ROOT/tmp")"

# 2. Both again, at once: every layer step comes from the cache, and the
# images keep their IDs.
"$CAIRN" build --progress plain -t img-a "$T/a" > "$T/a2.out" 2>&1 & pa=$!
"$CAIRN" build --progress plain -t img-b "$T/b" > "$T/b2.out" 2>&1 & pb=$!
wait "$pa" || { cat "$T/a2.out"; fail "second build a"; }
wait "$pb" || { cat "$T/b2.out"; fail "second build b"; }
for n in a b; do
    assert_eq "$(grep -c ' ---> Using cache' "$T/${n}2.out")" 4 "cached steps of $n"
    assert_eq "$(sed -n 's/^Successfully built //p' "$T/${n}2.out")" \
        "$(sed -n 's/^Successfully built //p' "$T/$n.out")" "image id of $n"
done

# 3. A prune during a build. Make something dangling first, so the prune
# has work to do.
echo "changed" > "$T/a/file.txt"
"$CAIRN" build --progress plain -t img-a "$T/a" > "$T/a3.out" 2>&1 || fail "rebuild a"
"$CAIRN" images | grep -q '<none>' || fail "no dangling image to prune"
mkdir -p "$T/c"
cat > "$T/c/Dockerfile" <<'DF'
FROM busybox
RUN head -c 1000000 /dev/urandom > /c && sleep 3
RUN echo done > /done
DF
"$CAIRN" build --progress plain -t img-c "$T/c" > "$T/c.out" 2>&1 & pc=$!
for _ in $(seq 1 300); do
    grep -q '^Step 2/3 : RUN' "$T/c.out" && break
    sleep 0.1
done
grep -q '^Step 2/3 : RUN' "$T/c.out" || fail "build c did not reach its RUN: $(cat "$T/c.out")"
"$CAIRN" prune -f > "$T/prune.out" 2>&1 || { cat "$T/prune.out"; fail "prune during a build"; }
wait "$pc" || { cat "$T/c.out"; fail "build c with a prune running"; }
grep -q 'Total reclaimed space' "$T/prune.out" || fail "prune output: $(cat "$T/prune.out")"
"$CAIRN" images > "$T/images" || fail "images after prune"
grep -q '<none>' "$T/images" && fail "prune left the dangling image: $(cat "$T/images")"
for n in a b c; do
    grep -qE "^img-$n +latest " "$T/images" || fail "img-$n lost: $(cat "$T/images")"
done
# The build's layers survived the prune: a rebuild is all cache, and the
# image can be saved (every blob present).
"$CAIRN" build --progress plain -t img-c "$T/c" > "$T/c2.out" 2>&1 || fail "rebuild c"
assert_eq "$(grep -c ' ---> Using cache' "$T/c2.out")" 2 "cached steps of c after prune"
"$CAIRN" save img-a img-b img-c -o "$T/all.tar" || fail "save after prune"

echo "test_build_concurrent: all passed"
