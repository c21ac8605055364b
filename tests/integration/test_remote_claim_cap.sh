#!/usr/bin/env bash
# Step claims' cap on waiting (docs/remote.md "Claims"): a builder that
# waits for another's run of a step stops waiting and runs the step
# itself when the other has been at it far longer than the step took
# before: by its own history (B), or, having none, by the history the
# holder sent with its claim (C). The step's identity for the history
# survives a key change: the RUN's text stays, the script it runs (a
# COPY from the context) changes and makes it take far longer. No timing
# is asserted: only that B and C gave up, said so, and built the right
# image.
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000

busybox_base
mkdir -p "$T/ctx"
cat >"$T/ctx/Dockerfile" <<'DF'
FROM busybox:latest
COPY work.sh /work.sh
RUN echo CAP-STEP-RAN && sh /work.sh && echo done > /out
DF

f0=$FAILS
# 1. A and B learn the step's time: a short run, each alone, no cache.
echo 'sleep 1; echo short > /which' >"$T/ctx/work.sh"
for s in A B; do
    newstore "$s"
    build "$s" "$s.short" -t app "$T/ctx"
    [ "$(field "$s.short" run)" = 2 ] || fail "$s's short build: $(summary "$s.short")"
done
[ -s "$T/B/step-durations" ] || fail "B recorded no step durations"

# 2. The same step now runs 30 s (the script changed, so its key did; its
# text did not). A runs it with the cache; B (own history) and C (fresh:
# A's history, from A's claim) meet A's claim and wait.
echo 'sleep 30; echo long > /which' >"$T/ctx/work.sh"
cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
newstore C
CAIRN_ROOT="$T/A" "$CAIRN" build -t app --cache "$URL" "$T/ctx" >"$T/A.out" 2>&1 &
apid=$!
for i in $(seq 1 300); do grep -q 'CAP-STEP-RAN' "$T/A.out" && break; sleep 0.1; done
grep -q 'CAP-STEP-RAN' "$T/A.out" || fail "A never ran the step: $(tail -5 "$T/A.out")"
pids=
for s in B C; do
    CAIRN_ROOT="$T/$s" "$CAIRN" build -t app --cache "$URL" "$T/ctx" >"$T/$s.out" 2>&1 &
    pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "a waiting builder failed"; done
wait "$apid" || fail "A failed: $(tail -5 "$T/A.out")"
for s in B C; do
    grep -q 'waiting for another builder to finish step 3/3' "$T/$s.out" ||
        fail "$s did not wait for A: $(cat "$T/$s.out")"
    grep -Eq '^ ---> the other builder is taking longer than this step took before \([0-9]+s\); running step 3/3 here$' "$T/$s.out" ||
        fail "$s did not give up on A: $(cat "$T/$s.out")"
    [ "$(grep -cx 'CAP-STEP-RAN' "$T/$s.out")" = 1 ] || fail "$s did not run the step itself"
    # The image is the long run's: a build on top reads its files.
    mkdir -p "$T/chk$s"
    printf 'FROM app\nRUN cat /which /out\n' >"$T/chk$s/Dockerfile"
    build "$s" "chk$s.out" -t chk "$T/chk$s"
    grep -qx long "$T/chk$s.out" && grep -qx done "$T/chk$s.out" ||
        fail "$s's image is not the long run's: $(cat "$T/chk$s.out")"
done
# A, which owned the claim, never gave up on anyone.
grep -q 'taking longer' "$T/A.out" && fail "A gave up: $(cat "$T/A.out")"
[ "$FAILS" -ne "$f0" ] || pass "B (own history) and C (the holder's) gave up waiting and built the step"

cd_stop
[ "$FAILS" -eq 0 ] || exit 1
echo "all claim cap tests passed"
