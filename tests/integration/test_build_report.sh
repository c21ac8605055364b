#!/usr/bin/env bash
# Build reports: `cairn build --metadata-file F` and `--progress json`.
# A first build reports every layer step "ran", a rebuild "local", a fresh
# store against a cairnd "remote" with bytes down; each step's key is
# `cairn keys --json`'s and each layer is the image's (cairn inspect); the
# totals agree with the steps; JSON lines each parse and the last holds
# the totals; a failing build still writes the file, its step "failed".
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000

busybox_base

ctx=$T/ctx
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox:latest
RUN echo one > /one
COPY f /f
ENV X=1
RUN echo two > /two
DF
echo f >"$ctx/f"
M=$T/meta.json

# check_report FILE STATUS STORE: the report of a successful build of
# $ctx tagged app in STORE, every layer step with STATUS.
check_report() {
    local f=$1 want=$2 store=$3
    jq -e . "$f" >/dev/null || { fail "$f is not JSON"; return; }
    [ "$(jq -r .status "$f")" = success ] || fail "$f status: $(jq -r .status "$f")"
    [ "$(jq '.steps|length' "$f")" -eq 5 ] || fail "$f: $(jq '.steps|length' "$f") steps, want 5"
    [ "$(jq -c '[.steps[].status]' "$f")" = "[\"none\",\"$want\",\"$want\",\"none\",\"$want\"]" ] ||
        fail "$f statuses: $(jq -c '[.steps[].status]' "$f"), want $want"
    [ "$(jq -c '[.steps[].step]' "$f")" = '[1,2,3,4,5]' ] || fail "$f step numbers"
    # Keys: cairn keys --json of the same context.
    CAIRN_ROOT="$T/$store" "$CAIRN" keys --json "$ctx" | jq -c '[.[].key]' >"$T/keys.want"
    jq -c '[.steps[].key]' "$f" >"$T/keys.got"
    cmp -s "$T/keys.want" "$T/keys.got" || fail "$f keys differ from cairn keys: $(cat "$T/keys.got") vs $(cat "$T/keys.want")"
    # Layers: the image's own after the base's, digest and size.
    local base
    base=$(CAIRN_ROOT="$T/$store" "$CAIRN" inspect busybox:latest | jq '.[0].Store.Layers|length')
    CAIRN_ROOT="$T/$store" "$CAIRN" inspect app |
        jq -c "[.[0].Store.Layers[$base:][] | {digest: .Digest, size: .Size}]" >"$T/layers.want"
    jq -c '[.steps[].layer | select(. != null) | {digest, size}]' "$f" >"$T/layers.got"
    cmp -s "$T/layers.want" "$T/layers.got" || fail "$f layers: $(cat "$T/layers.got") vs inspect $(cat "$T/layers.want")"
    [ "$(jq '[.steps[].layer|select(.!=null)]|length' "$f")" -eq 3 ] || fail "$f: not 3 layers"
    # Image ID and tags.
    [ "$(jq -r .image_id "$f")" = "$(CAIRN_ROOT="$T/$store" "$CAIRN" inspect app | jq -r '.[0].Id')" ] ||
        fail "$f image_id $(jq -r .image_id "$f")"
    [ "$(jq -c .tags "$f")" = '["app"]' ] || fail "$f tags $(jq -c .tags "$f")"
    # Totals agree with the steps.
    jq -e '.totals as $t | $t.steps == (.steps|length)
        and $t.local_hits == ([.steps[]|select(.status=="local")]|length)
        and $t.remote_hits == ([.steps[]|select(.status=="remote")]|length)
        and $t.ran == ([.steps[]|select(.status=="ran")]|length)
        and $t.duration >= ([.steps[].duration]|add)
        and ([.steps[].duration|select(. < 0)]|length) == 0' "$f" >/dev/null ||
        fail "$f totals disagree with its steps: $(jq -c .totals "$f")"
}

# 1. A first build: every layer step ran; a rebuild: every one local.
newstore A
build A a1 -t app --metadata-file "$M" "$ctx"
check_report "$M" ran A
[ "$(jq .totals.layer_bytes "$M")" -gt 0 ] || fail "first build: no layer bytes"
cp "$M" "$T/meta.a1"
build A a2 -t app --metadata-file "$M" "$ctx"
check_report "$M" local A
# The summary line is unchanged by the report.
summary a2 | grep -q '^cairn: 5 steps, 3 layers from cache, 0 run, ' || fail "a2 summary: $(summary a2)"
ls "$T"/meta.json.tmp.* >/dev/null 2>&1 && fail "a temp file was left beside the report"
pass "first build ran, rebuild local; keys, layers, totals agree"

