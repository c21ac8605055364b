#!/usr/bin/env bash
# Bytes that are not UTF-8 in a Dockerfile (ENV, LABEL, RUN) and in
# context file names: every JSON cairn prints or writes stays valid JSON,
# each invalid byte written as U+FFFD (\ufffd), as Go's encoder does for
# Docker. Jansson refuses such strings, and cairn used to report that as
# "out of memory".
. "$(dirname "$0")/lib.sh"

ctx="$T/ctx"
mkdir -p "$ctx"
bad_name=$(printf 'f\xe9')
printf 'x\n' > "$ctx/$bad_name"
# $'...' keeps the bytes as they are: \xe9 alone, \xff\xfe, \xc3( are all
# invalid UTF-8.
printf 'FROM scratch\nENV A=caf\xe9\nLABEL l=\xff\xfe\nCOPY . /ctx/\n' \
    > "$ctx/Dockerfile.norun"
{ cat "$ctx/Dockerfile.norun"; printf 'RUN echo \xc3\x28\n'; } > "$ctx/Dockerfile"

# keys --json and --json --explain.
"$CAIRN" keys --json "$ctx" > "$T/keys.json" 2> "$T/keys.err" ||
    fail "keys --json: $(cat "$T/keys.err")"
jq -e . "$T/keys.json" > /dev/null || fail "keys --json is not JSON"
assert_eq "$(jq -r '.[1].instruction' "$T/keys.json")" $'ENV A=caf\uFFFD' \
    "ENV instruction"
assert_eq "$(jq -r '.[2].instruction' "$T/keys.json")" $'LABEL l=\uFFFD\uFFFD' \
    "LABEL instruction"
assert_eq "$(jq -r '.[4].instruction' "$T/keys.json")" $'RUN echo \uFFFD(' \
    "RUN instruction"
grep -q 'caf\\u[Ff][Ff][Ff][Dd]' "$T/keys.json" || fail "not escaped as \\ufffd"
"$CAIRN" keys --json --explain "$ctx" > "$T/explain.json" ||
    fail "keys --json --explain failed"
jq -e . "$T/explain.json" > /dev/null || fail "keys --explain is not JSON"
jq -e '.[4].material | map(select(.[0] == "env")) | map(.[1]) |
       index("A=caf\ufffd") != null' "$T/explain.json" > /dev/null ||
    fail "RUN material lacks the ENV value"

# A build, then everything that writes JSON about its image.
"$CAIRN" build -t u8test -f "$ctx/Dockerfile.norun" "$ctx" > /dev/null ||
    fail "build with invalid UTF-8 failed"
"$CAIRN" inspect u8test > "$T/inspect.json" || fail "inspect failed"
jq -e . "$T/inspect.json" > /dev/null || fail "inspect is not JSON"
assert_eq "$(jq -r '.[0].Config.Labels.l' "$T/inspect.json")" $'\uFFFD\uFFFD' \
    "label in inspect"
jq -e '.[0].Config.Env | index("A=caf\ufffd") != null' "$T/inspect.json" \
    > /dev/null || fail "env in inspect"
jq -e . "$CAIRN_ROOT/index.json" > /dev/null || fail "index.json is not JSON"
"$CAIRN" save -o "$T/img.tar" u8test || fail "save failed"
mkdir "$T/img"
tar -xf "$T/img.tar" -C "$T/img"
jq -e . "$T/img/manifest.json" > /dev/null || fail "saved manifest.json"
jq -e . "$T/img/index.json" > /dev/null || fail "saved index.json"

# The file with the bad name changes: --explain -t says why, in JSON.
printf 'y\n' > "$ctx/$bad_name"
"$CAIRN" keys --json --explain -t u8test -f "$ctx/Dockerfile.norun" "$ctx" \
    > "$T/causes.json" || fail "keys --explain -t failed"
jq -e '.[3].causes | length > 0' "$T/causes.json" > /dev/null ||
    fail "no causes for the changed COPY"
jq -r '.[3].causes[]' "$T/causes.json" | grep -q $'f\uFFFD' ||
    fail "causes do not name the file: $(jq -c '.[3].causes' "$T/causes.json")"
echo PASS
