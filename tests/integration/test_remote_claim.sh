#!/usr/bin/env bash
# Step claims (cairn.claim.v1, docs/remote.md "Claims"): four fresh
# builders (four stores) start together on an empty cairnd; every step
# runs once in all (their summaries and metadata files add up to 3 steps
# run) and the four images have the same layers. kill -9 of the builder
# that owns a step: another takes it over once the claim's ttl runs out,
# and its image is right. A cairnd without claims (--no-claims): builders
# say so and run the steps themselves. No timing is asserted (the speed
# is bench/remote's "cold-cache fan-out").
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000

busybox_base

# dockerfile DIR TAG [SECS]: three RUN steps of SECS (2) seconds, each
# writing something distinct; the third reads the first two (so a fetched
# layer must be in place).
dockerfile() {
    local n=${3:-2}
    mkdir -p "$1"
    cat >"$1/Dockerfile" <<DF
FROM busybox:latest
RUN echo STEP-ONE-RAN && sleep $n && echo one-$2 > /s1
RUN echo STEP-TWO-RAN && sleep $n && echo two-$2 > /s2
RUN echo STEP-THREE-RAN && sleep $n && cat /s1 /s2 > /s3
DF
}

cd_start --metrics-listen 127.0.0.1:0
URL=grpc://127.0.0.1:$CD_PORT/main
# metric NAME: its value on cairnd's /metrics.
metric() {
    local mp
    mp=$(sed -n 's/^metrics on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/cairnd$CD_N.out")
    curl -s --max-time 10 "http://127.0.0.1:$mp/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

f0=$FAILS
# 1. Four builders at once.
dockerfile "$T/ctx" fan
for s in A B C D; do newstore "$s"; done
pids=
for s in A B C D; do
    CAIRN_ROOT="$T/$s" "$CAIRN" build -t app --cache "$URL" --metadata-file "$T/$s.json" \
        "$T/ctx" >"$T/$s.out" 2>&1 &
    pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "a builder failed"; done
total=0 total_meta=0 waited=0
for s in A B C D; do
    n=$(field "$s.out" run)
    [ -n "$n" ] || { fail "$s: no summary"; sed 's/^/    /' "$T/$s.out" | tail -20; n=0; }
    total=$((total + n))
    total_meta=$((total_meta + $(jq .totals.ran "$T/$s.json")))
    waited=$((waited + $(jq .totals.waited "$T/$s.json")))
    CAIRN_ROOT="$T/$s" "$CAIRN" inspect app | jq -r '.[0].RootFS.Layers[]' >"$T/layers.$s" || fail "inspect $s"
done
[ "$total" -eq 3 ] || fail "the four builders ran $total steps in all, want 3: $(for s in A B C D; do summary "$s.out"; done)"
[ "$total_meta" -eq 3 ] || fail "metadata files: $total_meta steps ran, want 3"
ran_lines=$(cat "$T"/[ABCD].out | grep -cx 'STEP-[A-Z]*-RAN')
[ "$ran_lines" -eq 3 ] || fail "RUN output lines: $ran_lines, want 3"
for s in B C D; do cmp -s "$T/layers.A" "$T/layers.$s" || fail "layers of $s differ from A's"; done
[ "$(wc -l <"$T/layers.A")" -eq 4 ] || fail "A's image has $(wc -l <"$T/layers.A") layers, want 4"
# Who waited is up to the scheduler; that the waits and the summary
# lines agree is not.
[ "$(cat "$T"/[ABCD].out | grep -c 'waiting for another builder to finish step')" -eq "$waited" ] ||
    fail "'waiting' lines and metadata waited ($waited) disagree"
# On the server: each step's claim ended by its result's upload (not by
# a release or an expiry). (How many were granted depends on timing: a
# builder that reaches a step just after its upload is granted the free
# claim, finds the result and releases it.)
[ "$(metric cairnd_claims_ended_by_result_total)" = 3 ] ||
    fail "claims ended by their upload: $(metric cairnd_claims_ended_by_result_total), want 3"
[ "$FAILS" -ne "$f0" ] || pass "four builders, 3 steps run in all, same layers ($waited waits)"

f0=$FAILS
# 2. kill -9 of the owner mid-step: another builder takes over. A short
# ttl, so F waits little for the dead owner's claim (the default, 30 s,
# elsewhere: a loaded machine may stall a renewal past a short one).
export CAIRN_CACHE_CLAIM_TTL=3s
# Steps of 8 s: F must start and meet E's claim while E runs step 2.
dockerfile "$T/ctx2" kill 8
newstore E
newstore F
CAIRN_ROOT="$T/E" "$CAIRN" build -t app --cache "$URL" "$T/ctx2" >"$T/E.out" 2>&1 &
epid=$!
for i in $(seq 1 300); do grep -q 'STEP-ONE-RAN' "$T/E.out" && break; sleep 0.1; done
grep -q 'STEP-ONE-RAN' "$T/E.out" || fail "E never ran its first step: $(tail -5 "$T/E.out")"
CAIRN_ROOT="$T/F" "$CAIRN" build -t app --cache "$URL" "$T/ctx2" >"$T/F.out" 2>&1 &
fpid=$!
for i in $(seq 1 300); do grep -q 'waiting for another builder' "$T/F.out" && break; sleep 0.1; done
grep -q 'waiting for another builder to finish step 2/4' "$T/F.out" || fail "F did not wait for E: $(cat "$T/F.out")"
kill -KILL "$epid"
wait "$epid" 2>/dev/null
wait "$fpid" || { fail "F failed after E died"; sed 's/^/    /' "$T/F.out" | tail -20; }
grep -q 'the other builder is gone; running step 2/4 here' "$T/F.out" || fail "F did not take over: $(cat "$T/F.out")"
[ "$(field F.out run)" = 3 ] || fail "F summary: $(summary F.out)"
# F's image is the one a builder that never met E gets from the cache.
newstore G
build G g1 -t app --cache "$URL" "$T/ctx2"
[ "$(field g1 run)" = 0 ] || fail "G ran steps: $(summary g1)"
[ "$(id_of g1)" = "$(sed -n 's/^Successfully built //p' "$T/F.out")" ] || fail "G's image differs from F's"
[ "$FAILS" -ne "$f0" ] || pass "kill -9 of the owner: F took over and built $(id_of g1)"

f0=$FAILS
# 3. A cairnd without claims: builders run their steps, and say why.
cd_stop
cd_start --no-claims
URL=grpc://127.0.0.1:$CD_PORT/main
dockerfile "$T/ctx3" off
newstore H
newstore I
CAIRN_ROOT="$T/H" "$CAIRN" build -t app --cache "$URL" "$T/ctx3" >"$T/H.out" 2>&1 &
hpid=$!
CAIRN_ROOT="$T/I" "$CAIRN" build -t app --cache "$URL" "$T/ctx3" >"$T/I.out" 2>&1 &
ipid=$!
wait "$hpid" || fail "H failed"
wait "$ipid" || fail "I failed"
for s in H I; do
    grep -q 'does not offer step claims' "$T/$s.out" || fail "$s did not say claims are off: $(cat "$T/$s.out")"
    grep -q 'waiting for another builder' "$T/$s.out" && fail "$s waited without claims"
done
[ "$(field H.out run)" = 3 ] || fail "H summary: $(summary H.out)"
[ "$FAILS" -ne "$f0" ] || pass "--no-claims: builders run their own steps"

# 4. Claims off on the client (cache-claim-ttl = off): no claim call, no
# message, the build as before.
dockerfile "$T/ctx4" client-off
newstore J
CAIRN_CACHE_CLAIM_TTL=off build J j1 -t app --cache "$URL" "$T/ctx4"
grep -q 'step claims' "$T/j1" && fail "J claimed with claims off: $(cat "$T/j1")"
[ "$(field j1 run)" = 3 ] || fail "J summary: $(summary j1)"

cd_stop
[ "$FAILS" -eq 0 ] || exit 1
echo "all claim tests passed"
