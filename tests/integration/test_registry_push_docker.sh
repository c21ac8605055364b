#!/usr/bin/env bash
# What cairn pushes, Docker pulls and runs: a private dockerd (docker_lib.sh)
# pulls the image from the registry on 127.0.0.1 (loopback is insecure to
# dockerd) and runs it, with gzip and with uncompressed layers; the image
# ID docker computes is cairn's, and the repo digest docker records is the
# one cairn printed. buildah pulls it
# too. Skips where dockerd cannot start or run containers.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/docker_lib.sh"
. "$(dirname "$0")/registry_lib.sh"
skip() {
    echo "SKIP: test_registry_push_docker: $*"
    exit 0
}
command -v busybox >/dev/null || fail "busybox-static is not installed"
reg_start http

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"
mkdir -p "$T/ctx"
echo "copied file" > "$T/ctx/file.txt"
cat > "$T/ctx/Dockerfile" <<'DF'
FROM busybox
RUN mkdir -p /data && echo "from RUN" > /data/run.txt && rm /bin/vi
COPY file.txt /data/file.txt
ENV GREETING=hello-from-env
WORKDIR /data
CMD ["sh", "-c", "cat run.txt file.txt; echo \"$GREETING $(pwd)\"; test -e /bin/vi && echo vi-present || echo vi-gone"]
DF
img=$REG_ADDR/team/run:1
"$CAIRN" build --push -t "$img" "$T/ctx" > "$T/b" 2>&1 || { cat "$T/b"; fail "build --push"; }
# Uncompressed layers are pushed as stored: docker 20.10 pulls those too.
raw=$REG_ADDR/team/raw:1
"$CAIRN" build --no-cache --compression none --push -t "$raw" "$T/ctx" > "$T/braw" 2>&1 ||
    { cat "$T/braw"; fail "build --compression none --push"; }
digest=$(grep -E '^1: digest: ' "$T/b" | cut -d' ' -f3)
id=$("$CAIRN" inspect "$img" | jq -r '.[0].Id')

# buildah (vfs storage under $T) pulls it.
if command -v buildah >/dev/null; then
    buildah --root "$T/bh" --runroot "$T/bhr" --storage-driver vfs pull -q \
        --tls-verify=false "docker://$img" > "$T/bh.out" 2> "$T/bh.err" ||
        fail "buildah pull: $(cat "$T/bh.err")"
    assert_eq "sha256:$(tail -1 "$T/bh.out")" "$id" "image ID buildah computed"
    buildah --root "$T/bh" --runroot "$T/bhr" --storage-driver vfs rmi -a -f > /dev/null 2>&1 || true
fi

start_dockerd || skip "$dockerd_why"
dk pull "$img" > "$T/pull.out" 2>&1 || fail "docker pull: $(cat "$T/pull.out")"
grep -q "^Digest: $digest$" "$T/pull.out" || fail "docker's digest: $(cat "$T/pull.out")"
assert_eq "$(dk image inspect -f '{{.Id}}' "$img")" "$id" "image ID docker computed"
assert_eq "$(dk image inspect -f '{{index .RepoDigests 0}}' "$img")" "$REG_ADDR/team/run@$digest" "docker's repo digest"
dk import "$T/busybox.tar" cairn-docker-control:1 >/dev/null 2>&1 || fail "docker import of the control image"
if ! dk run --rm --network=none cairn-docker-control:1 /bin/echo control-ok > "$T/control.out" 2>&1; then
    why=$(tail -2 "$T/control.out")
    stop_dockerd
    skip "docker cannot run containers here (control image failed too): $why"
fi
dk run --rm --network=none "$img" > "$T/run.out" 2>&1 || fail "docker run: $(cat "$T/run.out")"
printf 'from RUN\ncopied file\nhello-from-env /data\nvi-gone\n' > "$T/expected"
diff -u "$T/expected" "$T/run.out" || fail "docker run output differs"
dk pull "$raw" > "$T/pull2.out" 2>&1 || fail "docker pull of uncompressed layers: $(cat "$T/pull2.out")"
dk run --rm --network=none "$raw" > "$T/run2.out" 2>&1 || fail "docker run (uncompressed): $(cat "$T/run2.out")"
diff -u "$T/expected" "$T/run2.out" || fail "docker run output differs (uncompressed)"
stop_dockerd
echo ok
