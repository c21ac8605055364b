#!/usr/bin/env bash
# --health-listen: a second, plaintext listener for the kubelet's gRPC
# probes (which speak no TLS) while the main port is TLS with tokens. On
# it only grpc.health.v1.Health/Check is answered: no token asked, every
# other method UNIMPLEMENTED (nothing of the store reachable); it turns
# NOT_SERVING with the main port during --shutdown-delay. A bad address or
# a port in use stops cairnd with exit 2.
. "$(dirname "$0")/server_lib.sh"
command -v openssl >/dev/null || { echo "SKIP: openssl not installed"; exit 0; }

cd "${T:?}"
ossl() { openssl "$@" 2>>"$T/openssl.log" >/dev/null || { echo "openssl failed"; cat "$T/openssl.log"; exit 1; }; }
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
ossl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr
ossl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem
cd - >/dev/null
printf 'secret-token-1234 write *\n' >"$T/tokens"
echo data >"$T/f"
D=$(digest "$T/f")
NOT_SERVING=status=2 SERVING=status=1

cd_start --tls-cert "$T/server.pem" --tls-key "$T/server.key" --tokens "$T/tokens" \
    --health-listen 127.0.0.1:0 --shutdown-delay 1h
HP=$(sed -n 's/^health on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/cairnd$CD_N.out")
[ -n "$HP" ] || { fail "no 'health on' line: $(cat "$T/cairnd$CD_N.out")"; finish; }
hprobe() { "$PROBE" --addr "127.0.0.1:$HP" --timeout 10 "$@"; }
tprobe() { probe --ca "$T/ca.pem" --token secret-token-1234 --timeout 10 "$@"; }

expect 0 tprobe put "" "$T/f" && pass "main port: TLS call with the token"
expect $UNAVAILABLE probe --timeout 5 health && pass "main port still refuses plaintext"
expect 0 hprobe health && grep -qx "$SERVING" "$T/last.out" &&
    pass "health port: plaintext Check without a token is SERVING" ||
    fail "health port Check: $(cat "$T/last.out")"
expect 0 hprobe health build.bazel.remote.execution.v2.ActionCache && grep -qx "$SERVING" "$T/last.out" &&
    pass "health port: a service name is SERVING"
# The stored blob must not be reachable through the health port, with or
# without the token.
expect $UNIMPLEMENTED hprobe fmb "" "$D" && pass "health port: FindMissingBlobs UNIMPLEMENTED"
expect $UNIMPLEMENTED hprobe --token secret-token-1234 get "" "$D" &&
    pass "health port: BatchReadBlobs with the token UNIMPLEMENTED"
expect $UNIMPLEMENTED hprobe ac-get "" "$D" && pass "health port: GetActionResult UNIMPLEMENTED"
expect $UNIMPLEMENTED hprobe read "blobs/$D" && pass "health port: ByteStream Read UNIMPLEMENTED"
expect $UNIMPLEMENTED hprobe write "blobs/$D" "$T/f" && pass "health port: ByteStream Write UNIMPLEMENTED"
expect $UNIMPLEMENTED hprobe caps && pass "health port: GetCapabilities UNIMPLEMENTED"
expect $UNAVAILABLE hprobe --ca "$T/ca.pem" health && pass "health port speaks no TLS"

kill -TERM "$CD_PID"
for _ in $(seq 1 100); do grep -q 'SIGTERM: health NOT_SERVING' "$CD_LOG" && break; sleep 0.1; done
expect 0 hprobe health && grep -qx "$NOT_SERVING" "$T/last.out" &&
    pass "health port: NOT_SERVING during --shutdown-delay" ||
    fail "health port after SIGTERM: $(cat "$T/last.out")"
expect 0 tprobe health && grep -qx "$NOT_SERVING" "$T/last.out" &&
    pass "main port agrees" || fail "main port after SIGTERM: $(cat "$T/last.out")"
cd_stop

# Start-up errors: exit 2 naming the option.
expect_msg 2 '--health-listen nonsense: expected HOST:PORT' \
    "$CAIRND" --listen 127.0.0.1:0 --dir "$T/bad" --max-size 1M --health-listen nonsense
cd_start
expect_msg 2 "--health-listen: cannot listen on 127.0.0.1:$CD_PORT" \
    "$CAIRND" --listen 127.0.0.1:0 --dir "$T/bad" --max-size 1M --health-listen "127.0.0.1:$CD_PORT"
cd_stop
finish
