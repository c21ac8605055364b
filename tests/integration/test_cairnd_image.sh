#!/usr/bin/env bash
# The cairnd image (docker/cairnd/Dockerfile), built by cairn itself with
# scripts/image.sh from this build's cairnd, is under 30 MB, `cairn save`s
# into an archive the private dockerd (docker_lib.sh: no bridge, no
# iptables) loads, and runs as the Helm chart runs it: the chart's default
# arguments (listening on 127.0.0.1:0 instead of *:9092, host network), as
# uid/gid 65532 from the image, read-only root, every capability dropped,
# no new privileges, the data directory on the image's VOLUME. Through it:
# health SERVING, a Bazel-style round trip (CAS blob + action result, then
# read back; ByteStream for a larger blob), cairn's own remote cache (a
# fresh store gets every layer as a remote hit), health NOT_SERVING after
# SIGTERM, and `docker stop` drains and exits 0. With the chart's
# metrics setting (--metrics-listen), /metrics through the container counts
# what the round trips did, and promtool (when installed) accepts it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/docker_lib.sh"
skip() {
    echo "SKIP: test_cairnd_image: $*"
    exit 0
}
: "${CAIRND:?}" "${CAIRN_BUILD_DIR:?}" "${CAIRN_SOURCE_DIR:?}"
PROBE=$CAIRN_BUILD_DIR/bench/bench_reapi_probe
[ -x "$PROBE" ] || fail "missing $PROBE (build bench_reapi_probe)"
[ -n "$DOCKERD" ] || skip "dockerd is not installed"
[ -x "$DOCKER" ] || skip "$DOCKER is not installed"
SRC=$CAIRN_SOURCE_DIR
version=$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' "$SRC/helm/cairnd/Chart.yaml")
IMAGE=cairnd:$version
LIMIT=30000000 # bytes: "under 30 MB"

# --- build with cairn, measure, save ----------------------------------------
bash "$SRC/scripts/image.sh" --cairnd "$CAIRND" --cairn "$CAIRN" --save "$T/cairnd.tar" \
    >"$T/image.out" 2>&1 || { cat "$T/image.out"; fail "scripts/image.sh"; }
assert_eq "$(tail -1 "$T/image.out")" "$IMAGE" "the tag scripts/image.sh made (the chart's appVersion)"
grep -q '^Successfully tagged '"$IMAGE"'$' "$T/image.out" || fail "cairn build did not tag $IMAGE"
mkdir -p "$T/oci"
tar -C "$T/oci" -xf "$T/cairnd.tar"
manifest=$(jq -r '.manifests[0].digest' "$T/oci/index.json")
layers=$(jq '[.layers[].size] | add' "$T/oci/blobs/sha256/${manifest#sha256:}")
tarsize=$(stat -c %s "$T/cairnd.tar")
echo "image: layers $layers bytes (compressed), saved archive $tarsize bytes"
[ "$layers" -lt "$LIMIT" ] || fail "layers add up to $layers bytes, not under $LIMIT"
[ "$tarsize" -lt "$LIMIT" ] || fail "the saved archive is $tarsize bytes, not under $LIMIT"

# --- load into the private dockerd ------------------------------------------
start_dockerd || skip "$dockerd_why"
dk load -i "$T/cairnd.tar" >"$T/load.out" 2>&1 || fail "docker load: $(cat "$T/load.out")"
dk image inspect "$IMAGE" >"$T/inspect.json" || fail "docker image inspect $IMAGE"
echo "image: $(jq '.[0].Size' "$T/inspect.json") bytes unpacked (docker image inspect)"
cfg() { jq -c ".[0].Config.$1" "$T/inspect.json"; }
assert_eq "$(cfg Entrypoint)" '["/usr/bin/cairnd"]' "ENTRYPOINT (the chart passes only args)"
assert_eq "$(cfg User)" '"65532:65532"' "USER (the chart's runAsUser/runAsGroup)"
assert_eq "$(cfg Volumes)" '{"/var/lib/cairnd":{}}' "VOLUME (the chart's data mount)"
assert_eq "$(cfg ExposedPorts)" '{"9092/tcp":{}}' "EXPOSE (the chart's port)"
# The chart's default args: helm/cairnd/templates/statefulset.yaml with
# values.yaml's defaults (test_helm_chart.sh asserts 40960M, 30s and 5s there).
assert_eq "$(cfg Cmd)" \
    '["--listen","*:9092","--dir","/var/lib/cairnd/store","--max-size","40960M","--log-level","info","--drain-timeout","30s","--shutdown-delay","5s"]' \
    "CMD: the chart's default arguments"

