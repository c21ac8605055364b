#!/usr/bin/env bash
# The shared cache through grpcs:// (certificates made by openssl at test
# time, trusted with --cache-ca), and a slow server: cairnd stopped with
# SIGSTOP before a build and in the middle of one. A slow or untrusted
# server costs a warning and at most about --cache-timeout; the build
# succeeds with the right image.
. "$(dirname "$0")/remote_lib.sh"
command -v openssl >/dev/null || { echo "SKIP: openssl not installed"; exit 0; }
export SOURCE_DATE_EPOCH=1700000000

busybox_base

cd "${T:?}"
ossl() { openssl "$@" 2>>"$T/openssl.log" >/dev/null || { echo "openssl failed"; cat "$T/openssl.log"; exit 1; }; }
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
ossl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr
ossl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.pem
cd - >/dev/null

ctx=$T/ctx
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox:latest
RUN echo RUN-ONE-RAN && echo one > /one
COPY f.txt /f.txt
RUN echo RUN-TWO-RAN && cat /f.txt /one > /both
DF
echo f >"$ctx/f.txt"
newstore REF
build REF ref -t app "$ctx"

# 1. grpcs:// with --cache-ca: A uploads, fresh B gets every step remotely.
cd_start --tls-cert "$T/server.pem" --tls-key "$T/server.key"
URL=grpcs://127.0.0.1:$CD_PORT/main
newstore A
build A a1 -t app --cache "$URL" --cache-ca "$T/ca.pem" "$ctx"
summary a1 | grep -qE ' 0 remote hits, 3 run, 0 bytes down, [1-9][0-9]* bytes up' || fail "A over TLS: $(summary a1)"
grep -qi warning "$T/a1" && fail "A over TLS warned: $(grep -i warning "$T/a1")"
newstore B
CAIRN_CACHE_CA="$T/ca.pem" build B b1 -t app --cache "$URL" "$ctx"
summary b1 | grep -qE '3 remote hits, 0 run, [1-9][0-9]* bytes down' || fail "B over TLS: $(summary b1)"
[ "$(id_of b1)" = "$(id_of ref)" ] && pass "grpcs:// with --cache-ca: all remote hits, same image" ||
    fail "B over TLS: image $(id_of b1) != $(id_of ref)"

# 2. A CA that did not sign the server's certificate: a warning, no hit.
newstore C
build C c1 -t app --cache "$URL" --cache-ca "$T/other.pem" --cache-timeout 5s "$ctx"
grep -q 'warning: cache .* unusable' "$T/c1" || fail "untrusted server: no warning: $(cat "$T/c1")"
summary c1 | grep -q ' 0 remote hits, 3 run' || fail "untrusted server: $(summary c1)"
[ "$(id_of c1)" = "$(id_of ref)" ] && pass "untrusted certificate: warning, steps run, same image" ||
    fail "C image $(id_of c1)"
cd_stop

# 3. A server that stops answering before the build (SIGSTOP: connections
# are accepted by the kernel, nothing replies). The build waits about one
# --cache-timeout, warns, runs everything.
cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
kill -STOP "$CD_PID"
newstore D
t0=$(date +%s)
build D d1 -t app --cache "$URL" --cache-timeout 2s "$ctx"
t1=$(date +%s)
grep -q 'warning: cache .* unusable' "$T/d1" || fail "stopped server: no warning: $(cat "$T/d1")"
summary d1 | grep -q ' 0 remote hits, 3 run' || fail "stopped server: $(summary d1)"
[ "$(id_of d1)" = "$(id_of ref)" ] || fail "stopped server: image $(id_of d1)"
# A bound, not a speed check: without deadlines the build would hang.
[ $((t1 - t0)) -lt 60 ] && pass "stopped server: warning, steps run, same image ($((t1 - t0)) s)" ||
    fail "stopped server: the build took $((t1 - t0)) s"
kill -CONT "$CD_PID"

# 4. The server stops in the middle of a build, during its last RUN: the
# upload of that step times out, and the build still ends with the image.
sed 's/RUN-TWO-RAN && /RUN-TWO-RAN \&\& sleep 1 \&\& /' "$ctx/Dockerfile" >"$T/Dockerfile.slow"
newstore E2
build E2 e2 -t app -f "$T/Dockerfile.slow" "$ctx"
newstore E
t0=$(date +%s)
CAIRN_ROOT="$T/E" "$CAIRN" build -t app -f "$T/Dockerfile.slow" --cache "$URL" --cache-timeout 2s "$ctx" >"$T/e1" 2>&1 &
bpid=$!
for i in $(seq 1 200); do grep -qx 'RUN-TWO-RAN' "$T/e1" 2>/dev/null && break; sleep 0.05; done
kill -STOP "$CD_PID"
rc=0; wait $bpid || rc=$?
t1=$(date +%s)
kill -CONT "$CD_PID"
[ "$rc" -eq 0 ] || fail "build with the server stopped mid-build failed: $(cat "$T/e1")"
grep -q 'warning: cache .*' "$T/e1" || fail "stopped mid-build: no warning: $(cat "$T/e1")"
[ "$(id_of e1)" = "$(id_of e2)" ] || fail "stopped mid-build: image $(id_of e1) != $(id_of e2)"
[ $((t1 - t0)) -lt 60 ] && pass "server stopped mid-build: warning, same image ($((t1 - t0)) s)" ||
    fail "stopped mid-build: the build took $((t1 - t0)) s"
cd_stop
finish
