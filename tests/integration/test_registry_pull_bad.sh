#!/usr/bin/env bash
# cairn pull's bad cases against the real docker-registry: unknown
# repository, tag and blob (404s with the registry's reason), a layer
# whose bytes do not match its digest (nothing stored, the layer named),
# a registry that is down, and one that accepts connections but never
# answers (a timeout, not a hang).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry_lib.sh"
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start_plain
echo one > "$T/one.txt"
reg_oci_image "$T/oci" app "$T/one.txt"
reg_push "$T/oci:app" team/app:v1 || fail "skopeo push"

# pull_fails REF WORDS...: cairn pull REF exits 1 and says every WORD.
pull_fails() {
    local ref=$1 out rc w
    shift
    set +e
    out=$(timeout 60 "$CAIRN" pull "$ref" 2>&1); rc=$?
    set -e
    assert_eq "$rc" 1 "exit status of pull $ref ($out)"
    for w in "$@"; do
        echo "$out" | grep -qF -- "$w" || fail "pull $ref: no \"$w\" in: $out"
    done
}

# 1. 404s, with the registry's code in words.
pull_fails "$REG_ADDR/nobody/here:v1" "manifest unknown" "$REG_ADDR/nobody/here:v1"
pull_fails "$REG_ADDR/team/app:v2" "manifest unknown" "team/app:v2"
pull_fails "$REG_ADDR/team/app@sha256:$(printf x | sha256sum | cut -d' ' -f1)" \
    "manifest unknown"
assert_eq "$("$CAIRN" images -q)" "" "images after 404s"

# 2. The layer's bytes in the registry's storage are damaged (same size):
# the pull fails naming the layer, and stores neither image nor layer.
layer=$(jq -r '.layers[0].digest' "$T/oci/blobs/sha256/$(jq -r \
    '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "app") | .digest' \
    "$T/oci/index.json" | cut -d: -f2)")
hex=${layer#sha256:}
data=$REG_STORAGE/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data
[ -f "$data" ] || fail "no blob file at $data"
cp "$data" "$T/good-layer"
size=$(stat -c %s "$data")
head -c "$size" /dev/urandom > "$data"
pull_fails "$REG_ADDR/team/app:v1" "layer $layer" "nothing stored"
assert_eq "$("$CAIRN" images -q)" "" "images after a corrupt layer"
[ -e "$CAIRN_ROOT/blobs/sha256/$hex" ] && fail "the corrupt layer was stored"
assert_eq "$(find "$CAIRN_ROOT/tmp" -name 'pull-*' | wc -l)" 0 "temporary files left"
# Longer than the manifest says: refused as well.
cat "$T/good-layer" "$T/good-layer" > "$data"
pull_fails "$REG_ADDR/team/app:v1" "layer $layer"
[ -e "$CAIRN_ROOT/blobs/sha256/$hex" ] && fail "an overlong layer was stored"

# 3. The blob is gone from the registry: 404 blob unknown.
rm -f "$data"
pull_fails "$REG_ADDR/team/app:v1" "layer $layer" "404"
cp "$T/good-layer" "$data"
"$CAIRN" pull -q "$REG_ADDR/team/app:v1" >/dev/null || fail "pull after repair"
[ -e "$CAIRN_ROOT/blobs/sha256/$hex" ] || fail "layer not stored after repair"

# 4. Nobody listens: a clear message, at once.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pull_fails "127.0.0.1:$port/x:v1" "cannot reach registry 127.0.0.1:$port"

# 5. A listener that never answers: the request times out.
python3 - "$T/hang.port" <<'EOF' &
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
conns = []
while True:
    c, _ = s.accept()
    conns.append(c)  # kept open, never read or answered
EOF
REG_PIDS+=($!)
for _ in $(seq 1 50); do [ -s "$T/hang.port" ] && break; sleep 0.1; done
export CAIRN_REGISTRY_TIMEOUT=2
pull_fails "127.0.0.1:$(cat "$T/hang.port")/x:v1" "stopped answering"
unset CAIRN_REGISTRY_TIMEOUT
echo ok
