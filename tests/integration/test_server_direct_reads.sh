#!/usr/bin/env bash
# Plaintext connections reach gRPC as the client's own socket, the HTTP/2
# gate running on gRPC's reads (server/grpc/gatefd.h); TLS ones are still
# relayed. Big reads come back byte-exact both ways; a client that drops
# a read mid-stream leaves nothing behind: the relay learns that gRPC
# closed the socket, so --max-connections 2 still admits new clients
# after many such reads. (The gate's own refusals on this path are
# test_server_connection_limits.sh's header floods.)
. "$(dirname "$0")/server_lib.sh"
command -v openssl >/dev/null || { echo "SKIP: openssl not installed"; exit 0; }

head -c $((48 << 20)) /dev/urandom >"$T/big"
D=$(digest "$T/big")

cd_start --max-connections 2
expect 0 probe write "uploads/u/blobs/$D" "$T/big" chunk=1048576 && pass "48 MiB written"
expect 0 probe read "blobs/$D" && cmp -s "$T/last.out" "$T/big" \
    && pass "48 MiB read back byte-exact" || fail "plaintext read differs"
expect 0 probe read "blobs/$D" 12345 5000000 && cmp -s "$T/last.out" <(tail -c +12346 "$T/big" | head -c 5000000) \
    && pass "a 5 MB range read back byte-exact" || fail "range read differs"
grep -q 'connection from ipv4:127\.0\.0\.1:[0-9]* closed: closed by gRPC' "$CD_LOG" \
    && pass "plaintext connections are gRPC's own sockets (closed by gRPC)" \
    || fail "no direct connection in the log"

# Reads cut after 1 MB: the probe dies of SIGPIPE with most of the blob
# unread, its socket closed under the stream.
for i in 1 2 3 4 5; do
    probe read "blobs/$D" 2>/dev/null | head -c 1000000 >"$T/cut$i"
    [ "$(size "$T/cut$i")" -eq 1000000 ] || fail "cut read $i got $(size "$T/cut$i") bytes"
done
cmp -s "$T/cut5" <(head -c 1000000 "$T/big") && pass "cut reads delivered the right first 1 MB"
ok=
for _ in $(seq 1 50); do
    # A refused connection fails at once; gRPC may need a moment to close.
    if probe --timeout 5 health >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
done
[ -n "$ok" ] && pass "after 5 cut reads --max-connections 2 still admits a client" \
    || fail "connections of the cut reads still counted: $(grep -c 'max-connections reached' "$CD_LOG") refusals"
expect 0 probe read "blobs/$D" && cmp -s "$T/last.out" "$T/big" && pass "whole read after the cut ones"
cd_stop

# TLS goes through the relay (it terminates TLS; gRPC sees plaintext).
cd "$T"
ossl() { openssl "$@" 2>>"$T/openssl.log" >/dev/null || { echo "openssl failed"; cat "$T/openssl.log"; exit 1; }; }
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
ossl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr
ossl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem
cd - >/dev/null
cd_start --tls-cert "$T/server.pem" --tls-key "$T/server.key" --max-connections 2
expect 0 probe --ca "$T/ca.pem" --timeout 60 write "uploads/u/blobs/$D" "$T/big" chunk=1048576 \
    && pass "48 MiB written over TLS"
expect 0 probe --ca "$T/ca.pem" --timeout 60 read "blobs/$D" && cmp -s "$T/last.out" "$T/big" \
    && pass "48 MiB read back byte-exact over TLS" || fail "TLS read differs"
for i in 1 2 3; do
    probe --ca "$T/ca.pem" read "blobs/$D" 2>/dev/null | head -c 1000000 >/dev/null
done
ok=
for _ in $(seq 1 50); do
    if probe --ca "$T/ca.pem" --timeout 5 health >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
done
[ -n "$ok" ] && pass "after 3 cut TLS reads --max-connections 2 still admits a client" \
    || fail "TLS connections of the cut reads still counted"
grep -q 'closed by gRPC' "$CD_LOG" && fail "a TLS connection was handed to gRPC directly"
cd_stop
finish
