#!/usr/bin/env bash
# Lazy fetch from the shared cache, with a multistage Dockerfile: a fresh
# store whose steps all hit downloads exactly the layers of the final image
# (not those of stages used only through COPY --from steps that hit) and
# unpacks nothing; a miss after hits fetches only the layers it reads; the
# store stays right for later builds without --cache and after a prune.
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000

busybox_base
# manifest STORE REF: path of the manifest blob REF points at
manifest() {
    local d
    d=$(jq -r --arg r "$2" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"]==$r) | .digest' "$T/$1/index.json")
    echo "$T/$1/blobs/sha256/${d#sha256:}"
}
layer_bytes() { jq '[.layers[].size] | add // 0' "$(manifest "$1" "$2")"; }
top_layers() { jq -r ".layers[-$3:][].digest" "$(manifest "$1" "$2")"; } # STORE REF N
has_blob() { [ -e "$T/$1/blobs/sha256/${2#sha256:}" ]; }
nsnap() { find "$T/$1/snapshots" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

ctx=$T/ctx
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox:latest AS gen
COPY g.txt /g.txt
RUN echo GEN-RAN && mkdir /out && seq 1 3000 > /out/gen.txt
FROM busybox:latest AS pack
COPY p.txt /p.txt
RUN echo PACK-RAN && mkdir /out && cat /p.txt /p.txt > /out/pack.txt
FROM busybox:latest
COPY --from=gen /out/ /gen/
COPY --from=pack /out/ /pack/
COPY f.txt /f.txt
CMD ["cat", "/f.txt"]
DF
echo g >"$ctx/g.txt"
echo p >"$ctx/p.txt"
echo f >"$ctx/f.txt"

cd_start
URL=grpc://127.0.0.1:$CD_PORT/main

# A fills the cache; its stage images tell which blobs are the stages'.
newstore A
build A a1 -t app --cache "$URL" "$ctx"
summary a1 | grep -q ' 0 remote hits, 7 run' || fail "A: $(summary a1)"
build A ag -t gen --target gen "$ctx"
build A ap -t pack --target pack "$ctx"
stage_blobs=$(top_layers A gen:latest 2; top_layers A pack:latest 2)
[ "$(echo "$stage_blobs" | sort -u | wc -l)" -eq 4 ] || fail "stage layers: $stage_blobs"
needed=$(( $(layer_bytes A app:latest) - $(layer_bytes A busybox:latest) ))

# 1. B, fresh: all seven steps hit; bytes down are exactly the final
# image's new layers; the stages' layers never arrive; nothing unpacked.
newstore B
snap0=$(nsnap B)
build B b1 -t app --cache "$URL" "$ctx"
[ "$(grep -c ' ---> Using cache (remote)' "$T/b1")" -eq 7 ] || fail "B remote hits: $(cat "$T/b1")"
grep -q -- '-RAN$' "$T/b1" && fail "B ran a RUN: $(grep -- '-RAN$' "$T/b1")"
[ "$(id_of b1)" = "$(id_of a1)" ] || fail "B image $(id_of b1) != A image $(id_of a1)"
[ "$(field b1 'bytes down')" -eq "$needed" ] && pass "B: all hits, $needed bytes down = the image's new layers" ||
    fail "B moved $(field b1 'bytes down') bytes, the image needs $needed: $(summary b1)"
for d in $stage_blobs; do has_blob B "$d" && fail "B has stage layer $d that no step read"; done
[ "$(nsnap B)" -eq "$snap0" ] && pass "all-hit build unpacked nothing" || fail "B made $(( $(nsnap B) - snap0 )) snapshots"

# 2. The same store without --cache: the steps whose layers are here hit,
# the stages' steps (recorded nowhere, their layers absent) run, and the
# image is the same. After a prune, again.
build B b2 -t app "$ctx"
[ "$(id_of b2)" = "$(id_of a1)" ] && pass "later local build on B: same image" || fail "B local: $(id_of b2): $(cat "$T/b2")"
CAIRN_ROOT="$T/B" "$CAIRN" prune -f >/dev/null 2>&1 || fail "prune B"
build B b3 -t app "$ctx"
[ "$(id_of b3)" = "$(id_of a1)" ] && pass "after prune: same image" || fail "B after prune: $(id_of b3): $(cat "$T/b3")"
CAIRN_ROOT="$T/B" "$CAIRN" build --target gen -t gen "$ctx" >"$T/b4" 2>&1 || fail "B gen stage: $(cat "$T/b4")"

# 3. A miss after hits: pack's input changes. gen's steps and COPY
# --from=gen still hit; pack's steps, COPY --from=pack and the last COPY
# run. They read the final stage's parent chain (so COPY --from=gen's
# layer comes down) and pack's own files (made here), never gen's.
echo changed >"$ctx/p.txt"
newstore R
build R r1 -t app "$ctx" # reference: no cache at all
newstore C
build C c1 -t app --cache "$URL" --cache-mode read "$ctx"
[ "$(grep -c ' ---> Using cache (remote)' "$T/c1")" -eq 3 ] || fail "C remote hits: $(cat "$T/c1")"
grep -q '^GEN-RAN$' "$T/c1" && fail "C ran gen's RUN"
grep -q '^PACK-RAN$' "$T/c1" || fail "C did not run pack's RUN: $(cat "$T/c1")"
for d in $(top_layers A gen:latest 2); do has_blob C "$d" && fail "C fetched gen's layer $d"; done
# ... nor unpacked them: no snapshot of gen's layers (named by diff_id).
for d in $(CAIRN_ROOT="$T/A" "$CAIRN" inspect gen | jq -r '.[0].RootFS.Layers[-2:][]'); do
    [ -e "$T/C/snapshots/${d#sha256:}" ] && fail "C unpacked gen's layer $d"
done
[ "$(nsnap C)" -gt 0 ] || fail "C made no snapshots, yet steps ran"
[ "$(id_of c1)" = "$(id_of r1)" ] && pass "miss after hits: gen untouched, image as built without cache" ||
    fail "C image $(id_of c1) != reference $(id_of r1)"
# What C fetched is what it needed: COPY --from=gen's layer, nothing else.
gen_copy=$(top_layers A app:latest 3 | head -1)
has_blob C "$gen_copy" || fail "C lacks COPY --from=gen's layer"
[ "$(field c1 'bytes down')" -eq "$(stat -c %s "$T/C/blobs/sha256/${gen_copy#sha256:}")" ] ||
    fail "C bytes down $(field c1 'bytes down') is not one layer's $(stat -c %s "$T/C/blobs/sha256/${gen_copy#sha256:}")"
echo p >"$ctx/p.txt"

cd_stop
finish
