#!/usr/bin/env bash
# Bazel as a real REAPI client: build a small genrule workspace with
# cairnd as --remote_cache, wipe everything local (clean --expunge), build
# again, and require every action to be a remote cache hit with identical
# outputs.
. "$(dirname "$0")/server_lib.sh"
command -v bazel >/dev/null || { echo "SKIP: bazel (bazel-bootstrap) is not installed"; exit 0; }

WS=$T/ws
mkdir -p "$WS"
: >"$WS/WORKSPACE"
echo "input one" >"$WS/in.txt"
cat >"$WS/BUILD" <<'BUILD'
genrule(name = "a", srcs = ["in.txt"], outs = ["a.txt"], cmd = "tr a-z A-Z < $< > $@")
genrule(name = "b", srcs = [":a"], outs = ["b.txt"], cmd = "cat $< $< > $@; echo built >&2")
genrule(name = "c", srcs = [":a", ":b"], outs = ["c.bin"],
        cmd = "head -c 3000000 /dev/zero | cat - $(location :a) $(location :b) > $@")
BUILD

cd_start
bz() {
    (cd "$WS" && timeout 600 bazel --batch --output_user_root="$T/bazel-root" "$@")
}
FLAGS=(--remote_cache=grpc://127.0.0.1:$CD_PORT --spawn_strategy=local --noshow_progress
       --remote_timeout=60)

if ! bz build "${FLAGS[@]}" //:c >"$T/build1.log" 2>&1; then
    if grep -qi 'unable to\|could not resolve\|download' "$T/build1.log" && ! grep -q grpc "$T/build1.log"; then
        echo "SKIP: bazel cannot build offline here:"; tail -5 "$T/build1.log"; exit 0
    fi
    fail "first bazel build failed"; tail -30 "$T/build1.log"; finish
fi
pass "first build: $(grep -o 'INFO: [0-9]* processes.*' "$T/build1.log")"
mkdir -p "$T/out1"
cp "$WS"/bazel-bin/{a.txt,b.txt,c.bin} "$T/out1/"

bz clean --expunge >/dev/null 2>&1 || fail "bazel clean --expunge"
[ ! -e "$WS/bazel-bin/c.bin" ] || fail "outputs still there after clean"

bz build "${FLAGS[@]}" //:c >"$T/build2.log" 2>&1 || { fail "second build failed"; tail -30 "$T/build2.log"; }
summary=$(grep -o 'INFO: [0-9]* processes.*' "$T/build2.log" | tail -1)
echo "second build: $summary"
# Every action of the rebuild must come from the cache: "N processes: ...
# 3 remote cache hit" and nothing executed locally.
if echo "$summary" | grep -q '3 remote cache hit' && ! echo "$summary" | grep -qE '[0-9]+ (local|linux-sandbox|processwrapper-sandbox)'; then
    pass "every action was a remote cache hit"
else
    fail "not all actions were cache hits: $summary"
fi
for f in a.txt b.txt c.bin; do
    cmp -s "$T/out1/$f" "$WS/bazel-bin/$f" && pass "$f identical" || fail "$f differs"
done
bz shutdown >/dev/null 2>&1 || true
cd_stop
grep -q 'ac_hits=[1-9]' "$CD_LOG" && pass "server counted AC hits"
finish
