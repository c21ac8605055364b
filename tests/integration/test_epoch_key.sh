#!/usr/bin/env bash
# The source date epoch is in the cache keys (docs/cachekey.md). It clamps
# the times of every layer's files, so a build with SOURCE_DATE_EPOCH and
# one without must never take each other's layers: in one store, a build
# without the epoch after one with it runs its RUN and COPY again (and
# --explain says the epoch is why), a build with it again hits and gives
# the first image ID; `cairn keys` with the epoch gives the build's keys.
# Through a cairnd: an epoch build on a fresh store after a build without
# one does not take its layers and reproduces a fresh epoch build's image,
# and each kind's entries stay the ones of that kind.
. "$(dirname "$0")/remote_lib.sh"
unset SOURCE_DATE_EPOCH
EPOCH=1700000000

busybox_base
ctx=$T/ctx
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox:latest
COPY f /f
RUN echo ran >/r
CMD ["cat", "/f"]
DF
# Files newer than the epoch: their times in a layer depend on it.
echo hello >"$ctx/f"
touch -d '@1750000000' "$ctx/f"
# The same base in every store (a fixed import date, so the same keys).
mk() { SOURCE_DATE_EPOCH=$EPOCH newstore "$1"; }
# diff_ids STORE: the layers of app, as a JSON array
diff_ids() { CAIRN_ROOT="$T/$1" "$CAIRN" inspect app | jq -c '.[0].RootFS.Layers'; }
using_cache() { grep -c ' ---> Using cache' "$T/$1" || true; }

# --- One store ---------------------------------------------------------
mk A
SOURCE_DATE_EPOCH=$EPOCH build A e1 -t app "$ctx"
[ "$(using_cache e1)" = 0 ] || fail "first epoch build used a cache"
E1=$(id_of e1)
[ -n "$E1" ] || fail "no image ID in e1"

build A n1 -t app --explain "$ctx"
[ "$(using_cache n1)" = 0 ] && summary n1 | grep -q ' 0 layers from cache, 2 run' &&
    pass "no epoch after an epoch build: RUN and COPY run again" ||
    fail "no-epoch build took the epoch build's layers: $(summary n1)"
[ "$(grep -c "cache miss: .*source date epoch changed ($EPOCH -> unset)" "$T/n1")" -ge 2 ] &&
    pass "--explain names the epoch" ||
    fail "--explain: $(grep 'cache miss' "$T/n1")"
[ "$(id_of n1)" != "$E1" ] || fail "no-epoch build gave the epoch image $E1"
N1_LAYERS=$(diff_ids A)

SOURCE_DATE_EPOCH=$EPOCH build A e2 -t app "$ctx"
[ "$(using_cache e2)" = 2 ] && summary e2 | grep -q ' 2 layers from cache, 0 run' &&
    pass "the epoch again: both layer steps hit" || fail "epoch rebuild: $(summary e2)"
[ "$(id_of e2)" = "$E1" ] && pass "the epoch again: the same image $E1" ||
    fail "epoch rebuild gave $(id_of e2), first gave $E1"
E1_LAYERS=$(diff_ids A)
[ "$E1_LAYERS" != "$N1_LAYERS" ] || fail "the epoch changed no layer: the test proves nothing"
# Another epoch: other keys, so the steps run.
SOURCE_DATE_EPOCH=1710000000 build A e3 "$ctx"
summary e3 | grep -q ' 0 layers from cache, 2 run' || fail "another epoch: $(summary e3)"

# `cairn keys` reads the epoch as build does: with it, the keys are those
# of the last build of app (the epoch build e2), without it they are not.
CAIRN_ROOT="$T/A" SOURCE_DATE_EPOCH=$EPOCH "$CAIRN" keys --json --explain -t app "$ctx" >"$T/k1.json" ||
    fail "keys with SOURCE_DATE_EPOCH"
[ "$(jq '[.[].causes[]] | length' "$T/k1.json")" = 0 ] &&
    pass "cairn keys with SOURCE_DATE_EPOCH: the build's keys" ||
    fail "keys with the epoch differ from the build's: $(jq -c '[.[].causes]' "$T/k1.json")"
CAIRN_ROOT="$T/A" "$CAIRN" keys --json --source-date-epoch "$EPOCH" "$ctx" >"$T/k2.json" ||
    fail "keys --source-date-epoch"
[ "$(jq -c '[.[].key]' "$T/k2.json")" = "$(jq -c '[.[].key]' "$T/k1.json")" ] ||
    fail "--source-date-epoch and SOURCE_DATE_EPOCH give other keys"
# Every step's material has the field, with the epoch in decimal.
[ "$(jq -c '[.[] | [.material[] | select(.[0] == "source-date-epoch") | .[1]]] | unique' "$T/k1.json")" = "[[\"$EPOCH\"]]" ] ||
    fail "source-date-epoch fields: $(jq -c '[.[] | [.material[] | select(.[0] == "source-date-epoch")]]' "$T/k1.json")"
CAIRN_ROOT="$T/A" "$CAIRN" keys --explain -t app "$ctx" >"$T/k3.txt" || fail "keys without the epoch"
grep -q "cache miss: RUN: source date epoch changed ($EPOCH -> unset)" "$T/k3.txt" &&
    pass "cairn keys --explain without the epoch names it" ||
    fail "keys --explain: $(grep 'cache miss' "$T/k3.txt")"
grep -q 'source-date-epoch' "$T/k3.txt" && fail "a key without the epoch has its field"
CAIRN_ROOT="$T/A" "$CAIRN" keys --source-date-epoch -1 "$ctx" >/dev/null 2>&1 &&
    fail "keys took a negative epoch"

# --- Through a cairnd ---------------------------------------------------
cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
mk RA
build RA ra -t app --cache "$URL" "$ctx"
summary ra | grep -q ' 0 remote hits, 2 run' || fail "RA: $(summary ra)"
RA_LAYERS=$(diff_ids RA)
mk RF
SOURCE_DATE_EPOCH=$EPOCH build RF rf -t app "$ctx"
mk RB
SOURCE_DATE_EPOCH=$EPOCH build RB rb -t app --cache "$URL" "$ctx"
summary rb | grep -q ' 0 remote hits, 2 run' &&
    pass "an epoch build after a no-epoch one: nothing taken from the cache" ||
    fail "RB took the no-epoch layers: $(summary rb)"
[ "$(id_of rb)" = "$(id_of rf)" ] && [ "$(id_of rb)" = "$E1" ] &&
    pass "the epoch build reproduces a fresh one: $(id_of rb)" ||
    fail "RB $(id_of rb), fresh RF $(id_of rf), store A $E1"
# Each kind finds its own entries, the other's did not replace them.
mk RC
SOURCE_DATE_EPOCH=$EPOCH build RC rc -t app --cache "$URL" "$ctx"
summary rc | grep -q ' 2 remote hits, 0 run' && [ "$(id_of rc)" = "$E1" ] &&
    pass "a second epoch build takes the epoch entries: $(id_of rc)" ||
    fail "RC: $(summary rc), $(id_of rc)"
mk RD
build RD rd -t app --cache "$URL" "$ctx"
summary rd | grep -q ' 2 remote hits, 0 run' && [ "$(diff_ids RD)" = "$RA_LAYERS" ] &&
    pass "a no-epoch build still gets RA's layers" ||
    fail "RD: $(summary rd), layers $(diff_ids RD) vs RA $RA_LAYERS"
cd_stop
[ "$FAILS" -eq 0 ] || exit 1
echo "all passed"