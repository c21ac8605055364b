#!/usr/bin/env bash
# The keys of fetched layers wait for the build's image commit
# (cairn_store_key_put_later), so:
# 1. kill -9 of a fresh store's build in the middle of fetching several
#    layers from cairnd leaves no final blob name with short or foreign
#    content and no key naming a missing blob: an offline build of the
#    same Dockerfile gives the warm store's image (each step a local hit
#    or run again), the --cache rebuild gives it too, prune clears tmp/.
# 2. A build that fetched layers and then failed (its last RUN exits 1)
#    still records their keys (at the unlock): an offline build of the
#    steps before it hits them all locally.
# 3. After a fresh build whose every step hit the cache, an offline
#    rebuild hits every step locally (the keys rode with the image).
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000

busybox_base
cd_start
URL="grpc://127.0.0.1:$CD_PORT/fc"

# check_store STORE WHAT: only content-addressed names under blobs/, each
# holding the content its name says.
check_store() {
    local root=$T/$1 bad f
    bad=$(find "$root/blobs" -mindepth 1 -regextype posix-extended \
        ! -path "$root/blobs/sha256" ! -regex "$root/blobs/sha256/[0-9a-f]{64}" -print)
    [ -z "$bad" ] || fail "$2: temporary names under blobs/: $bad"
    for f in "$root"/blobs/sha256/*; do
        [ "$(sha256sum <"$f" | cut -d' ' -f1)" = "$(basename "$f")" ] ||
            fail "$2: blob $(basename "$f") does not hold its content"
    done
}

ctx=$T/ctx
mkdir -p "$ctx"
# Four layers of 24 MB of random bytes: zstd leaves them that size, so the
# fetch and its verification take a moment to kill into. COPY steps, so
# that a step made again makes the same layer (zstd in every build).
for f in a b c d; do head -c 24000000 /dev/urandom >"$ctx/$f.bin"; done
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox:latest
COPY a.bin /a
COPY b.bin /b
COPY c.bin /c
COPY d.bin /d
CMD ["ls", "/"]
DF
Z="--progress plain --compression zstd"
newstore A
build A warm $Z -t fc --cache "$URL" "$ctx"
want=$(id_of warm)
[ -n "$want" ] || fail "the warming build printed no image ID"

# 1. kill -9 in the middle of the fetch.
newstore B
CAIRN_ROOT=$T/B "$CAIRN" build $Z -t fc --cache "$URL" "$ctx" >"$T/killed" 2>&1 &
pid=$!
seen=
for _ in $(seq 1 3000); do
    if compgen -G "$T/B/tmp/remote-*" >/dev/null; then seen=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
if [ -z "$seen" ]; then
    echo "SKIP (kill part): the fetch ended before a temporary file was seen"
else
    check_store B "kill mid-fetch"
    # Offline: a key that named a missing or short blob would make a
    # local hit with the wrong layer, or fail the build.
    build B offline $Z -t fc "$ctx"
    [ "$(id_of offline)" = "$want" ] || fail "kill mid-fetch: offline image $(id_of offline) != $want"
    build B again $Z -t fc --cache "$URL" "$ctx"
    [ "$(id_of again)" = "$want" ] || fail "kill mid-fetch: rebuild image $(id_of again) != $want"
    check_store B "after the rebuild"
    CAIRN_ROOT=$T/B "$CAIRN" prune -f >"$T/prune" 2>&1 || fail "prune: $(cat "$T/prune")"
    [ -z "$(ls -A "$T/B/tmp")" ] || fail "prune left tmp/: $(ls -A "$T/B/tmp")"
fi

# 2. Fetched, then failed: the keys are recorded anyway.
head -n 4 "$ctx/Dockerfile" >"$T/head.df"
cp "$T/head.df" "$ctx/Dockerfile.fail"
echo 'RUN echo failing-step && exit 1' >>"$ctx/Dockerfile.fail"
newstore C
CAIRN_ROOT=$T/C "$CAIRN" build $Z -f "$ctx/Dockerfile.fail" --cache "$URL" "$ctx" >"$T/failed" 2>&1 &&
    fail "the failing build exited 0"
grep -q '^failing-step' "$T/failed" || fail "the failing step did not run: $(tail -5 "$T/failed")"
cp "$T/head.df" "$ctx/Dockerfile.head"
build C head $Z -f "$ctx/Dockerfile.head" "$ctx"
[ "$(field head 'layers from cache')" = 3 ] || fail "after a failed build: $(summary head) (want 3 layers from cache)"
[ "$(field head run)" = 0 ] || fail "after a failed build: $(summary head) (want 0 run)"

# 3. Every step a remote hit, then offline: every step a local hit.
newstore D
build D fresh $Z -t fc --cache "$URL" "$ctx"
[ "$(field fresh 'remote hits')" = 4 ] || fail "fresh: $(summary fresh) (want 4 remote hits)"
[ "$(id_of fresh)" = "$want" ] || fail "fresh: image $(id_of fresh) != $want"
build D local $Z -t fc "$ctx"
[ "$(field local 'layers from cache')" = 4 ] || fail "offline after fresh: $(summary local) (want 4 layers from cache)"
check_store D "after the fresh build"

finish
