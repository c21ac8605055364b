#!/usr/bin/env bash
# cairnd's /metrics and JSON logs (issue 13): a shared-cache build through a
# cairnd with --metrics-listen, scraped by a real Prometheus during the
# build (the value read back through its HTTP API) and by curl (promtool
# check metrics clean; AC hits, bytes in and requests by method moved);
# one JSON object per log line, with call lines that never hold a token;
# /metrics behind a bearer token; a metrics port in use or a bad address
# stops cairnd at start (exit 2); a scrape during the drain is answered or
# refused, never left hanging.
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000
command -v promtool >/dev/null && command -v prometheus >/dev/null ||
    { echo "SKIP: Debian's prometheus is not installed"; exit 0; }
command -v curl >/dev/null || { echo "SKIP: curl is not installed"; exit 0; }

busybox_base

# metrics_port N: the port cairnd N printed ("metrics on 127.0.0.1:PORT").
metrics_port() { sed -n 's/^metrics on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/cairnd$1.out"; }
# scrape OUT [curl args]: GET /metrics into $T/OUT; prints the HTTP status.
scrape() {
    local out=$1; shift
    curl -s --max-time 10 -o "$T/$out" -w '%{http_code}' "$@" "http://127.0.0.1:$MP/metrics"
}
# value FILE SAMPLE: the value of the first line starting with SAMPLE.
value() { awk -v n="$2 " 'index($0, n) == 1 { print $NF; exit }' "$T/$1"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ctx=$T/ctx
mkdir -p "$ctx"
head -c 300000 /dev/urandom >"$ctx/blob"
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox:latest
COPY blob /data/blob
RUN echo RAN && cp /data/blob /data/copy
DF

# 1. cairnd with /metrics on an ephemeral port, JSON logs.
cd_start --metrics-listen 127.0.0.1:0 --log-format json
MP=$(metrics_port $CD_N)
[ -n "$MP" ] && pass "metrics port printed: $MP" || fail "no 'metrics on' line: $(cat "$T/cairnd$CD_N.out")"
URL=grpc://127.0.0.1:$CD_PORT/main

# 2. A real Prometheus scrapes it every second while A and B build.
PP=$(free_port)
cat >"$T/prom.yml" <<EOF2
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: cairnd
    static_configs: [{targets: ['127.0.0.1:$MP']}]
EOF2
prometheus --config.file="$T/prom.yml" --storage.tsdb.path="$T/prom" \
    --web.listen-address="127.0.0.1:$PP" >"$T/prom.log" 2>&1 &
PROM_PID=$!
trap 'kill $PROM_PID 2>/dev/null; wait $PROM_PID 2>/dev/null; cd_cleanup' EXIT

newstore A
build A a1 -t app --cache "$URL" "$ctx"
up=$(field a1 "bytes up")
newstore B
build B b1 -t app --cache "$URL" "$ctx"
summary b1 | grep -q '2 remote hits, 0 run' || fail "B summary: $(summary b1)"

# A 20 MiB ByteStream Write: staged in batches (8 MiB each by default).
head -c 20971520 /dev/urandom >"$T/big"
expect 0 probe write "main/uploads/00000000-0000-4000-8000-000000000001/blobs/$(digest "$T/big")" "$T/big" ||
    fail "ByteStream Write of 20 MiB"

# 3. curl: the page is valid by promtool's rules, and what must have moved did.
code=$(scrape m1)
[ "$code" = 200 ] || fail "GET /metrics: HTTP $code"
if promtool check metrics <"$T/m1" >"$T/promtool.out" 2>&1; then
    pass "promtool check metrics: clean"
else
    fail "promtool check metrics: $(head -5 "$T/promtool.out")"
fi
grep -q '^# TYPE cairnd_grpc_request_duration_seconds histogram$' "$T/m1" || fail "no latency histogram"
hits=$(value m1 cairnd_action_cache_hits_total)
[ "${hits:-0}" -ge 2 ] && pass "AC hits after B's build: $hits" || fail "AC hits: '$hits'"
misses=$(value m1 cairnd_action_cache_misses_total)
[ "${misses:-0}" -ge 2 ] || fail "AC misses after A's cold build: '$misses'"
in=$(value m1 cairnd_cas_received_bytes_total)
[ "${in:-0}" -gt 300000 ] && [ "${in:-0}" -ge "${up:-1}" ] && pass "CAS bytes in $in >= the layers A uploaded ($up)" ||
    fail "CAS bytes in '$in', A uploaded '$up' bytes, the COPY layer alone holds 300000"
out=$(value m1 cairnd_cas_sent_bytes_total)
[ "${out:-0}" -gt 300000 ] || fail "CAS bytes out '$out' after B's remote hits"
get_ok=$(value m1 'cairnd_grpc_requests_total{service="build.bazel.remote.execution.v2.ActionCache",method="GetActionResult",code="OK"}')
upd_ok=$(value m1 'cairnd_grpc_requests_total{service="build.bazel.remote.execution.v2.ActionCache",method="UpdateActionResult",code="OK"}')
[ "${get_ok:-0}" -ge 2 ] && [ "${upd_ok:-0}" -ge 2 ] && pass "requests by method: GetActionResult OK $get_ok, UpdateActionResult OK $upd_ok" ||
    fail "requests by method: GetActionResult OK '$get_ok', UpdateActionResult OK '$upd_ok'"
nf=$(value m1 'cairnd_grpc_requests_total{service="build.bazel.remote.execution.v2.ActionCache",method="GetActionResult",code="NOT_FOUND"}')
[ "${nf:-0}" -ge 2 ] || fail "GetActionResult NOT_FOUND '$nf'"
wr=$(value m1 'cairnd_grpc_requests_total{service="google.bytestream.ByteStream",method="Write",code="OK"}')
batches=$(value m1 cairnd_store_stage_batches_total)
syncs=$(value m1 cairnd_store_stage_sync_duration_seconds_count)
[ "${wr:-0}" -ge 1 ] && [ "${batches:-0}" -ge 2 ] && [ "$syncs" = "$batches" ] &&
    pass "Write OK $wr; $batches stage batches, each in the sync histogram" ||
    fail "Write OK '$wr', stage batches '$batches', sync histogram count '$syncs'"
[ "$(value m1 cairnd_uploads_in_flight)" = 0 ] || fail "uploads in flight after the uploads: $(value m1 cairnd_uploads_in_flight)"
blobs=$(value m1 cairnd_store_blobs)
[ "${blobs:-0}" -ge 2 ] || fail "cairnd_store_blobs '$blobs'"
[ "$(value m1 cairnd_store_limit_bytes)" = 1073741824 ] || fail "store limit: $(value m1 cairnd_store_limit_bytes)"
[ "$(value m1 process_open_fds)" -gt 3 ] || fail "process_open_fds: $(value m1 process_open_fds)"
grep -q '^cairnd_build_info{version="[^"]*",key_scheme="1",grpc_version="[^"]*"} 1$' "$T/m1" ||
    fail "build info: $(grep build_info "$T/m1")"

# 4. Prometheus saw the same through its HTTP API (first sample 6-7 s in).
pval=
for _ in $(seq 1 60); do
    pval=$(curl -s --max-time 5 "http://127.0.0.1:$PP/api/v1/query?query=cairnd_action_cache_hits_total" |
        jq -r '.data.result[0].value[1] // empty' 2>/dev/null)
    [ -n "$pval" ] && [ "$pval" -ge "$hits" ] 2>/dev/null && break
    sleep 0.5
done
[ -n "$pval" ] && [ "$pval" -ge "$hits" ] && pass "Prometheus reads cairnd_action_cache_hits_total = $pval" ||
    { fail "Prometheus query: '$pval' (want >= $hits)"; tail -5 "$T/prom.log"; }
up_v=$(curl -s --max-time 5 "http://127.0.0.1:$PP/api/v1/query?query=up%7Bjob%3D%22cairnd%22%7D" | jq -r '.data.result[0].value[1] // empty')
[ "$up_v" = 1 ] || fail "Prometheus target up: '$up_v'"
kill $PROM_PID; wait $PROM_PID 2>/dev/null

# 5. JSON log: one object per line; call lines carry the fields.
bad=0
while IFS= read -r line; do
    printf '%s' "$line" | jq -e 'type == "object" and has("time") and has("level") and has("msg")' >/dev/null 2>&1 ||
        { bad=$((bad + 1)); [ $bad -le 3 ] && echo "    not a JSON log line: $line"; }
done <"$CD_LOG"
[ $bad -eq 0 ] && pass "every log line is a JSON object ($(wc -l <"$CD_LOG") lines)" || fail "$bad log lines are not JSON objects"
# (jq 1.6's -e looks only at the last line: grep for any output.)
jq -c 'select(.msg == "call" and .method == "GetActionResult" and .code == "OK" and .instance == "main"
        and ((.peer // "") | startswith("ipv4:127.0.0.1:")) and .duration_s >= 0 and .bytes_out > 0)' \
    "$CD_LOG" | grep -q . &&
    pass "call lines: service, method, instance, code, duration, bytes, peer" || fail "no full call line for GetActionResult"

# 6. A scrape during the drain is answered or refused, never left hanging.
( for _ in $(seq 1 30); do curl -s --max-time 5 -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$MP/metrics"; done ) >"$T/drain.codes" 2>&1 &
scraper=$!
sleep 0.2
cd_stop
wait $scraper
grep -qv '^\(200\|000\)$' "$T/drain.codes" && fail "scrapes during the drain: $(sort "$T/drain.codes" | uniq -c | tr '\n' ' ')"
pass "scrapes through the drain: $(sort "$T/drain.codes" | uniq -c | tr '\n' ' ')"

# 7. A metrics token: 401 without or with a wrong one; the gRPC bearer
# tokens of calls appear in no log line, even failing ones at info.
printf 'metrics-s3cret-token\n' >"$T/mtoken"
printf 'grpc-s3cret-token write *\n' >"$T/tokens"
cd_start --metrics-listen 127.0.0.1:0 --metrics-token-file "$T/mtoken" --tokens "$T/tokens" --log-format json
MP=$(metrics_port $CD_N)
[ "$(scrape m2)" = 401 ] && pass "no token: 401" || fail "no token: HTTP $(scrape m2)"
grep -qi '^www-authenticate: Bearer' <(curl -s -D - -o /dev/null "http://127.0.0.1:$MP/metrics") || fail "401 without a Bearer challenge"
[ "$(scrape m2 -H 'Authorization: Bearer wrong-token')" = 401 ] || fail "wrong token accepted"
[ "$(scrape m2 -H 'Authorization: Bearer metrics-s3cret-token')" = 200 ] && pass "right token: 200" || fail "right token refused"
grep -q '^cairnd_build_info' "$T/m2" || fail "no metrics with the token"
[ "$(scrape m2 -X POST -H 'Authorization: Bearer metrics-s3cret-token')" = 405 ] || fail "POST not refused"
expect 0 probe --token grpc-s3cret-token caps main
expect $UNAUTHENTICATED probe --token grpc-wr0ng-token caps main
expect $NOT_FOUND probe --token grpc-s3cret-token ac-get main "$(printf x | sha256sum | cut -c1-64)/1"
jq -c 'select(.msg == "call" and .code == "UNAUTHENTICATED" and .level == "info")' "$CD_LOG" | grep -q . ||
    fail "the refused call has no info line"
if grep -q 's3cret\|wr0ng' "$CD_LOG"; then
    fail "a token reached the log: $(grep 's3cret\|wr0ng' "$CD_LOG" | head -2)"
else
    pass "no token in the log ($(grep -c '"msg":"call"' "$CD_LOG") call lines)"
fi
cd_stop

# 8. Bad input at start: exit 2 with a message naming the option.
cd_start --metrics-listen 127.0.0.1:0
busy=$(metrics_port $CD_N)
expect_msg 2 "--metrics-listen: cannot listen on 127.0.0.1:$busy: Address already in use" \
    "$CAIRND" --listen 127.0.0.1:0 --dir "$T/s9" --max-size 1G --metrics-listen "127.0.0.1:$busy"
cd_stop
expect_msg 2 "--metrics-listen 127.0.0.1:http: expected HOST:PORT" \
    "$CAIRND" --listen 127.0.0.1:0 --dir "$T/s9" --max-size 1G --metrics-listen 127.0.0.1:http
expect_msg 2 "--metrics-listen no.such.host.invalid:9464" \
    "$CAIRND" --listen 127.0.0.1:0 --dir "$T/s9" --max-size 1G --metrics-listen no.such.host.invalid:9464
expect_msg 2 "--metrics-token-file $T/none" \
    "$CAIRND" --listen 127.0.0.1:0 --dir "$T/s9" --max-size 1G --metrics-listen 127.0.0.1:0 --metrics-token-file "$T/none"
printf 'two words\n' >"$T/badtoken"
expect_msg 2 "expected one token" \
    "$CAIRND" --listen 127.0.0.1:0 --dir "$T/s9" --max-size 1G --metrics-listen 127.0.0.1:0 --metrics-token-file "$T/badtoken"
expect_msg 2 "--log-format: 'xml' is not text|json" \
    "$CAIRND" --listen 127.0.0.1:0 --dir "$T/s9" --max-size 1G --log-format xml

finish
