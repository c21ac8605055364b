#!/usr/bin/env bash
# A long layer write shows "\r ---> writing layer: N MB" on a terminal
# (--progress tty), ended by a newline; small layers and plain output
# (--progress plain, or auto on a pipe) show nothing.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

ctx="$T/ctx"
mkdir -p "$ctx"
head -c 1000 /dev/zero > "$ctx/small"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
COPY small /small
RUN head -c 40000000 /dev/zero > /big
DF

"$CAIRN" build --progress tty "$ctx" > "$T/tty.out" 2>&1 || { cat "$T/tty.out"; fail "tty build"; }
# The line is rewritten in place: \r before each update, a newline after
# the last one (40 MB of content plus tar headers is 40 MB).
grep -aq $'\r ---> writing layer: [0-9]* MB' "$T/tty.out" || fail "no progress line: $(cat -A "$T/tty.out")"
grep -aq $'\r ---> writing layer: 40 MB$' "$T/tty.out" || fail "progress does not end at 40 MB: $(cat -A "$T/tty.out")"
# Only the 40 MB RUN layer passes the threshold, and only once.
assert_eq "$(grep -ac 'writing layer' "$T/tty.out")" 1 "progress lines"
# The step's id line follows on its own line.
grep -A1 -a 'writing layer' "$T/tty.out" | tail -1 | grep -qE '^ ---> [0-9a-f]{12}$' ||
    fail "no newline after the progress line: $(cat -A "$T/tty.out")"

"$CAIRN" build --no-cache --progress plain "$ctx" > "$T/plain.out" 2>&1 || fail "plain build"
grep -aq 'writing layer' "$T/plain.out" && fail "progress shown with --progress plain"
grep -aq $'\r' "$T/plain.out" && fail "carriage return in plain output"
"$CAIRN" build --no-cache "$ctx" > "$T/auto.out" 2>&1 || fail "auto build"
grep -aq 'writing layer' "$T/auto.out" && fail "progress shown on a pipe with --progress auto"

echo "test_build_progress: all passed"