# 2. --progress json: one JSON object per line on stdout, a step line per
# step as it ends, then the totals; the log goes to stderr.
CAIRN_ROOT="$T/A" "$CAIRN" build -t app --progress json "$ctx" >"$T/lines" 2>"$T/lines.err" ||
    fail "--progress json build: $(cat "$T/lines.err")"
n=0
while IFS= read -r l; do
    n=$((n + 1))
    printf '%s' "$l" | jq -e 'type == "object"' >/dev/null || fail "line $n is not a JSON object: $l"
done <"$T/lines"
[ "$n" -eq 6 ] || fail "--progress json: $n lines, want 6"
[ "$(jq -sc '[.[].type]' "$T/lines")" = '["step","step","step","step","step","totals"]' ] ||
    fail "line types: $(jq -sc '[.[].type]' "$T/lines")"
tail -1 "$T/lines" | jq -e '.status == "success" and .totals.steps == 5 and .totals.local_hits == 3 and (.image_id|startswith("sha256:"))' >/dev/null ||
    fail "last line: $(tail -1 "$T/lines")"
# The same step records as the metadata file.
[ "$(jq -sc '[.[:5][] | del(.type, .duration)]' "$T/lines")" = "$(jq -c '[.steps[] | del(.duration)]' "$M")" ] ||
    fail "JSON lines differ from the metadata file's steps"
grep -q '^Step 2/5 : RUN echo one' "$T/lines.err" || fail "the log is not on stderr"
expect 2 "$CAIRN" build --progress bogus "$ctx" || fail "--progress bogus accepted"
pass "--progress json: $n lines, each JSON, totals last"

# 3. The shared cache: A uploads, a fresh store B gets remote hits.
cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
newstore C
build C c1 -t app --cache "$URL" --metadata-file "$M" "$ctx"
check_report "$M" ran C
[ "$(jq .totals.bytes_up "$M")" -gt 0 ] || fail "C uploaded nothing: $(jq -c .totals "$M")"
newstore B
build B b1 -t app --cache "$URL" --metadata-file "$M" "$ctx"
check_report "$M" remote B
jq -e '.totals.bytes_down > 0 and .totals.bytes_up == 0 and .totals.remote_hits == 3' "$M" >/dev/null ||
    fail "B totals: $(jq -c .totals "$M")"
[ "$(jq -c '[.steps[].key]' "$M")" = "$(jq -c '[.steps[].key]' "$T/meta.a1")" ] || fail "B keys differ from A's"
pass "fresh store: remote hits, $(jq .totals.bytes_down "$M") bytes down"
cd_stop

# 4. A failing build still writes its report: the step that failed is
# marked, the steps after it are absent, no image.
cat >"$ctx/Dockerfile.bad" <<'DF'
FROM busybox:latest
RUN echo one > /one
RUN exit 3
RUN echo never
DF
expect 1 env CAIRN_ROOT="$T/A" "$CAIRN" build -f "$ctx/Dockerfile.bad" --metadata-file "$T/bad.json" "$ctx" ||
    fail "the failing build did not exit 1"
jq -e '.status == "failed" and .image_id == null and (.error|test("exit 3|non-zero code: 3"))' "$T/bad.json" >/dev/null ||
    fail "failed report: $(jq -c 'del(.steps)' "$T/bad.json")"
[ "$(jq -c '[.steps[].status]' "$T/bad.json")" = '["none","local","failed"]' ] ||
    fail "failed report statuses: $(jq -c '[.steps[].status]' "$T/bad.json")"
jq -e '.steps[2].kind == "RUN" and (.steps[2].error|test("step 3/4"))' "$T/bad.json" >/dev/null ||
    fail "failed step: $(jq -c '.steps[2]' "$T/bad.json")"
# A report that cannot be written fails the build's command, said.
expect 1 env CAIRN_ROOT="$T/A" "$CAIRN" build --metadata-file "$T/no/such/dir/m.json" "$ctx" ||
    fail "an unwritable --metadata-file was not an error"
pass "failing build reported, its step marked failed"

finish
