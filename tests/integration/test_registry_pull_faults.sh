#!/usr/bin/env bash
# cairn pull through registry_faults.py in front of the real registry:
# a 503 and a 429 with Retry-After are retried; a blob whose body breaks
# off is resumed with a Range request; one that stalls mid-body times out
# and, where the registry offers no ranges, is fetched again from the
# start. Each time the pull completes with the right bytes. A manifest
# over 4 MiB and a malformed one are refused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start_plain
echo one > "$T/one.txt"
reg_oci_image "$T/oci" app "$T/one.txt"
reg_push "$T/oci:app" team/app:v1 || fail "skopeo push"
man=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "app")
    | .digest' "$T/oci/index.json")
layer=$(jq -r '.layers[0].digest' "$T/oci/blobs/sha256/${man#sha256:}")

# start_proxy NAME ARGS...: sets PROXY_ADDR and PROXY_LOG.
start_proxy() {
    local name=$1
    shift
    PROXY_LOG=$T/$name.log
    : > "$PROXY_LOG"
    python3 "$CAIRN_SOURCE_DIR/tests/integration/registry_faults.py" \
        --upstream "$REG_ADDR" --log "$PROXY_LOG" --port-file "$T/$name.port" \
        "$@" 2> "$T/$name.err" &
    REG_PIDS+=($!)
    local i
    for i in $(seq 1 50); do [ -s "$T/$name.port" ] && break; sleep 0.1; done
    [ -s "$T/$name.port" ] || fail "fault proxy did not start: $(cat "$T/$name.err")"
    PROXY_ADDR=127.0.0.1:$(cat "$T/$name.port")
}

# 1. 503 on the manifest, then a blob cut in half: retried and resumed.
start_proxy p1 --status 503 --truncate
"$CAIRN" pull "$PROXY_ADDR/team/app:v1" > "$T/o1" 2>&1 || { cat "$T/o1" "$PROXY_LOG"; fail "pull 1"; }
grep -q "^Status: Downloaded newer image" "$T/o1" || fail "status 1: $(cat "$T/o1")"
has() { jq -s -e "map(select($1)) | length > 0" "$PROXY_LOG" >/dev/null; }
has '.method == "HEAD" and .status == 503' ||
    fail "no 503 was served: $(cat "$PROXY_LOG")"
has '.method == "HEAD" and (.path | endswith("/manifests/v1")) and .status == 200' ||
    fail "the 503 was not retried"
layer_gets=$(jq -c --arg l "$layer" \
    'select(.method == "GET" and (.path | endswith("/blobs/" + $l)))' "$PROXY_LOG")
[ "$(echo "$layer_gets" | wc -l)" -eq 2 ] || fail "layer GETs: $layer_gets"
echo "$layer_gets" | tail -1 | jq -e '.range | test("^bytes=[1-9][0-9]*-$")' >/dev/null ||
    fail "the broken layer was not resumed with a Range: $layer_gets"
echo "$layer_gets" | tail -1 | jq -e '.status == 206' >/dev/null || fail "no 206"
"$CAIRN" save "$PROXY_ADDR/team/app:v1" -o "$T/one.tar" || fail "save 1"

# 2. 429, and a layer that stalls mid-body with no ranges on offer: the
# stall times out and the layer is fetched again from the start.
export CAIRN_ROOT=$T/root2
export CAIRN_REGISTRY_TIMEOUT=2
start_proxy p2 --status 429 --stall --no-ranges
"$CAIRN" pull "$PROXY_ADDR/team/app:v1" > "$T/o2" 2>&1 || { cat "$T/o2" "$PROXY_LOG"; fail "pull 2"; }
grep -q "^Status: Downloaded newer image" "$T/o2" || fail "status 2: $(cat "$T/o2")"
has '.status == 429' || fail "no 429 was served"
big=$(jq -c --arg l "$layer" \
    'select(.method == "GET" and (.path | endswith("/blobs/" + $l)))' "$PROXY_LOG" | jq -s .)
assert_eq "$(echo "$big" | jq 'length')" 2 "GETs of the stalled layer"
assert_eq "$(echo "$big" | jq -r '[.[].range] | unique | .[0]')" null "ranges asked without an offer"
unset CAIRN_REGISTRY_TIMEOUT
# Both stores hold the same image.
"$CAIRN" save "$PROXY_ADDR/team/app:v1" -o "$T/two.tar" || fail "save 2"
assert_eq "$(tar -tf "$T/two.tar" | sort | grep blobs | md5sum)" \
    "$(tar -tf "$T/one.tar" | sort | grep blobs | md5sum)" "same blobs"

# 3. A manifest over 4 MiB, and one that is not JSON: refused, nothing
# stored.
export CAIRN_ROOT=$T/root3
python3 -c 'import sys; sys.stdout.write("{\"x\":\"" + "a" * (4 << 20) + "\"}")' > "$T/big.json"
start_proxy p3 --manifest-body "$T/big.json"
set +e
out=$("$CAIRN" pull "$PROXY_ADDR/team/app:v1" 2>&1); rc=$?
set -e
assert_eq "$rc" 1 "pull of a 4 MiB manifest ($out)"
echo "$out" | grep -q "over 4194304 bytes" || fail "big manifest: $out"
printf '{"schemaVersion":2,"layers":[' > "$T/bad.json"
start_proxy p4 --manifest-body "$T/bad.json"
set +e
out=$("$CAIRN" pull "$PROXY_ADDR/team/app:v1" 2>&1); rc=$?
set -e
assert_eq "$rc" 1 "pull of a malformed manifest ($out)"
echo "$out" | grep -q "manifest is not JSON" || fail "malformed manifest: $out"
assert_eq "$("$CAIRN" images -q)" "" "images after bad manifests"
echo ok
