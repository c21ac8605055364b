#!/usr/bin/env bash
# Shutdown as a readiness probe sees it. On SIGTERM grpc.health.v1 Check
# answers NOT_SERVING; with --shutdown-delay cairnd keeps serving
# everything else meanwhile (new connections, new calls, a Write held
# open), so the probe can see it, on a new connection (the kubelet's) or
# one opened before (a load balancer's); a second SIGTERM starts the
# drain, after which gRPC takes no new call on any connection (health
# included: it fails at the connection, old or new) while the held Write
# still runs; when that ends, cairnd exits 0. Without the delay the first
# SIGTERM drains at once, and a check on an old connection fails too.
. "$(dirname "$0")/server_lib.sh"

NOT_SERVING=status=2 SERVING=status=1
held= early=
trap 'kill $held $early 2>/dev/null; cd_cleanup' EXIT

# early NAME: a connection opened now that checks health once, then again
# when $T/NAME.go appears (probe health-after); output in $T/NAME.out.
early() {
    "$PROBE" --addr "127.0.0.1:$CD_PORT" --timeout 60 health-after "$T/$1.go" >"$T/$1.out" 2>&1 &
    early=$!
    for _ in $(seq 1 100); do grep -q status= "$T/$1.out" && break; sleep 0.1; done
}
# early_done NAME: lets it check again; its exit code is in $early_rc.
early_done() {
    touch "$T/$1.go"
    early_rc=0
    wait "$early" || early_rc=$?
    early=
}

cd_start --shutdown-delay 1h --drain-timeout 1h
expect 0 probe health && grep -qx "$SERVING" "$T/last.out" && pass "SERVING before SIGTERM" ||
    fail "health before SIGTERM: $(cat "$T/last.out")"

# A Write held open: 1 MB of 3 MB sent, no finish, the stream kept open.
head -c 3000000 /dev/urandom >"$T/big"
R="uploads/drain/blobs/$(digest "$T/big")"
"$PROBE" --addr "127.0.0.1:$CD_PORT" --timeout 3600 write "$R" "$T/big" count=1000000 finish=0 hold=3600 \
    >"$T/held.out" 2>&1 &
held=$!
for _ in $(seq 1 100); do
    probe qws "$R" 2>/dev/null | grep -q 'committed_size=1000000' && break
    sleep 0.1
done
expect 0 probe qws "$R" && grep -q 'committed_size=1000000' "$T/last.out" ||
    fail "the held Write did not arrive: $(cat "$T/last.out")"
early old1

kill -TERM "$CD_PID"
for _ in $(seq 1 100); do grep -q 'SIGTERM: health NOT_SERVING' "$CD_LOG" && break; sleep 0.1; done
expect 0 probe health && grep -qx "$NOT_SERVING" "$T/last.out" &&
    pass "NOT_SERVING after SIGTERM, on a new connection (as the kubelet probes)" ||
    fail "health after SIGTERM: $(cat "$T/last.out")"
early_done old1
[ "$early_rc" = 0 ] && [ "$(paste -sd' ' "$T/old1.out")" = "$SERVING $NOT_SERVING" ] &&
    pass "NOT_SERVING after SIGTERM, on a connection opened before it" ||
    fail "old connection (exit $early_rc): $(cat "$T/old1.out")"
expect 0 probe health build.bazel.remote.execution.v2.ActionCache && grep -qx "$NOT_SERVING" "$T/last.out" &&
    pass "every service NOT_SERVING" || fail "ActionCache health: $(cat "$T/last.out")"
echo during-delay >"$T/small"
expect 0 probe put "" "$T/small" && expect 0 probe get "" "$(digest "$T/small")" &&
    pass "new calls are still served during --shutdown-delay"
expect 0 probe qws "$R" && grep -q 'committed_size=1000000' "$T/last.out" &&
    kill -0 "$held" && pass "the held Write is still open" || fail "held Write: $(cat "$T/last.out")"

# The second SIGTERM ends the delay: the drain refuses new calls, the held
# Write keeps cairnd draining (--drain-timeout 1h).
kill -TERM "$CD_PID"
for _ in $(seq 1 100); do grep -q 'SIGTERM: draining' "$CD_LOG" && break; sleep 0.1; done
grep -q 'SIGTERM: draining' "$CD_LOG" || fail "no drain after the second SIGTERM"
expect "$UNAVAILABLE" probe --timeout 5 health && kill -0 "$CD_PID" &&
    pass "draining: health fails at the connection while the held Write runs"
kill "$held" 2>/dev/null
wait "$held" 2>/dev/null
held=
cd_stop
[ "$FAILS" -eq 0 ] && pass "exit 0 once the held Write ended"

# Without --shutdown-delay (the default) the first SIGTERM drains at once:
# with a Write held open (so cairnd stays in the drain), a check on a
# connection opened before fails as a new one does.
cd_start --drain-timeout 1h
expect 0 probe health && grep -qx "$SERVING" "$T/last.out" || fail "health: $(cat "$T/last.out")"
"$PROBE" --addr "127.0.0.1:$CD_PORT" --timeout 3600 write "$R" "$T/big" count=1000000 finish=0 hold=3600 \
    >"$T/held.out" 2>&1 &
held=$!
for _ in $(seq 1 100); do
    probe qws "$R" 2>/dev/null | grep -q 'committed_size=1000000' && break
    sleep 0.1
done
early old2
kill -TERM "$CD_PID"
for _ in $(seq 1 100); do grep -q 'SIGTERM: draining' "$CD_LOG" && break; sleep 0.1; done
early_done old2
# gRPC's shutdown cancels a call that arrives on an old connection
# (CANCELLED); a client that has already read the GOAWAY reconnects and is
# refused (UNAVAILABLE). Either way: no answer, and no SERVING.
case $early_rc in "$CANCELLED" | "$UNAVAILABLE") ok=1 ;; *) ok=0 ;; esac
[ "$ok" = 1 ] && [ "$(grep -c status= "$T/old2.out")" = 1 ] && kill -0 "$CD_PID" &&
    pass "no delay: a check on an old connection fails ($(tail -1 "$T/old2.out")) while the drain runs" ||
    fail "no delay, old connection (exit $early_rc): $(cat "$T/old2.out")"
kill "$held" 2>/dev/null
wait "$held" 2>/dev/null
held=
cd_stop
grep -q 'SIGTERM: draining' "$CD_LOG" && ! grep -q 'NOT_SERVING' "$CD_LOG" &&
    pass "no delay by default: the first SIGTERM drains" || fail "log: $(grep SIGTERM "$CD_LOG")"
finish
