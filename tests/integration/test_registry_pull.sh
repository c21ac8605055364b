#!/usr/bin/env bash
# cairn pull against Debian's docker-registry (plain HTTP on 127.0.0.1):
# an image skopeo pushed is pulled, listed with its repo digest, inspected,
# run by a build; a re-pull is up to date for one manifest request; a pull
# by a stored digest costs none; a second image sharing the base layer
# downloads only its own; what cairn stored is what the registry holds.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start_plain

echo one > "$T/one.txt"
reg_oci_image "$T/oci" app "$T/one.txt"
reg_push "$T/oci:app" team/app:v1 || fail "skopeo push"
digest=$(skopeo inspect --tls-verify=false --raw "docker://$REG_ADDR/team/app:v1" |
    sha256sum | cut -d' ' -f1)
digest=sha256:$digest

# 1. A first pull downloads the layer and records tag and repo digest.
"$CAIRN" pull "$REG_ADDR/team/app:v1" > "$T/p1" 2>&1 || { cat "$T/p1"; fail "pull"; }
grep -q "^v1: Pulling from team/app$" "$T/p1" || fail "pulling line: $(cat "$T/p1")"
grep -qE "^[0-9a-f]{12}: Pulling fs layer$" "$T/p1" || fail "fs layer line"
grep -qE "^[0-9a-f]{12}: Download complete$" "$T/p1" || fail "download line"
grep -q "^Digest: $digest$" "$T/p1" || fail "digest line: $(cat "$T/p1")"
grep -q "^Status: Downloaded newer image for $REG_ADDR/team/app:v1$" "$T/p1" ||
    fail "status line"
assert_eq "$(tail -1 "$T/p1")" "$REG_ADDR/team/app:v1" "last line"
"$CAIRN" images | grep -qE "^$REG_ADDR/team/app +v1 " || fail "images: $("$CAIRN" images)"
"$CAIRN" images --digests | grep -qE "^$REG_ADDR/team/app +v1 +$digest " ||
    fail "images --digests: $("$CAIRN" images --digests)"
assert_eq "$("$CAIRN" inspect "$REG_ADDR/team/app:v1" | jq -r '.[0].RepoDigests[0]')" \
    "$REG_ADDR/team/app@$digest" "inspect RepoDigests"
assert_eq "$("$CAIRN" inspect "$REG_ADDR/team/app@$digest" | jq -r '.[0].RepoTags[0]')" \
    "$REG_ADDR/team/app:v1" "inspect by repo digest"
"$CAIRN" history "$REG_ADDR/team/app:v1" >/dev/null || fail "history"
# The store holds exactly the registry's manifest bytes.
cmp <(skopeo inspect --tls-verify=false --raw "docker://$REG_ADDR/team/app:v1") \
    "$CAIRN_ROOT/blobs/sha256/${digest#sha256:}" || fail "stored manifest differs"
skopeo inspect "oci:$CAIRN_ROOT:$REG_ADDR/team/app:v1" >/dev/null ||
    fail "skopeo reads the pulled image from the store"

# 2. A re-pull is up to date and costs one manifest request (a HEAD).
before=$(wc -l < "$REG_ACCESS_LOG")
"$CAIRN" pull "$REG_ADDR/team/app:v1" > "$T/p2" 2>&1 || { cat "$T/p2"; fail "re-pull"; }
grep -q "^Status: Image is up to date for $REG_ADDR/team/app:v1$" "$T/p2" ||
    fail "up to date: $(cat "$T/p2")"
sleep 0.2
after=$(wc -l < "$REG_ACCESS_LOG")
assert_eq "$((after - before))" 1 "requests of an up-to-date pull"
tail -1 "$REG_ACCESS_LOG" | grep -q "\"HEAD /v2/team/app/manifests/v1 " ||
    fail "the one request: $(tail -1 "$REG_ACCESS_LOG")"

# 3. By a digest the store holds: no request at all.
before=$(wc -l < "$REG_ACCESS_LOG")
"$CAIRN" pull "$REG_ADDR/team/app@$digest" > "$T/p3" 2>&1 || { cat "$T/p3"; fail "pull by digest"; }
grep -q "^Status: Image is up to date for $REG_ADDR/team/app@$digest$" "$T/p3" ||
    fail "by digest: $(cat "$T/p3")"
sleep 0.2
assert_eq "$(wc -l < "$REG_ACCESS_LOG")" "$before" "requests of a stored digest"

