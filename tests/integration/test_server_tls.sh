#!/usr/bin/env bash
# TLS and mutual TLS, with certificates made by openssl at test time.
. "$(dirname "$0")/server_lib.sh"
command -v openssl >/dev/null || { echo "SKIP: openssl not installed"; exit 0; }

cd "${T:?}"
ossl() { openssl "$@" 2>>"$T/openssl.log" >/dev/null || { echo "openssl failed"; cat "$T/openssl.log"; exit 1; }; }
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
ossl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr
ossl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem
ossl req -newkey rsa:2048 -nodes -subj /CN=client -keyout client.key -out client.csr
ossl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem
# A second CA whose client certificate the server must refuse.
ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.pem
cd - >/dev/null
echo data >"$T/f"

cd_start --tls-cert "$T/server.pem" --tls-key "$T/server.key"
expect 0 probe --ca "$T/ca.pem" --timeout 10 put "" "$T/f" && pass "TLS call"
expect 0 probe --ca "$T/ca.pem" --timeout 10 read "blobs/$(digest "$T/f")" && cmp -s "$T/last.out" "$T/f" && pass "TLS stream"
expect $UNAVAILABLE probe --timeout 5 health && pass "plaintext client refused by TLS server"
expect $UNAVAILABLE probe --ca "$T/other.pem" --timeout 5 health && pass "client that does not trust the server CA fails"
cd_stop

cd_start --tls-cert "$T/server.pem" --tls-key "$T/server.key" --tls-client-ca "$T/ca.pem"
grep -q 'with client certificates' "$CD_LOG" && pass "mTLS announced"
expect 0 probe --ca "$T/ca.pem" --cert "$T/client.pem" --key "$T/client.key" --timeout 10 put "" "$T/f" \
    && pass "mTLS with a good client certificate"
expect $UNAVAILABLE probe --ca "$T/ca.pem" --timeout 5 health && pass "mTLS without a client certificate refused"
expect $UNAVAILABLE probe --ca "$T/ca.pem" --cert "$T/other.pem" --key "$T/other.key" --timeout 5 health \
    && pass "mTLS with a certificate from another CA refused"
cd_stop
finish