# The chart's arguments but the address, and the shutdown delay made long
# so that the NOT_SERVING check below cannot race its end (docker stop's
# second SIGTERM ends it). Where no container can start (cgroups,
# seccomp...), skip rather than blame the image.
mapfile -t args < <(jq -r '.[0].Config.Cmd[] | if . == "*:9092" then "127.0.0.1:0" else . end' \
    "$T/inspect.json")
args+=(--shutdown-delay 1h --metrics-listen 127.0.0.1:0)
dk run -d --name cairnd-it --network=host --read-only --cap-drop ALL \
    --security-opt no-new-privileges "$IMAGE" "${args[@]}" >"$T/run.out" 2>&1 || {
    grep -qiE 'cgroup|seccomp|apparmor|permission denied|operation not permitted' "$T/run.out" &&
        skip "docker cannot run containers here: $(tail -2 "$T/run.out")"
    fail "docker run: $(cat "$T/run.out")"
}
port=
for _ in $(seq 1 100); do
    port=$(dk logs cairnd-it 2>/dev/null | sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p')
    [ -n "$port" ] && break
    [ "$(dk inspect -f '{{.State.Running}}' cairnd-it)" = true ] || break
    sleep 0.1
done
[ -n "$port" ] || { dk logs cairnd-it 2>&1 | tail -20; fail "cairnd in the container printed no port"; }
mport=$(dk logs cairnd-it 2>/dev/null | sed -n 's/^metrics on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p')
[ -n "$mport" ] || { dk logs cairnd-it 2>&1 | tail -20; fail "cairnd in the container printed no metrics port"; }
pid=$(dk inspect -f '{{.State.Pid}}' cairnd-it)
assert_eq "$(awk '/^Uid:/ {print $2} /^Gid:/ {print $2}' "/proc/$pid/status" | paste -sd:)" 65532:65532 \
    "the container's cairnd runs as uid:gid"
assert_eq "$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")" 0000000000000000 "effective capabilities"
assert_eq "$(dk inspect -f '{{range .Mounts}}{{.Destination}}{{end}}' cairnd-it)" /var/lib/cairnd \
    "the data directory is a volume"
# (Logs go to a file first: grep -q would end the pipe early, pipefail.)
dk logs cairnd-it >"$T/cairnd.log" 2>&1
grep -q 'store /var/lib/cairnd/store (max 42949672960 bytes)' "$T/cairnd.log" ||
    fail "start line: $(grep store "$T/cairnd.log")"

# --- through the container ----------------------------------------------------
probe() { "$PROBE" --addr "127.0.0.1:$port" --timeout 30 "$@"; }
probe health >"$T/health.out" || fail "health: $(cat "$T/health.out")"
assert_eq "$(cat "$T/health.out")" status=1 "health (grpc.health.v1, service \"\")"

# Bazel's round trip: the output blob, then the action result naming it,
# then a fresh reader gets the result and the blob back.
echo "output of the action" >"$T/out.txt"
d=$(sha256sum "$T/out.txt" | cut -c1-64)/$(stat -c %s "$T/out.txt")
action=$(echo "action 1" | sha256sum | cut -c1-64)/9
probe put main "$T/out.txt" >/dev/null || fail "CAS put"
probe ac-put main "$action" "file=out.txt:$d" >/dev/null || fail "AC put"
probe ac-get main "$action" >"$T/ac.out" || fail "AC get"
grep -q "out.txt" "$T/ac.out" && grep -q "${d%/*}" "$T/ac.out" ||
    fail "action result read back: $(cat "$T/ac.out")"