# 4. A second image on the same base: the shared layer "Already exists".
# (umoci makes one layer per image here, so share it by pushing the same
# image under a second repository and tag.)
reg_push "$T/oci:app" other/app:v2 || fail "skopeo push 2"
"$CAIRN" pull "$REG_ADDR/other/app:v2" > "$T/p4" 2>&1 || { cat "$T/p4"; fail "pull 2"; }
grep -qE "^[0-9a-f]{12}: Already exists$" "$T/p4" || fail "already exists: $(cat "$T/p4")"
grep -q "Pulling fs layer" "$T/p4" && fail "downloaded a stored layer"
assert_eq "$(grep -c '"GET /v2/[^ ]*/blobs/.*"cairn/' "$REG_ACCESS_LOG")" 2 \
    "cairn's blob GETs in all (one layer, one config)"

# A pull by digest alone gives no tag: Docker lists the repository with
# tag <none> (the image is still dangling for prune, as in Docker).
export CAIRN_ROOT=$T/root-digest
"$CAIRN" pull -q "$REG_ADDR/team/app@$digest" >/dev/null || fail "pull by digest, cold"
"$CAIRN" images --digests | grep -qE "^$REG_ADDR/team/app +<none> +$digest " ||
    fail "digest-only image: $("$CAIRN" images --digests)"
export CAIRN_ROOT=$T/root

# 5. A tag moved in the registry: the next pull downloads the new image.
echo two > "$T/two.txt"
reg_oci_image "$T/oci" app2 "$T/two.txt"
reg_push "$T/oci:app2" team/app:v1 || fail "skopeo push moved tag"
"$CAIRN" pull "$REG_ADDR/team/app:v1" > "$T/p5" 2>&1 || { cat "$T/p5"; fail "pull moved"; }
grep -q "^Status: Downloaded newer image for $REG_ADDR/team/app:v1$" "$T/p5" ||
    fail "moved tag: $(cat "$T/p5")"

# 5b. Five layers download in parallel (three at a time), all verified.
b=$T/bundle5
for i in 1 2 3 4; do
    umoci unpack --rootless --image "$T/oci:app" "$b" >/dev/null 2>&1
    head -c $((300000 * i)) /dev/urandom > "$b/rootfs/blob$i"
    umoci repack --image "$T/oci:app" "$b" >/dev/null
    rm -rf "$b"
done
reg_push "$T/oci:app" team/five:v1 || fail "skopeo push five"
"$CAIRN" pull "$REG_ADDR/team/five:v1" > "$T/p6" 2>&1 || { cat "$T/p6"; fail "pull five"; }
assert_eq "$(grep -c 'Download complete' "$T/p6")" 4 "layers downloaded (one was stored): $(cat "$T/p6")"
assert_eq "$(grep -c 'Already exists' "$T/p6")" 1 "layers already stored"
assert_eq "$("$CAIRN" inspect "$REG_ADDR/team/five:v1" | jq '.[0].RootFS.Layers | length')" 5 \
    "layers of the five-layer image"
mkdir -p "$T/ctx5"
printf 'FROM %s/team/five:v1\nRUN cat /blob4 /one.txt > /dev/null\n' "$REG_ADDR" > "$T/ctx5/Dockerfile"
"$CAIRN" build "$T/ctx5" > "$T/b5" 2>&1 || { cat "$T/b5"; fail "build on five layers (diff_ids)"; }

# 6. On a terminal a layer's line is redrawn with a progress bar.
"$CAIRN" rmi "$REG_ADDR/other/app:v2" "$REG_ADDR/team/app:v1" "$REG_ADDR/team/five:v1" >/dev/null
"$CAIRN" prune -f >/dev/null
script -qec "'$CAIRN' pull '$REG_ADDR/other/app:v2'" /dev/null > "$T/tty" 2>&1 ||
    { cat "$T/tty"; fail "pull on a terminal"; }
grep -q 'Downloading \[=*>* *\] ' "$T/tty" || fail "no progress bar: $(cat -v "$T/tty")"
grep -q $'\033\\[[0-9]*A' "$T/tty" || fail "lines not redrawn: $(cat -v "$T/tty")"
"$CAIRN" pull -q "$REG_ADDR/team/app:v1" >/dev/null || fail "pull again"

# 7. A build FROM the pulled image runs on it.
mkdir -p "$T/ctx"
printf 'FROM %s/team/app:v1\nRUN cat /two.txt > /copy.txt\n' "$REG_ADDR" > "$T/ctx/Dockerfile"
"$CAIRN" build -t built "$T/ctx" > "$T/b1" 2>&1 || { cat "$T/b1"; fail "build FROM pulled"; }
"$CAIRN" save built -o "$T/built.tar" || fail "save"
tar -xOf "$T/built.tar" >/dev/null 2>&1 || fail "saved archive"
echo ok
