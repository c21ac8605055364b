#!/usr/bin/env bash
# cairn keys end to end: determinism across copies, mtimes, owners and
# ignored files; a COPY source edit changes that step and every later one,
# none before; errors name file:line; --json and --explain.
. "$(dirname "$0")/lib.sh"

ctx="$T/ctx"
mkdir -p "$ctx/app/sub"
cat > "$ctx/Dockerfile" <<'DF'
ARG BASE=scratch
FROM ${BASE} AS build
ARG VERSION=1.0
ENV APP_HOME=/app
WORKDIR $APP_HOME
COPY app/ ./
RUN echo "version ${VERSION}" > VERSION
COPY run.sh /usr/local/bin/
LABEL version=$VERSION
CMD ["/usr/local/bin/run.sh"]

FROM scratch
COPY --from=build /app /app
DF
printf 'one\n' > "$ctx/app/a.txt"
printf 'two\n' > "$ctx/app/sub/b.txt"
ln -s a.txt "$ctx/app/link"
printf '#!/bin/sh\necho hi\n' > "$ctx/run.sh"
chmod 755 "$ctx/run.sh"
printf 'ignored.log\napp/*.tmp\n' > "$ctx/.dockerignore"
printf 'noise\n' > "$ctx/ignored.log"
printf 'noise\n' > "$ctx/app/x.tmp"

base=$(keys_of "$ctx")
n=$(echo "$base" | wc -l)
assert_eq "$n" 11 "number of steps"
echo "$base" | grep -qvE '^[0-9a-f]{64}$' && fail "keys are not 64 hex digits"

# Plain output: one line per step, the key the only 64-hex string on it.
"$CAIRN" keys "$ctx" > "$T/plain"
assert_eq "$(wc -l < "$T/plain")" 11 "plain lines"
while read -r line; do
    c=$(echo "$line" | grep -oE '[0-9a-f]{64}' | wc -l)
    assert_eq "$c" 1 "64-hex strings on: $line"
done < "$T/plain"
grep -q 'COPY app/ ./' "$T/plain" || fail "expanded instruction missing"
grep -q 'WORKDIR /app' "$T/plain" || fail "WORKDIR not expanded"

# 1. A copy elsewhere, other mtimes, another owner, ignored files changed.
cp -a "$ctx" "$T/copy"
find "$T/copy" -exec touch -h -d '2001-02-03 04:05:06' {} +
chown -R 1234:1234 "$T/copy" 2>/dev/null || true
printf 'changed\n' > "$T/copy/ignored.log"
printf 'changed\n' > "$T/copy/app/x.tmp"
assert_eq "$(keys_of "$T/copy")" "$base" "keys of a moved/touched/chowned copy"

# 2. Editing one COPY source changes that step and all later, none before.
printf 'two, edited\n' > "$T/copy/app/sub/b.txt"
edited=$(keys_of "$T/copy")
paste <(echo "$base") <(echo "$edited") | awk '{print NR, ($1==$2 ? "same" : "diff")}' > "$T/cmp"
# Steps 1-4 (FROM, ARG, ENV, WORKDIR) stay; COPY app/ (5) and after change.
for i in 1 2 3 4; do grep -qx "$i same" "$T/cmp" || fail "step $i changed"; done
for i in 5 6 7 8 9 11; do grep -qx "$i diff" "$T/cmp" || fail "step $i did not change"; done
# Step 10 is the second stage's FROM scratch: independent of the first.
grep -qx "10 same" "$T/cmp" || fail "second stage FROM changed"

# 3. A build arg used by RUN changes RUN and later, not before.
withv=$(keys_of "$ctx" --build-arg VERSION=2.0)
paste <(echo "$base") <(echo "$withv") | awk '{print NR, ($1==$2 ? "same" : "diff")}' > "$T/cmp"
for i in 1 2 3 4 5; do grep -qx "$i same" "$T/cmp" || fail "build arg: step $i changed"; done
grep -qx "6 diff" "$T/cmp" || fail "build arg: RUN did not change"

# 4. --target stops at a stage.
assert_eq "$(keys_of "$ctx" --target build | wc -l)" 9 "--target build steps"
"$CAIRN" keys --target nope "$ctx" 2>"$T/err" && fail "unknown target accepted"
grep -q 'target stage "nope" could not be found' "$T/err" || fail "unknown target message"

# 5. --explain prints every field; --json parses.
"$CAIRN" keys --explain "$ctx" > "$T/explain"
grep -q '^    version: 1$' "$T/explain" || fail "explain: version field"
grep -qE '^    src-tree: [0-9a-f]{64}$' "$T/explain" || fail "explain: src-tree field"
grep -q '^    env: VERSION=1.0$' "$T/explain" || fail "explain: RUN env"
"$CAIRN" keys --json --explain "$ctx" | jq -e '.[6].material | length > 5' >/dev/null ||
    fail "json material"
"$CAIRN" keys --json "$ctx" | jq -e '.[0] | has("stage") and has("step") and has("instruction") and has("key")' >/dev/null ||
    fail "json fields"

# 6. Errors: file:line for a broken Dockerfile, a missing source, outside.
mkdir "$T/bad"
printf 'FROM scratch\n\nRUNN echo\n' > "$T/bad/Dockerfile"
"$CAIRN" keys "$T/bad" 2>"$T/err" && fail "broken Dockerfile accepted"
grep -q 'Dockerfile:3: unknown instruction "RUNN"' "$T/err" || fail "parse error message: $(cat "$T/err")"
printf 'FROM scratch\nCOPY missing.txt /\n' > "$T/bad/Dockerfile"
"$CAIRN" keys "$T/bad" 2>"$T/err" && fail "missing source accepted"
grep -q 'Dockerfile:2' "$T/err" || fail "missing source line: $(cat "$T/err")"
grep -q 'not found' "$T/err" || fail "missing source message: $(cat "$T/err")"
printf 'FROM scratch\nCOPY ../x /\n' > "$T/bad/Dockerfile"
"$CAIRN" keys "$T/bad" 2>"$T/err" && fail "outside source accepted"
grep -q 'outside the build context' "$T/err" || fail "outside message: $(cat "$T/err")"
"$CAIRN" keys "$T/nonexistent" 2>/dev/null && fail "missing context accepted"

# 7. An unresolved base image is marked.
printf 'FROM debian:12\nRUN true\n' > "$T/bad/Dockerfile"
"$CAIRN" keys "$T/bad" | grep -q 'unresolved' || fail "unresolved base not marked"

# 8. A base image in the store resolves to its manifest digest.
bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/bb.tar" .
"$CAIRN" import "$T/bb.tar" busybox:1 >/dev/null || fail "import"
printf 'FROM busybox:1\nRUN true\n' > "$T/bad/Dockerfile"
"$CAIRN" keys "$T/bad" > "$T/out" || fail "keys with a stored base"
grep -q unresolved "$T/out" && fail "stored base still unresolved"
"$CAIRN" keys --explain "$T/bad" | grep -q '^    digest: sha256:' || fail "FROM digest field"

echo "test_keys: all passed"
