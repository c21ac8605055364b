#!/usr/bin/env bash
# Several --cache endpoints: each step's result and layer live on the one
# endpoint rendezvous hashing picks for its key; a fresh store finds them
# all; with one endpoint down, that endpoint's share of steps runs (one
# warning) and the rest still hit. A server that answers every call with
# an error (a token it refuses) costs one warning; the build succeeds.
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000


# FROM scratch and eight COPY steps: `cairn keys` gives the action digests.
ctx=$T/ctx
mkdir -p "$ctx"
{ echo 'FROM scratch'; for i in 1 2 3 4 5 6 7 8; do echo "COPY f$i /f$i"; echo "f$i" >"$ctx/f$i"; done; } >"$ctx/Dockerfile"
build REF ref -t t "$ctx"
CAIRN_ROOT="$T/REF" "$CAIRN" keys --json "$ctx" | jq -r '.[1:][] | .key + "/" + (.material_size|tostring)' >"$T/actions"
[ "$(wc -l <"$T/actions")" -eq 8 ] || fail "keys: $(cat "$T/actions")"

cd_start
P1=$CD_PORT PID1=$CD_PID LOG1=$CD_LOG
# server_lib cleans up the last server only; this one is ours.
trap '[ -n "$PID1" ] && kill -KILL "$PID1" 2>/dev/null; cd_cleanup' EXIT
cd_start
P2=$CD_PORT
U1=grpc://127.0.0.1:$P1/main U2=grpc://127.0.0.1:$P2/main

# 1. A uploads through both; each result is on exactly one server, and
# each server holds some.
build A a1 -t t --cache "$U1" --cache "$U2" "$ctx"
summary a1 | grep -q '0 remote hits, 8 run' || fail "A: $(summary a1)"
n1=0 n2=0
while read -r act; do
    on1=0 on2=0
    "$PROBE" --addr "127.0.0.1:$P1" ac-get main "$act" >/dev/null 2>&1 && on1=1
    "$PROBE" --addr "127.0.0.1:$P2" ac-get main "$act" >/dev/null 2>&1 && on2=1
    [ $((on1 + on2)) -eq 1 ] || fail "action $act is on $((on1 + on2)) servers"
    n1=$((n1 + on1)) n2=$((n2 + on2))
done <"$T/actions"
[ "$n1" -gt 0 ] && [ "$n2" -gt 0 ] && [ $((n1 + n2)) -eq 8 ] && pass "results spread: $n1 on one server, $n2 on the other" ||
    fail "spread: $n1 + $n2"

# 2. B, fresh, both up: every step a remote hit. The order of --cache
# does not matter (placement hashes the URL, not its position).
build B b1 -t t --cache "$U2" --cache "$U1" "$ctx"
[ "$(field b1 'remote hits')" -eq 8 ] && [ "$(id_of b1)" = "$(id_of ref)" ] &&
    pass "two endpoints: all remote hits, same image" || fail "B: $(summary b1)"

# 3. The second server goes away: its share runs, the first one's hits.
cd_stop
build C c1 -t t --cache "$U1" --cache "$U2" --cache-timeout 3s --cache-mode read "$ctx"
[ "$(grep -c 'warning: cache .* unusable' "$T/c1")" -eq 1 ] || fail "one endpoint down: warnings: $(grep warning "$T/c1")"
[ "$(field c1 'remote hits')" -eq "$n1" ] && [ "$(field c1 'run')" -eq "$n2" ] && [ "$(id_of c1)" = "$(id_of ref)" ] &&
    pass "one endpoint down: its $n2 steps ran, $n1 hits, same image" || fail "C: $(summary c1)"
CD_PID=$PID1 CD_LOG=$LOG1
cd_stop
PID1=

# 4. A server that refuses every call (it wants a token this client does
# not have): one warning, every step runs, the image is right.
printf 'ci write *\n' >"$T/tokens"
cd_start --tokens "$T/tokens"
build D d1 -t t --cache "grpc://127.0.0.1:$CD_PORT/main" --cache-token wrong "$ctx"
[ "$(grep -c 'warning' "$T/d1")" -eq 1 ] && grep -q 'UNAUTHENTICATED\|PERMISSION_DENIED' "$T/d1" ||
    fail "refusing server: warnings: $(grep -i warning "$T/d1")"
summary d1 | grep -q '0 remote hits, 8 run' && [ "$(id_of d1)" = "$(id_of ref)" ] &&
    pass "refusing server: one warning, steps ran, same image" || fail "D: $(summary d1)"
cd_stop
finish
