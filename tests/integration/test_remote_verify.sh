#!/usr/bin/env bash
# Audit mode (issue 15, item 4): `cairn build --cache-verify PERCENT`.
# A writes the cache; then a writer plants, under the real key of the
# last RUN, a valid layer with other content (its true digests, so the
# cache loop itself accepts it). A fresh store with --cache-verify 100
# runs both remote hits locally as well: the deterministic step verifies
# clean, the planted one is named (instruction and line) and the image
# holds the local result, A's layer. Without --cache-verify the planted
# layer is taken (what the audit is for). A percentage picks the same
# steps every time; bad values are refused.
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000

busybox_base
ctx=$T/ctx
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox:latest
RUN echo one >/one
RUN echo two >/two
DF
layers() { CAIRN_ROOT="$T/$1" "$CAIRN" inspect t | jq -c '.[0].RootFS.Layers'; }

cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
newstore A
build A a1 -t t --cache "$URL" "$ctx"
summary a1 | grep -q ' 2 run' || fail "A: $(summary a1)"

# The planted layer: /two says "evil", as a gzip'd tar with its true
# digests, under the real key of step 3.
CAIRN_ROOT="$T/A" "$CAIRN" keys --json "$ctx" >"$T/keys.json" || fail "keys --json"
ACTION=$(jq -r '.[-1].key + "/" + (.[-1].material_size|tostring)' "$T/keys.json")
mkdir -p "$T/evil"
echo evil >"$T/evil/two"
tar -C "$T/evil" --owner=0 --group=0 -cf "$T/evil.tar" two
gzip -n -c "$T/evil.tar" >"$T/evil.tar.gz"
expect 0 probe put main "$T/evil.tar.gz" || fail "put layer"
expect 0 probe ac-put main "$ACTION" "file=layer:$(digest "$T/evil.tar.gz")" \
    "prop=layer:cairn.diff_id=sha256:$(sha "$T/evil.tar")" \
    "prop=layer:cairn.media_type=application/vnd.oci.image.layer.v1.tar+gzip" || fail "ac-put"

# Without the audit the planted layer is a remote hit (the entry is valid).
newstore P
build P p1 -t t --cache "$URL" --cache-mode read "$ctx"
layers P | grep -q "$(sha "$T/evil.tar")" || fail "the planted layer was not taken without --cache-verify: $(layers P)"
grep -q 'cache-verify' "$T/p1" && fail "verification without --cache-verify"

# With --cache-verify 100: step 2 verifies clean, step 3 is named.
newstore B
build B b1 -t t --cache "$URL" --cache-mode read --cache-verify 100 "$ctx"
awk '/^Step 2\/3/{s=1} /^Step 3\/3/{s=0} s' "$T/b1" | grep -q 'Verified: a local run makes the cache' ||
    fail "step 2 did not verify clean: $(cat "$T/b1")"
grep -q "Warning\] --cache-verify: step 3/3 (.*Dockerfile:3 RUN echo two >/two) differs from the shared cache: diff_id sha256:$(sha "$T/evil.tar") there" "$T/b1" &&
    grep -q 'a nondeterministic step or a bad cache entry' "$T/b1" &&
    pass "the planted layer is named: $(grep -o 'step 3/3 ([^)]*)' "$T/b1")" ||
    fail "no mismatch line for step 3: $(cat "$T/b1")"
[ "$(layers B)" = "$(layers A)" ] && pass "the image holds the local result (A's layers)" ||
    fail "B layers $(layers B) != A $(layers A)"
[ "$(id_of b1)" = "$(id_of a1)" ] || fail "B image $(id_of b1) != A $(id_of a1)"
summary b1 | grep -q '1 remote hits, 1 run' || fail "B summary: $(summary b1)"
# The local result replaced the cache's in B's index: a rebuild keeps it.
build B b2 -t t "$ctx"
[ "$(id_of b2)" = "$(id_of a1)" ] || fail "B rebuild $(id_of b2) != $(id_of a1)"

# A percentage picks the same steps each time (two fresh stores): those
# whose key's first 32 bits mod 100 are under it (docs/remote.md).
picked() { grep -E '^Step |Verified|cache-verify' "$T/$1" | awk '/^Step/{s=$2} /Verified|cache-verify/{print s}' | tr '\n' ' '; }
K2=$(jq -r '.[1].key' "$T/keys.json")
K3=$(jq -r '.[2].key' "$T/keys.json")
V2=$((16#${K2:0:8} % 100))
V3=$((16#${K3:0:8} % 100))
PCT=$((V2 + 1))
want="2/3 "
[ "$V3" -lt "$PCT" ] && want="2/3 3/3 "
newstore C1
newstore C2
build C1 c1 -t t --cache "$URL" --cache-mode read --cache-verify "$PCT" "$ctx"
build C2 c2 -t t --cache "$URL" --cache-mode read --cache-verify "$PCT" "$ctx"
[ "$(picked c1)" = "$want" ] && [ "$(picked c2)" = "$want" ] &&
    pass "--cache-verify $PCT picks '$want' both times" ||
    fail "--cache-verify $PCT: '$(picked c1)' then '$(picked c2)', want '$want'"
# 0 verifies nothing.
newstore Z
build Z z1 -t t --cache "$URL" --cache-mode read --cache-verify 0 "$ctx"
[ -z "$(picked z1)" ] || fail "--cache-verify 0 verified '$(picked z1)'"

for bad in 101 -1 +5 5% '' 1e2 ' 5' 0x10; do
    expect 2 env CAIRN_ROOT="$T/Z" "$CAIRN" build --cache-verify "$bad" "$ctx" &&
        grep -q -- '--cache-verify wants a percentage from 0 to 100' "$T/last.err" ||
        fail "--cache-verify '$bad': $(cat "$T/last.err")"
done
pass "bad percentages refused"

cd_stop
[ "$FAILS" -eq 0 ] || exit 1
echo "all passed"
