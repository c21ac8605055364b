#!/usr/bin/env bash
# cairn pull from a TLS registry that wants a client certificate: without
# one the pull fails saying TLS failed (not a plain-HTTP muddle, though
# the registry is on loopback); with client.cert and client.key beside
# the CA in certs.d/HOST:PORT it succeeds.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start_plain mtls
echo one > "$T/one.txt"
reg_oci_image "$T/oci" app "$T/one.txt"
reg_push "$T/oci:app" team/app:v1 || fail "skopeo push"
export CAIRN_CERTS_D=$T/certs.d
d=$CAIRN_CERTS_D/$REG_ADDR
mkdir -p "$d"
cp "$REG_CA" "$d/ca.crt"

set +e
out=$("$CAIRN" pull "$REG_ADDR/team/app:v1" 2>&1); rc=$?
set -e
assert_eq "$rc" 1 "pull without a client certificate ($out)"
echo "$out" | grep -q "TLS with registry $REG_ADDR failed" || fail "message: $out"

cp "$REG_CLIENT_CERT" "$d/client.cert"
cp "$REG_CLIENT_KEY" "$d/client.key"
"$CAIRN" pull "$REG_ADDR/team/app:v1" > "$T/p1" 2>&1 || { cat "$T/p1"; fail "pull with a client certificate"; }
grep -q "^Status: Downloaded newer image" "$T/p1" || fail "status: $(cat "$T/p1")"
echo ok
