#!/usr/bin/env bash
# Fleet-identical images (issue 15, item 1). Without SOURCE_DATE_EPOCH, A
# builds with --cache (uploading its layers and its image record); B, a
# fresh store a second later, gets every step from the cache and prints
# the same image ID, with the same manifest digest. A rebuild on A keeps
# it; a changed last step gives another ID (the same on A and on a fresh
# C). Image records planted through the REAPI whose config does not match
# the build's layers (other diff_ids), or that change a setting (Cmd) but
# keep the layers, are refused with a warning; the build makes a correct
# image anew and puts its own record in their place.
. "$(dirname "$0")/remote_lib.sh"
unset SOURCE_DATE_EPOCH

busybox_base
ctx=$T/ctx
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox:latest
RUN echo RUN-RAN && echo one >/one
COPY f /f
CMD ["cat", "/f"]
LABEL org.example.a=b
DF
echo hello >"$ctx/f"
# The same base on every machine (a fixed import date, so the same keys).
mk() { SOURCE_DATE_EPOCH=1700000000 newstore "$1"; }
# manifest STORE: the manifest digest tagged app:latest
manifest() { jq -r '.manifests[] | select((.annotations["org.opencontainers.image.ref.name"] // "") | test("(^|/)app:latest$")) | .digest' "$T/$1/index.json" | head -1; }
created() { CAIRN_ROOT="$T/$1" "$CAIRN" inspect app | jq -r '.[0].Created'; }

cd_start
URL=grpc://127.0.0.1:$CD_PORT/main

mk A
build A a1 -t app --cache "$URL" "$ctx"
summary a1 | grep -q ' 0 remote hits, 2 run' || fail "A summary: $(summary a1)"
[ -n "$(manifest A)" ] || fail "no manifest digest for app in A: $(cat "$T/A/index.json")"
# B builds in another second than A did: its own clock would give
# another config.
sleep 1.1
mk B
build B b1 -t app --cache "$URL" "$ctx"
summary b1 | grep -q ' 2 remote hits, 0 run' || fail "B summary: $(summary b1)"
[ "$(id_of b1)" = "$(id_of a1)" ] && pass "B: same image ID as A ($(id_of b1))" ||
    fail "B image $(id_of b1) != A image $(id_of a1)"
[ "$(manifest B)" = "$(manifest A)" ] && pass "B: same manifest digest $(manifest B)" ||
    fail "B manifest $(manifest B) != A manifest $(manifest A)"
[ "$(created B)" = "$(created A)" ] || fail "created: B $(created B), A $(created A)"
grep -q 'warning' "$T/b1" && fail "B warned: $(grep warning "$T/b1")"

# A rebuilds (local hits): the same ID; B too.
sleep 1.1
build A a2 -t app --cache "$URL" "$ctx"
build B b2 -t app --cache "$URL" "$ctx"
[ "$(id_of a2)" = "$(id_of a1)" ] && [ "$(id_of b2)" = "$(id_of a1)" ] &&
    pass "rebuilds on A and B keep the ID" || fail "rebuild IDs: A $(id_of a2), B $(id_of b2), want $(id_of a1)"

# Tags do not change the ID.
mk B2
build B2 b2t -t other:tag --cache "$URL" "$ctx"
[ "$(id_of b2t)" = "$(id_of a1)" ] || fail "another tag: $(id_of b2t) != $(id_of a1)"

# A changed last layer step: another ID, the same on A and a fresh C.
echo changed >"$ctx/f"
build A a3 -t app --cache "$URL" "$ctx"
[ "$(id_of a3)" != "$(id_of a1)" ] || fail "a changed COPY kept the ID $(id_of a1)"
sleep 1.1
mk C
build C c1 -t app --cache "$URL" "$ctx"
[ "$(id_of c1)" = "$(id_of a3)" ] && pass "changed step: new ID $(id_of a3), the same on C" ||
    fail "C image $(id_of c1) != A's $(id_of a3)"
echo hello >"$ctx/f"

