#!/usr/bin/env bash
# Signed cache entries (issue 15, item 2; docs/security.md). A writer with
# a sign-key signs what it uploads; a reader with trust for a cache uses
# only entries signed by a trusted key. A writer without the key (anyone
# the server lets write) plants, for the real key of the last step, a
# valid layer with other content: a reader without trust takes it (the
# attack is real), a trusting one refuses it, runs the step, gets the
# right image and --explain says why. Then two trusted keys (rotation), a
# key that is not trusted, a truncated signature, a signature made for
# another instance (same cairnd, /a copied to /b) and one made for another
# step. Keys are made at test time in $T.
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000
# Settings only from what this test writes.
export XDG_CONFIG_HOME=$T/xdg
unset CAIRN_CACHE CAIRN_TRUST CAIRN_SIGN_KEY

hits_at() { awk '/^Step /{s=$2} /Using cache \(remote\)/{print s}' "$T/$1" | tr '\n' ' '; }
ctx=$T/ctx
mkdir -p "$ctx"
printf 'FROM scratch\nCOPY one /one\nCOPY two /two\nCOPY three /three\n' >"$ctx/Dockerfile"
for f in one two three; do head -c 3000 /dev/urandom | base64 >"$ctx/$f"; done
build REF ref -t t "$ctx"
CAIRN_ROOT="$T/REF" "$CAIRN" keys --json "$ctx" >"$T/keys.json" || fail "keys --json"
action() { jq -r ".[$1].key + \"/\" + (.[$1].material_size|tostring)" "$T/keys.json"; }
last_layer() {
    local m
    m=$(jq -r '.manifests[0].digest' "$T/$1/index.json" | cut -d: -f2)
    echo "$T/$1/blobs/sha256/$(jq -r '.layers[-1].digest' "$T/$1/blobs/sha256/$m" | cut -d: -f2)"
}

# Keys: generate writes the private key 0600 and prints the public one;
# `key public` gives the same line; a key is never overwritten.
for k in k1 k2 k3; do
    "$CAIRN" key generate --out "$T/$k.pem" >"$T/$k.gen" 2>&1 || fail "key generate $k: $(cat "$T/$k.gen")"