probe get main "$d" >"$T/get.out" || fail "CAS get"
head -c 3000000 /dev/urandom >"$T/big"
bd=$(sha256sum "$T/big" | cut -c1-64)/3000000
probe write "main/uploads/it/blobs/$bd" "$T/big" >/dev/null || fail "ByteStream Write"
probe read "main/blobs/$bd" >"$T/big.back" 2>"$T/read.err" || fail "ByteStream Read"
cmp -s "$T/big" "$T/big.back" || fail "ByteStream Read gave other bytes"
echo "ok: CAS, AC and ByteStream round trips through the container"

# cairn's own cache through it: store A builds and uploads, a fresh store
# B gets every layer step as a remote hit.
mkdir -p "$T/ctx"
echo "layer one" >"$T/ctx/a.txt"
head -c 200000 /dev/urandom >"$T/ctx/b.bin"
printf 'FROM scratch\nCOPY a.txt /a.txt\nCOPY b.bin /b.bin\n' >"$T/ctx/Dockerfile"
for s in A B; do
    CAIRN_ROOT="$T/$s" "$CAIRN" build -t app --cache "grpc://127.0.0.1:$port" "$T/ctx" >"$T/$s.out" 2>&1 ||
        { cat "$T/$s.out"; fail "cairn build in store $s"; }
done
grep -q '^cairn: .* 2 remote hits, 0 run' "$T/B.out" ||
    fail "store B: $(grep '^cairn: ' "$T/B.out")"
echo "ok: cairn's remote cache through the container: $(grep '^cairn: ' "$T/B.out")"

# /metrics through the container: what the calls above did is counted.
curl -fsS "http://127.0.0.1:$mport/metrics" >"$T/metrics.txt" || fail "GET /metrics"
metric() { awk -v m="$1" '$1 == m {print $2}' "$T/metrics.txt"; }
grep -q '^cairnd_build_info{' "$T/metrics.txt" || fail "no cairnd_build_info"
hits=$(metric cairnd_action_cache_hits_total)
[ -n "$hits" ] && [ "${hits%.*}" -ge 3 ] || fail "action cache hits: '$hits' (AC get + store B's 2 hits)"
inb=$(metric cairnd_cas_received_bytes_total)
[ -n "$inb" ] && [ "${inb%.*}" -ge 3000000 ] || fail "CAS bytes received: '$inb' (the 3 MB Write)"
if command -v promtool >/dev/null; then
    promtool check metrics <"$T/metrics.txt" >"$T/promtool.out" 2>&1 ||
        fail "promtool check metrics: $(cat "$T/promtool.out")"
fi
echo "ok: /metrics through the container: $hits AC hits, $inb CAS bytes in"

# --- SIGTERM: NOT_SERVING (readiness); docker stop: the drain, exit 0 ---------
dk kill -s TERM cairnd-it >/dev/null || fail "docker kill -s TERM"
for _ in $(seq 1 100); do
    dk logs cairnd-it >"$T/cairnd.log" 2>&1
    grep -q 'SIGTERM: health NOT_SERVING' "$T/cairnd.log" && break
    sleep 0.1
done
probe health >"$T/health.out" || fail "health after SIGTERM: $(cat "$T/health.out")"
assert_eq "$(cat "$T/health.out")" status=2 "health after SIGTERM (NOT_SERVING: readiness drops)"
dk stop -t 60 cairnd-it >/dev/null || fail "docker stop"
assert_eq "$(dk inspect -f '{{.State.ExitCode}}' cairnd-it)" 0 "exit code after docker stop"
dk logs cairnd-it >"$T/cairnd.log" 2>&1
grep -q 'SIGTERM: draining' "$T/cairnd.log" && grep -q 'summary (exit)' "$T/cairnd.log" ||
    fail "no drain in the log: $(tail -5 "$T/cairnd.log")"
if grep -q 'ERROR: \(AddressSanitizer\|LeakSanitizer\)\|runtime error:' "$T/cairnd.log"; then
    grep -A20 Sanitizer "$T/cairnd.log" | head -40
    fail "sanitizer report in the container's log"
fi
dk rm cairnd-it >/dev/null
stop_dockerd
echo "test_cairnd_image: all passed"
