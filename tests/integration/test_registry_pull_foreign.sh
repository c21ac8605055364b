#!/usr/bin/env bash
# A non-distributable ("foreign") layer, as containerd fetches it: from the
# URLs its descriptor lists, then from the registry. The registry holds the
# manifest and config only (distribution accepts the manifest when its
# validation allows the URLs); the layer is served by another server.
# Bytes from a URL are verified like any others.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
REG_EXTRA_CONFIG='validation:
  manifests:
    urls:
      allow:
        - ^http://127\.0\.0\.1'
reg_start_plain
echo one > "$T/one.txt"
reg_oci_image "$T/oci" app "$T/one.txt"
mdig=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "app")
    | .digest' "$T/oci/index.json")
man=$T/oci/blobs/sha256/${mdig#sha256:}
layer=$(jq -r '.layers[0].digest' "$man")
config=$(jq -r '.config.digest' "$man")

# The layer on a server of its own.
mkdir -p "$T/web"
cp "$T/oci/blobs/sha256/${layer#sha256:}" "$T/web/layer.tgz"
head -c "$(stat -c %s "$T/web/layer.tgz")" /dev/urandom > "$T/web/bad.tgz"
python3 "$CAIRN_SOURCE_DIR/tests/integration/registry_static.py" "$T/web" \
    "$T/web.port" "$T/web.log" 2> "$T/web.err" &
REG_PIDS+=($!)
for _ in $(seq 1 50); do [ -s "$T/web.port" ] && break; sleep 0.1; done
web=http://127.0.0.1:$(cat "$T/web.port")

# push_foreign TAG URL...: the config blob, then a manifest whose layer is
# non-distributable with those URLs.
push_foreign() {
    local tag=$1
    shift
    local loc urls
    loc=$(curl -fsS -o /dev/null -D - -X POST "http://$REG_ADDR/v2/team/app/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    case $loc in http*) ;; *) loc=http://$REG_ADDR$loc ;; esac
    curl -fsS -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary @"$T/oci/blobs/sha256/${config#sha256:}" \
        "$loc&digest=$config" >/dev/null || fail "config upload"
    urls=$(printf '%s\n' "$@" | jq -R . | jq -sc .)
    jq -c --argjson u "$urls" \
        '.layers[0].mediaType = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
         | .layers[0].urls = $u' "$man" > "$T/m-$tag.json"
    local code
    code=$(curl -sS -o "$T/put.out" -w '%{http_code}' -X PUT \
        -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary @"$T/m-$tag.json" "http://$REG_ADDR/v2/team/app/manifests/$tag")
    [ "$code" = 201 ] || fail "manifest upload: $code $(cat "$T/put.out")"
}

# 1. The URL serves the layer: pulled from there, never from the registry.
push_foreign v1 "$web/layer.tgz"
"$CAIRN" pull "$REG_ADDR/team/app:v1" > "$T/p1" 2>&1 || { cat "$T/p1"; fail "pull foreign"; }
grep -q '^GET /layer.tgz ' "$T/web.log" || fail "the URL was not used: $(cat "$T/web.log")"
grep -q "/blobs/$layer" "$REG_ACCESS_LOG" && fail "the layer was asked of the registry"
[ -e "$CAIRN_ROOT/blobs/sha256/${layer#sha256:}" ] || fail "layer not stored"

# 2. The first URL is missing, the second serves other bytes (and the
# registry has no blob): the bad bytes are not stored and the message
# names the layer.
export CAIRN_ROOT=$T/root2
push_foreign v2 "$web/missing.tgz" "$web/bad.tgz"
set +e
out=$("$CAIRN" pull "$REG_ADDR/team/app:v2" 2>&1); rc=$?
set -e
assert_eq "$rc" 1 "pull with a bad URL ($out)"
grep -q '^GET /bad.tgz ' "$T/web.log" || fail "the second URL was not tried: $(cat "$T/web.log")"
echo "$out" | grep -q "layer $layer" || fail "message: $out"
[ -e "$CAIRN_ROOT/blobs/sha256/${layer#sha256:}" ] && fail "bad bytes stored"
assert_eq "$("$CAIRN" images -q)" "" "images after a bad foreign layer"
echo ok
