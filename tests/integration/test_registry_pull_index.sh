#!/usr/bin/env bash
# cairn pull of a two-platform OCI index (hand-made, pushed with skopeo
# copy --all): --platform picks the image, the default is this machine's,
# a platform the index lacks fails listing what it has, and a re-pull of
# either platform is up to date with one request.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start_plain
host_arch=$(dpkg --print-architecture)
[ "$host_arch" = amd64 ] || [ "$host_arch" = arm64 ] ||
    { echo "SKIP: the fixture index has amd64 and arm64 only"; exit 0; }

echo amd > "$T/amd.txt"
echo arm > "$T/arm.txt"
REG_ARCH=amd64 reg_oci_image "$T/oci" amd "$T/amd.txt"
REG_ARCH=arm64 reg_oci_image "$T/oci" arm "$T/arm.txt"
# An OCI index over both, as a multi-platform build would push it.
desc() {
    jq -c --arg n "$1" --arg a "$2" --arg v "$3" \
        '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $n)
         | {mediaType, digest, size,
            platform: ({os: "linux", architecture: $a} + (if $v == "" then {} else {variant: $v} end))}' \
        "$T/oci/index.json"
}
idx=$(jq -cn --argjson a "$(desc amd amd64 '')" --argjson b "$(desc arm arm64 v8)" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [$a, $b]}')
printf '%s' "$idx" > "$T/index.blob"
ihex=$(sha256sum "$T/index.blob" | cut -d' ' -f1)
cp "$T/index.blob" "$T/oci/blobs/sha256/$ihex"
isize=$(stat -c %s "$T/index.blob")
jq --arg d "sha256:$ihex" --argjson s "$isize" \
    '.manifests += [{mediaType: "application/vnd.oci.image.index.v1+json",
      digest: $d, size: $s,
      annotations: {"org.opencontainers.image.ref.name": "multi"}}]' \
    "$T/oci/index.json" > "$T/index.json.new"
mv "$T/index.json.new" "$T/oci/index.json"
skopeo copy -q --all --dest-tls-verify=false "oci:$T/oci:multi" \
    "docker://$REG_ADDR/multi:v1" >/dev/null || fail "skopeo copy --all"

ref=$REG_ADDR/multi:v1
# 1. The other platform, by --platform.
other=arm64
[ "$host_arch" = arm64 ] && other=amd64
"$CAIRN" pull --platform "linux/$other" "$ref" > "$T/p1" 2>&1 ||
    { cat "$T/p1"; fail "pull --platform linux/$other"; }
grep -q "^Digest: sha256:$ihex$" "$T/p1" || fail "the index digest: $(cat "$T/p1")"
assert_eq "$("$CAIRN" inspect "$ref" | jq -r '.[0].Architecture')" "$other" \
    "architecture of --platform linux/$other"
assert_eq "$("$CAIRN" inspect "$ref" | jq -r '.[0].RepoDigests[0]')" \
    "$REG_ADDR/multi@sha256:$ihex" "repo digest is the index's"

# 2. The default: this machine's. The tag moves to it.
"$CAIRN" pull "$ref" > "$T/p2" 2>&1 || { cat "$T/p2"; fail "pull default"; }
grep -q "^Status: Downloaded newer image for $ref$" "$T/p2" || fail "default: $(cat "$T/p2")"
assert_eq "$("$CAIRN" inspect "$ref" | jq -r '.[0].Architecture')" "$host_arch" \
    "architecture of the default platform"

# 3. Up to date for this platform: one HEAD.
before=$(wc -l < "$REG_ACCESS_LOG")
"$CAIRN" pull "$ref" > "$T/p3" 2>&1 || { cat "$T/p3"; fail "re-pull"; }
grep -q "^Status: Image is up to date for $ref$" "$T/p3" || fail "up to date: $(cat "$T/p3")"
sleep 0.2
assert_eq "$(($(wc -l < "$REG_ACCESS_LOG") - before))" 1 "requests of an up-to-date pull"

# 4. arm64/v8 is arm64; an arm/v7 machine may not run either here.
"$CAIRN" pull -q --platform linux/arm64/v8 "$ref" >/dev/null || fail "arm64/v8"
assert_eq "$("$CAIRN" inspect "$ref" | jq -r '.[0].Architecture')" arm64 "arm64/v8"

# 5. A platform the index lacks: the message lists what it has.
set +e
out=$("$CAIRN" pull --platform linux/s390x "$ref" 2>&1); rc=$?
set -e
[ "$rc" -ne 0 ] || fail "s390x pulled"
echo "$out" | grep -q "no image for platform linux/s390x" || fail "message: $out"
echo "$out" | grep -q "linux/amd64" && echo "$out" | grep -q "linux/arm64" ||
    fail "lists platforms: $out"
set +e
out=$("$CAIRN" pull --platform linux "$ref" 2>&1); rc=$?
set -e
assert_eq "$rc" 1 "bad --platform status"
echo "$out" | grep -q "os/arch" || fail "bad --platform message: $out"
echo ok