done
P1=$("$CAIRN" key public "$T/k1.pem" 2>/dev/null)
P2=$("$CAIRN" key public "$T/k2.pem" 2>/dev/null)
ID1=$("$CAIRN" key public "$T/k1.pem" 2>&1 >/dev/null | sed -n 's/^key id: //p')
[ "$(stat -c %a "$T/k1.pem")" = 600 ] && grep -qx "public key: $P1" "$T/k1.gen" &&
    [[ $P1 =~ ^ed25519:[A-Za-z0-9+/]{43}=$ ]] && [ "$P1" != "$P2" ] && [ ${#ID1} -eq 16 ] &&
    pass "key generate: private key 0600, public key $P1 (id $ID1)" ||
    fail "key generate: mode $(stat -c %a "$T/k1.pem"), P1 '$P1', output $(cat "$T/k1.gen")"
"$CAIRN" key generate --out "$T/k1.pem" >"$T/gen.again" 2>&1 && fail "key generate overwrote a key"
grep -q "never overwritten" "$T/gen.again" || fail "overwrite refusal: $(cat "$T/gen.again")"
"$CAIRN" key public "$T/ctx/one" >"$T/pub.bad" 2>&1 && fail "key public accepted a non-key"
grep -q "not an unencrypted PEM private key" "$T/pub.bad" || fail "key public, bad file: $(cat "$T/pub.bad")"
CAIRN_ROOT="$T/S0" "$CAIRN" build --cache grpc://127.0.0.1:1/a --trust "a ed25519:AAAA" "$ctx" >"$T/bad" 2>&1 &&
    fail "a bad --trust was accepted"
grep -q 'not a public key' "$T/bad" && pass "bad --trust: $(head -1 "$T/bad")" || fail "bad --trust: $(cat "$T/bad")"

# The server wants a token; the planter holds the same write token as
# the builders, only not the key.
printf 'ci-secret write *\n' >"$T/tokens"
CD_DIR=$T/srv cd_start --tokens "$T/tokens"
U=grpc://127.0.0.1:$CD_PORT
export CAIRN_CACHE_TOKEN=ci-secret
probe() { "$PROBE" --addr "127.0.0.1:$CD_PORT" --token ci-secret "$@"; }

# 1. A signed upload: every entry carries cairn.sig (88 base64
# characters) and cairn.sig.key; a reader trusting the key hits them all.
build A a1 -t t --cache "$U/a" --sign-key "$T/k1.pem" "$ctx"
probe ac-get a "$(action 3)" >"$T/ac2" || fail "ac-get"
grep -qE '^prop layer cairn\.sig=[A-Za-z0-9+/]{86}==$' "$T/ac2" && grep -qx "prop layer cairn.sig.key=$ID1" "$T/ac2" &&
    pass "uploaded entries are signed" || fail "entry: $(cat "$T/ac2")"
build B b1 -t t --cache "$U/a" --cache-mode read --trust "a $P1" "$ctx"
[ "$(hits_at b1)" = "2/4 3/4 4/4 " ] && [ "$(id_of b1)" = "$(id_of ref)" ] &&
    pass "trusting reader: signed entries are hits" || fail "signed entries: hits '$(hits_at b1)': $(cat "$T/b1")"

# 2. The poisoned entry: a valid layer with other content, planted
# unsigned for the real key of step 4 by a write-token holder without the key.
mkdir -p "$T/evilctx"
cp "$ctx/Dockerfile" "$ctx/one" "$ctx/two" "$T/evilctx/"
echo pwned >"$T/evilctx/three"
build EVIL evil -t t "$T/evilctx"
EL=$(last_layer EVIL)
EDIFF="sha256:$(gzip -dc "$EL" | sha256sum | cut -c1-64)"
expect 0 probe put a "$EL" || fail "put the evil blob"
expect 0 probe ac-put a "$(action 3)" "file=layer:$(digest "$EL")" "prop=layer:cairn.diff_id=$EDIFF" \
    "prop=layer:cairn.media_type=application/vnd.oci.image.layer.v1.tar+gzip" || fail "plant"
build C c1 -t t --cache "$U/a" --cache-mode read "$ctx"
[ "$(hits_at c1)" = "2/4 3/4 4/4 " ] && [ "$(id_of c1)" != "$(id_of ref)" ] &&
    pass "without trust, the planted layer is taken (the attack this stops)" ||
    fail "untrusting reader: hits '$(hits_at c1)', image $(id_of c1)"
# The trusting reader, trust from the config file; a readwrite build with
# the key, so the step it runs replaces the poisoned entry.
mkdir -p "$XDG_CONFIG_HOME/cairn"
printf 'trust = %s/a %s\n' "$U" "$P1" >"$XDG_CONFIG_HOME/cairn/config"
build D d1 -t t --explain --cache "$U/a" --sign-key "$T/k1.pem" "$ctx"
[ "$(hits_at d1)" = "2/4 3/4 " ] && [ "$(id_of d1)" = "$(id_of ref)" ] &&
    grep -q "^ ---> cache miss: shared cache entry refused: entry is not signed" "$T/d1" &&
    grep -q "warning: .*step key .* refused: entry is not signed" "$T/d1" &&
    pass "trusting reader: the unsigned entry is a miss, the step runs, right image, --explain says why" ||
    fail "poisoned entry: hits '$(hits_at d1)', image $(id_of d1): $(cat "$T/d1")"
[ ! -e "$T/D/blobs/sha256/$(sha "$EL")" ] && pass "the planted layer was never fetched" ||
    fail "the planted layer's blob is in D's store"
build E e1 -t t --cache "$U/a" --cache-mode read "$ctx"
[ "$(hits_at e1)" = "2/4 3/4 4/4 " ] && [ "$(id_of e1)" = "$(id_of ref)" ] &&
    pass "the trusting writer's upload replaced the poisoned entry" || fail "after the replace: '$(hits_at e1)' $(id_of e1)"
rm "$XDG_CONFIG_HOME/cairn/config"

# copy SRC DST ACTION [SED]: copies an entry, edited by SED, and its layer.
copy() {
    probe ac-get "$1" "$3" >"$T/copy.in" || fail "ac-get $1 $3"
    sed -e "${4:-}" "$T/copy.in" >"$T/copy.ed"
    local args=()
    while read -r kind path rest; do
        case $kind in
        file) args+=("file=$path:$rest") ;;
        prop) args+=("prop=$path:$rest") ;;
        esac
    done <"$T/copy.ed"
    expect 0 probe put "$2" "$(last_layer REF)" || fail "put into $2"
    expect 0 probe ac-put "$2" "$3" "${args[@]}" || fail "ac-put into $2"
}
# refused OUT INSTANCE WHY: with trust for every cache, step 4 of a fresh
# build from INSTANCE runs, the image is right and --explain says WHY.
refused() {
    build "S$1" "$1" -t t --explain --cache "$U/$2" --cache-mode read --trust "* $P1" "$ctx"
    ! awk '/^Step 4\/4/{s=1} s' "$T/$1" | grep -q 'Using cache (remote)' && [ "$(id_of "$1")" = "$(id_of ref)" ] &&
        grep -q "^ ---> cache miss: shared cache entry refused: .*$3" "$T/$1" &&
        pass "$2: refused ($(grep -o 'entry refused: .*' "$T/$1" | head -1))" ||
        fail "$2: expected a refusal matching '$3': $(cat "$T/$1")"
}
# 3. A signature made for another instance: /a's entry copied to /b.
copy a b "$(action 3)"
refused f1 b "bad signature by key $ID1"
# 4. A truncated signature.
copy a t "$(action 3)" 's/^\(prop layer cairn\.sig=.\{60\}\).*/\1/'
refused f2 t "truncated or malformed signature (60 characters"
# 5. A signature made for another step: step 3's entry under step 4's key.
probe ac-get a "$(action 2)" >"$T/ac1" || fail "ac-get step 3"
l3=$(awk '$1=="file"{print $3}' "$T/ac1" | cut -d/ -f1)
expect 0 probe put s "$T/REF/blobs/sha256/$l3" || fail "put step 3's layer"
mapfile -t args < <(awk '$1=="file"{print "file="$2":"$3} $1=="prop"{print "prop="$2":"$3}' "$T/ac1")
expect 0 probe ac-put s "$(action 3)" "${args[@]}" || fail "replay"
refused f3 s "bad signature"

