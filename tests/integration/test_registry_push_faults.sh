#!/usr/bin/env bash
# cairn push through registry_push_faults.py in front of the real
# registry: an upload the registry refuses at its closing PUT (its bytes
# mangled on the way) starts over in a new upload session and the push
# completes; one refused every time fails after 3 sessions with the
# registry's message, and the store is left as it was; an upload Location
# that is not a path or an http(s) URL is refused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start http

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

# start_proxy NAME ARGS...: sets PROXY_ADDR and PROXY_LOG.
start_proxy() {
    local name=$1
    shift
    PROXY_LOG=$T/$name.log
    : > "$PROXY_LOG"
    python3 "$CAIRN_SOURCE_DIR/tests/integration/registry_push_faults.py" \
        --upstream "$REG_ADDR" --log "$PROXY_LOG" --port-file "$T/$name.port" \
        "$@" 2> "$T/$name.err" &
    REG_PIDS+=($!)
    local i
    for i in $(seq 1 50); do [ -s "$T/$name.port" ] && break; sleep 0.1; done
    [ -s "$T/$name.port" ] || fail "fault proxy did not start: $(cat "$T/$name.err")"
    PROXY_ADDR=127.0.0.1:$(cat "$T/$name.port")
}
count() { jq -s "map(select($1)) | length" "$PROXY_LOG"; }

# 1. One refused closing PUT: that blob is uploaded again and the push completes.
start_proxy p1 --fail-put 1
"$CAIRN" tag busybox:latest "$PROXY_ADDR/team/app:1"
"$CAIRN" push "$PROXY_ADDR/team/app:1" > "$T/o1" 2>&1 || { cat "$T/o1" "$PROXY_LOG"; fail "push 1"; }
grep -qE "^1: digest: sha256:[0-9a-f]{64} size: [0-9]+$" "$T/o1" || fail "digest line: $(cat "$T/o1")"
assert_eq "$(count '.method == "PUT" and .status == 400')" 1 "refused PUTs"
# Two blobs (layer, config) and one restart: three upload sessions.
assert_eq "$(count '.method == "POST" and .status == 202')" 3 "upload sessions"
skopeo inspect --tls-verify=false "docker://$REG_ADDR/team/app:1" > /dev/null || fail "pushed image"

# 2. Refused every time: fails after 3 sessions of the first blob, the
# message is the registry's, the store is unchanged.
start_proxy p2 --fail-put 1000
"$CAIRN" tag busybox:latest "$PROXY_ADDR/team/bad:1"
before=$("$CAIRN" inspect "$PROXY_ADDR/team/bad:1")
"$CAIRN" push "$PROXY_ADDR/team/bad:1" > "$T/o2" 2>&1 && fail "push 2 succeeded"
grep -q "DIGEST_INVALID" "$T/o2" || fail "message 2: $(cat "$T/o2")"
grep -q "$PROXY_ADDR" "$T/o2" || fail "message 2 names no registry: $(cat "$T/o2")"
assert_eq "$(count '.method == "PUT" and .status == 400')" 3 "closing PUTs tried"
assert_eq "$("$CAIRN" inspect "$PROXY_ADDR/team/bad:1")" "$before" "image after a failed push"

# 3. An upload Location that is not an http(s) URL or a path is refused
# before anything is sent to it.
start_proxy p3 --location 'file:///etc/passwd'
"$CAIRN" tag busybox:latest "$PROXY_ADDR/team/loc:1"
"$CAIRN" push "$PROXY_ADDR/team/loc:1" > "$T/o3" 2>&1 && fail "push 3 succeeded"
grep -q "without a usable Location" "$T/o3" || fail "message 3: $(cat "$T/o3")"
assert_eq "$(count '.method == "PUT" or .method == "PATCH"')" 0 "bytes sent to a bad Location"
echo ok
