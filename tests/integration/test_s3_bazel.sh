#!/usr/bin/env bash
# Bazel through the bucket tier: a genrule workspace built with node 1 as
# --remote_cache; everything local wiped (clean --expunge); built again
# against node 2, a node with an empty disk on the same bucket: every
# action a remote cache hit, outputs identical, node 2's results and blobs
# filled from the bucket.
. "$(dirname "$0")/s3_nodes_lib.sh"
command -v bazel >/dev/null || { echo "SKIP: bazel (bazel-bootstrap) is not installed"; s3_stop; exit 0; }

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

node_start 1
node_start 2
bz() {
    (cd "$WS" && timeout 600 bazel --batch --output_user_root="$T/bazel-root" "$@")
}
flags() { echo "--remote_cache=grpc://127.0.0.1:${NP[$1]} --spawn_strategy=local --noshow_progress --remote_timeout=60"; }

# shellcheck disable=SC2046
if ! bz build $(flags 1) //:c >"$T/build1.log" 2>&1; then
    if grep -qi 'unable to\|could not resolve\|download' "$T/build1.log" && ! grep -q grpc "$T/build1.log"; then
        echo "SKIP: bazel cannot build offline here:"; tail -5 "$T/build1.log"; s3_stop; exit 0
    fi
    fail "first bazel build (node 1) failed"; tail -30 "$T/build1.log"; s3_stop; finish
fi
pass "first build through node 1: $(grep -o 'INFO: [0-9]* processes.*' "$T/build1.log")"
mkdir -p "$T/out1"
cp "$WS"/bazel-bin/{a.txt,b.txt,c.bin} "$T/out1/"
bz clean --expunge >/dev/null 2>&1 || fail "bazel clean --expunge"

# shellcheck disable=SC2046
bz build $(flags 2) //:c >"$T/build2.log" 2>&1 || { fail "second build (node 2) failed"; tail -30 "$T/build2.log"; }
summary=$(grep -o 'INFO: [0-9]* processes.*' "$T/build2.log" | tail -1)
if echo "$summary" | grep -q '3 remote cache hit' && ! echo "$summary" | grep -qE '[0-9]+ (local|linux-sandbox|processwrapper-sandbox)'; then
    pass "through node 2 (empty disk): every action a remote cache hit"
else
    fail "not all actions were cache hits through node 2: $summary"
fi
for f in a.txt b.txt c.bin; do
    cmp -s "$T/out1/$f" "$WS/bazel-bin/$f" && pass "$f identical" || fail "$f differs"
done
bz shutdown >/dev/null 2>&1 || true
node_stop 1
node_stop 2
bucket_stat "${NL[2]}" | grep -q 'ac_fills=3 ' && pass "node 2 took the 3 results from the bucket" ||
    fail "node 2: $(bucket_stat "${NL[2]}")"
s3_stop
finish