# --- Planted records ---------------------------------------------------
# The action of the record: sha256 of the material, and its size.
CAIRN_ROOT="$T/A" "$CAIRN" keys --json "$ctx" >"$T/keys.json" || fail "keys --json"
FINAL=$(jq -r '.[-1].key' "$T/keys.json")
printf 'cairn image record v1\0%s\0%s\0%s\0' "$FINAL" 0 linux/amd64 >"$T/rec.material"
RACTION="$(sha "$T/rec.material")/$(size "$T/rec.material")"
# The record A uploaded is where we say it is.
expect 0 probe ac-get main "$RACTION" || fail "no image record at the documented action"
grep -q 'cairn.created' "$T/last.out" || fail "record without cairn.created: $(cat "$T/last.out")"

A_CFG=$(ls "$T"/A/blobs/sha256/"$(id_of a1)"* | head -1)
A_CREATED=$(jq -r '.created' "$A_CFG")
A_EPOCH=$(date -d "$A_CREATED" +%s)
# plant INSTANCE CONFIG_JSON_FILE: a record whose config is that file,
# with a manifest that lists A's layers, at A's time.
plant() {
    local inst=$1 cfg=$2 man=$T/$1.manifest
    jq -c --arg d "sha256:$(sha "$cfg")" --argjson s "$(size "$cfg")" \
        '.config.digest=$d | .config.size=$s' "$T/A/blobs/sha256/$(manifest A | cut -d: -f2)" >"$man"
    printf '%s' "$(cat "$man")" >"$man.1" && mv "$man.1" "$man"
    expect 0 probe put "$inst" "$cfg" || fail "put config"
    expect 0 probe put "$inst" "$man" || fail "put manifest"
    expect 0 probe ac-put "$inst" "$RACTION" "file=config:$(digest "$cfg")" \
        "prop=config:cairn.created=$A_EPOCH" \
        "prop=config:cairn.media_type=application/vnd.oci.image.config.v1+json" \
        "file=manifest:$(digest "$man")" \
        "prop=manifest:cairn.media_type=application/vnd.oci.image.manifest.v1+json" ||
        fail "ac-put record in $inst"
}
# refused INSTANCE STORE WHAT: a fresh store builds from INSTANCE (whose
# layer entries come from A), warns, and makes a correct image.
refused() {
    local inst=$1 s=$2 what=$3
    mk "$s"
    build "$s" "$s.out" -t app --cache "grpc://127.0.0.1:$CD_PORT/$inst" "$ctx"
    grep -q "warning: the cache's image record of key ${FINAL:0:12} is refused" "$T/$s.out" ||
        fail "$what: no refusal: $(grep -i warn "$T/$s.out")"
    CAIRN_ROOT="$T/$s" "$CAIRN" inspect app >"$T/$s.inspect" || fail "$what: inspect"
    CAIRN_ROOT="$T/A" "$CAIRN" inspect app >"$T/A.inspect" || fail "inspect A"
    [ "$(jq -c '.[0].RootFS.Layers' "$T/$s.inspect")" = "$(jq -c '.[0].RootFS.Layers' "$T/A.inspect")" ] ||
        fail "$what: layers differ from A's"
    [ "$(jq -c '.[0].Config.Cmd' "$T/$s.inspect")" = '["cat","/f"]' ] || fail "$what: Cmd $(jq -c '.[0].Config.Cmd' "$T/$s.inspect")"
    summary "$s.out" | grep -q ' 0 run' || fail "$what: $(summary "$s.out")"
    pass "$what: refused, image $(id_of "$s.out") with A's layers"
}
# Instances tamper1 and tamper2 get A's layer entries by a build of A.
for inst in tamper1 tamper2; do
    build A "a.$inst" -t app --cache "grpc://127.0.0.1:$CD_PORT/$inst" "$ctx"
done
# 1. other diff_ids (the first layer's diff_id replaced).
jq -c '.rootfs.diff_ids[-1] = "sha256:" + ("0" * 64)' "$A_CFG" | tr -d '\n' >"$T/cfg1.json"
plant tamper1 "$T/cfg1.json"
refused tamper1 E "diff_ids that are not the build's"
[ "$(id_of E.out)" != "$(sha "$T/cfg1.json" | cut -c1-12)" ] || fail "E took the planted config"
# The refused record was replaced by E's own: a fresh F takes E's image.
sleep 1.1
mk F
build F f1 -t app --cache "grpc://127.0.0.1:$CD_PORT/tamper1" "$ctx"
[ "$(id_of f1)" = "$(id_of E.out)" ] && ! grep -q refused "$T/f1" &&
    pass "the refused record was replaced by a good one" || fail "F: $(id_of f1) vs E $(id_of E.out): $(grep -i warn "$T/f1")"
