#!/usr/bin/env bash
# cairn pull from a TLS registry whose CA the test makes: refused while
# the CA is unknown (the message says where a CA goes), trusted through
# certs.d/HOST:PORT/ca.crt ($CAIRN_CERTS_D stands for /etc/docker/certs.d
# here), or not checked for a registry named insecure.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start_plain tls
echo one > "$T/one.txt"
reg_oci_image "$T/oci" app "$T/one.txt"
reg_push "$T/oci:app" team/app:v1 || fail "skopeo push"
export CAIRN_CERTS_D=$T/certs.d
mkdir -p "$CAIRN_CERTS_D"

# 1. Unknown CA: refused, no plain-HTTP fallback, a message that helps.
set +e
out=$("$CAIRN" pull "$REG_ADDR/team/app:v1" 2>&1); rc=$?
set -e
assert_eq "$rc" 1 "pull with an unknown CA ($out)"
echo "$out" | grep -q "not trusted" || fail "message: $out"
echo "$out" | grep -q "certs.d/$REG_ADDR/ca.crt" || fail "no hint: $out"
grep -q '"GET /v2/team/app' "$REG_ACCESS_LOG" && fail "a request went through"

# 2. Insecure: TLS without checks.
"$CAIRN" pull --insecure-registry "$REG_ADDR" "$REG_ADDR/team/app:v1" > "$T/p1" 2>&1 ||
    { cat "$T/p1"; fail "--insecure-registry"; }
"$CAIRN" rmi "$REG_ADDR/team/app:v1" >/dev/null
"$CAIRN" prune -f >/dev/null
CAIRN_INSECURE_REGISTRIES="other:1,$REG_ADDR" "$CAIRN" pull -q "$REG_ADDR/team/app:v1" \
    >/dev/null || fail "CAIRN_INSECURE_REGISTRIES"
"$CAIRN" rmi "$REG_ADDR/team/app:v1" >/dev/null
"$CAIRN" prune -f >/dev/null
# ...or in the settings file, for pull and for a build's FROM.
mkdir -p "$T/xdg/cairn"
printf '# test\ninsecure-registry = %s\n' "$REG_ADDR" > "$T/xdg/cairn/config"
XDG_CONFIG_HOME=$T/xdg "$CAIRN" pull -q "$REG_ADDR/team/app:v1" >/dev/null ||
    fail "insecure-registry in the settings file"
"$CAIRN" rmi "$REG_ADDR/team/app:v1" >/dev/null
"$CAIRN" prune -f >/dev/null
mkdir -p "$T/ctx"
printf 'FROM %s/team/app:v1\n' "$REG_ADDR" > "$T/ctx/Dockerfile"
XDG_CONFIG_HOME=$T/xdg "$CAIRN" build -t fromtls "$T/ctx" > "$T/b1" 2>&1 ||
    { cat "$T/b1"; fail "build FROM an insecure registry"; }
if "$CAIRN" build -t fromtls2 --pull "$T/ctx" > "$T/b2" 2>&1; then
    fail "build --pull trusted an unknown CA"
fi
grep -q "not trusted" "$T/b2" || fail "build --pull message: $(cat "$T/b2")"
"$CAIRN" rmi fromtls "$REG_ADDR/team/app:v1" >/dev/null
"$CAIRN" prune -f >/dev/null

# 3. The CA in certs.d/HOST:PORT: verified and pulled.
mkdir -p "$CAIRN_CERTS_D/$REG_ADDR"
cp "$REG_CA" "$CAIRN_CERTS_D/$REG_ADDR/ca.crt"
"$CAIRN" pull "$REG_ADDR/team/app:v1" > "$T/p2" 2>&1 || { cat "$T/p2"; fail "pull with the CA"; }
grep -q "^Status: Downloaded newer image" "$T/p2" || fail "status: $(cat "$T/p2")"
# A .cert without its .key is an error, not a silent anonymous TLS.
touch "$CAIRN_CERTS_D/$REG_ADDR/client.cert"
set +e
out=$("$CAIRN" pull "$REG_ADDR/team/app:v1" 2>&1); rc=$?
set -e
assert_eq "$rc" 1 "client certificate without key"
echo "$out" | grep -q "has no key" || fail "message: $out"
echo ok
