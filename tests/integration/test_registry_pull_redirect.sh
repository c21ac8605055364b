#!/usr/bin/env bash
# cairn pull from a registry that redirects blob GETs (307) to another
# server, as registries do to object storage: the redirect is followed and
# the blobs verified as ever.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start_plain redirect
echo one > "$T/one.txt"
reg_oci_image "$T/oci" app "$T/one.txt"
reg_push "$T/oci:app" team/app:v1 || fail "skopeo push"
: > "$REG_STATIC_LOG"
"$CAIRN" pull "$REG_ADDR/team/app:v1" > "$T/p1" 2>&1 || { cat "$T/p1"; fail "pull"; }
grep -q "^Status: Downloaded newer image" "$T/p1" || fail "status: $(cat "$T/p1")"
grep -q '"GET /v2/team/app/blobs/sha256:[0-9a-f]*  *HTTP/1.1" 307\|"GET /v2/team/app/blobs/sha256:[0-9a-f]* HTTP/1.1" 307' \
    "$REG_ACCESS_LOG" || fail "no 307: $(grep blobs "$REG_ACCESS_LOG")"
assert_eq "$(grep -c '^GET /docker/registry/v2/blobs/sha256/' "$REG_STATIC_LOG")" 2 \
    "blob GETs served by the storage server"
"$CAIRN" save "$REG_ADDR/team/app:v1" -o "$T/a.tar" || fail "save"
echo ok