# Without the record, B's clock makes another image: what the record is for.
[ "$(id_of E.out)" != "$(id_of a1)" ] || fail "E made A's image without a record?"

# 2. the same layers, another Cmd.
jq -c '.config.Cmd = ["sh", "-c", "echo pwned"]' "$A_CFG" | tr -d '\n' >"$T/cfg2.json"
plant tamper2 "$T/cfg2.json"
refused tamper2 G "a Cmd that is not the build's"

# 3. a malformed record (bad media type) is refused too.
expect 0 probe ac-put tamper2 "$RACTION" "file=config:$(digest "$A_CFG")" \
    "prop=config:cairn.created=$A_EPOCH" "prop=config:cairn.media_type=text/plain" \
    "file=manifest:$(digest "$A_CFG")" \
    "prop=manifest:cairn.media_type=application/vnd.oci.image.manifest.v1+json" || fail "ac-put bad"
mk H
build H h1 -t app --cache "grpc://127.0.0.1:$CD_PORT/tamper2" "$ctx"
grep -q "image record of key ${FINAL:0:12} is refused: the config's media type" "$T/h1" &&
    pass "a record with a bad media type: $(grep -o 'refused: [^;]*' "$T/h1")" ||
    fail "bad media type: $(grep -i warn "$T/h1")"

# --source-date-epoch: no record is read; the epoch decides the time
# (the layers are the cache's, so the image is not A's either).
mk S1
SOURCE_DATE_EPOCH=1600000000 build S1 s1 -t app --cache "$URL" "$ctx"
[ "$(id_of s1)" != "$(id_of a1)" ] && [ "$(date -d "$(created S1)" +%s)" = 1600000000 ] &&
    pass "--source-date-epoch: the epoch decides, not the record" ||
    fail "epoch: $(id_of s1) (A: $(id_of a1)), created $(created S1)"

# Signed records (item 2 covers every entry kind): a writer with a key
# signs the record; a reader trusting that key takes it (same ID); a
# reader trusting another key refuses it (and the layers) and says so.
unset CAIRN_TRUST CAIRN_SIGN_KEY
export XDG_CONFIG_HOME=$T/xdg
"$CAIRN" key generate --out "$T/k1.pem" >/dev/null 2>&1 || fail "key generate"
"$CAIRN" key generate --out "$T/k2.pem" >/dev/null 2>&1 || fail "key generate"
P1=$("$CAIRN" key public "$T/k1.pem" 2>/dev/null)
P2=$("$CAIRN" key public "$T/k2.pem" 2>/dev/null)
SURL=grpc://127.0.0.1:$CD_PORT/signed
mk SA
build SA sa1 -t app --cache "$SURL" --sign-key "$T/k1.pem" "$ctx"
sleep 1.1
mk SB
build SB sb1 -t app --cache "$SURL" --trust "signed $P1" "$ctx"
[ "$(id_of sb1)" = "$(id_of sa1)" ] && ! grep -q warning "$T/sb1" &&
    pass "a signed image record is taken by a reader trusting its key" ||
    fail "signed record: SB $(id_of sb1) vs SA $(id_of sa1): $(grep -i warn "$T/sb1")"
mk SC
build SC sc1 -t app --cache "$SURL" --cache-mode read --trust "signed $P2" "$ctx"
grep -q "image record.*shared cache entry refused" "$T/sc1" && [ "$(id_of sc1)" != "$(id_of sa1)" ] &&
    pass "an image record signed by an untrusted key is refused" ||
    fail "untrusted record: SC $(id_of sc1): $(grep -i warn "$T/sc1")"
cd_stop
[ "$FAILS" -eq 0 ] || exit 1
echo "all passed"
