#!/usr/bin/env bash
# cairn pull with auth (registry_lib.sh's htpasswd and token registries,
# client/registry/auth.c): anonymous pulls are refused naming `cairn
# login`; after a login the pull works and a re-pull is up to date; the
# token stays on the registry host when a blob GET is redirected to the
# storage server.
here=$(dirname "$0")
. "$here/lib.sh"
. "$here/registry_lib.sh"
export HOME=$T/home
mkdir -p "$HOME"
unset DOCKER_CONFIG REGISTRY_AUTH_FILE XDG_RUNTIME_DIR

for mode in htpasswd token; do
    export CAIRN_ROOT=$T/root-$mode
    reg_start "$mode" --redirect
    reg_push_busybox team/busybox:1 alice:alice-pw || fail "$mode: push"
    set +e
    out=$("$CAIRN" pull "$REG_ADDR/team/busybox:1" 2>&1); rc=$?
    set -e
    assert_eq "$rc" 1 "$mode: anonymous pull ($out)"
    echo "$out" | grep -qF "cairn login $REG_ADDR" || fail "$mode: message: $out"
    echo alice-pw | "$CAIRN" login -u alice --password-stdin "$REG_ADDR" >/dev/null ||
        fail "$mode: login"
    "$CAIRN" pull "$REG_ADDR/team/busybox:1" > "$T/p1" 2>&1 || { cat "$T/p1"; fail "$mode: pull"; }
    grep -q "^Status: Downloaded newer image" "$T/p1" || fail "$mode: $(cat "$T/p1")"
    "$CAIRN" pull "$REG_ADDR/team/busybox:1" > "$T/p2" 2>&1 || { cat "$T/p2"; fail "$mode: re-pull"; }
    grep -q "^Status: Image is up to date" "$T/p2" || fail "$mode: $(cat "$T/p2")"
    # The blobs came from the storage server, without the credentials.
    assert_eq "$(grep -c '^GET /docker/registry/v2/blobs/' "$REG_STATIC_LOG")" 2 \
        "$mode: blob GETs redirected"
    grep -v 'auth=None' "$REG_STATIC_LOG" && fail "$mode: Authorization followed the redirect"
    "$CAIRN" logout "$REG_ADDR" >/dev/null || true
    reg_stop_all
done
echo ok