# 6. Rotation and keys not trusted: /r written with k2.
build W w1 -t t --cache "$U/r" --sign-key "$T/k2.pem" "$ctx"
build G g1 -t t --explain --cache "$U/r" --cache-mode read --trust "r $P1" "$ctx"
[ "$(hits_at g1)" = "" ] && [ "$(id_of g1)" = "$(id_of ref)" ] &&
    grep -q "entry refused: entry is signed by key [0-9a-f]\{16\}, which is not trusted" "$T/g1" &&
    pass "entries by a key not trusted are misses" || fail "untrusted key: '$(hits_at g1)': $(cat "$T/g1")"
export CAIRN_TRUST="* $P1; * $P2"
build H h1 -t t --cache "$U/r" --cache-mode read "$ctx"
build I i1 -t t --cache "$U/a" --cache-mode read "$ctx"
[ "$(hits_at h1)" = "2/4 3/4 4/4 " ] && [ "$(hits_at i1)" = "2/4 3/4 4/4 " ] &&
    pass "two trusted keys (CAIRN_TRUST): entries signed by either are hits" ||
    fail "rotation: /r '$(hits_at h1)', /a '$(hits_at i1)'"
unset CAIRN_TRUST
# Trust for another cache does not apply here: as today.
build J j1 -t t --cache "$U/r" --cache-mode read --trust "a $P1" "$ctx"
[ "$(hits_at j1)" = "2/4 3/4 4/4 " ] && pass "trust for /a leaves /r as without trust" || fail "scope: '$(hits_at j1)'"
# A trusting writer whose store has the steps offers them; the cache's
# entries (signed by k2, not trusted here) are replaced with k1's.
build A a2 -t t --cache "$U/r" --sign-key "$T/k1.pem" --trust "r $P1" "$ctx"
summary a2 | grep -q '3 local hits, 0 remote hits, 0 run' || fail "offer over refused entries: $(summary a2)"
probe ac-get r "$(action 3)" | grep -qx "prop layer cairn.sig.key=$ID1" || fail "/r's step 4 is not k1's after the offer"
build K k1 -t t --cache "$U/r" --cache-mode read --trust "r $P1" "$ctx"
[ "$(hits_at k1)" = "2/4 3/4 4/4 " ] && pass "a trusting writer's offers replace entries it does not trust" ||
    fail "after the offers: '$(hits_at k1)'"
cd_stop
finish
