#!/usr/bin/env bash
# A `cairn save`d image runs in Docker: `docker load` + `docker run` with
# the output checked. The test starts its own dockerd with no networking
# (no bridge, no iptables) on a socket and data root inside its temporary
# directory, and stops it at the end. Where dockerd cannot run (no cgroup
# support, no dockerd), or cannot run any container at all (a control
# image made by `docker import` fails too), it says why and skips.
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/docker_lib.sh"
skip() {
    echo "SKIP: test_build_docker: $*"
    exit 0
}
[ -n "$DOCKERD" ] || skip "dockerd is not installed"
[ -x "$DOCKER" ] || skip "$DOCKER is not installed"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

# The image: a RUN layer, a deletion (whiteout), a COPY with --chown, an
# ENV, a WORKDIR, a USER and a CMD that prints all of them. The RUN layer
# spans many of the parallel gzip's blocks (2 MB of text), so docker's
# gunzip (Go's compress/gzip) and diff_id check read a series of gzip
# members, one per block (client/store/layer_gzm.h), as every default
# layer now is.
ctx="$T/ctx"
mkdir -p "$ctx"
echo "copied file" > "$ctx/file.txt"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
RUN mkdir -p /data && echo "from RUN" > /data/run.txt && rm /bin/vi && seq 1 300000 > /data/seq.txt
COPY --chown=app:app file.txt /data/file.txt
ENV GREETING=hello-from-env
WORKDIR /data
USER app
CMD ["sh", "-c", "cat run.txt file.txt; echo \"$GREETING $(id -u) $(pwd)\"; stat -c %u /data/file.txt; test -e /bin/vi && echo vi-present || echo vi-gone; md5sum < seq.txt | cut -c1-32"]
DF
"$CAIRN" build --progress plain -t cairn-docker-test:1 "$ctx" > "$T/build.out" 2>&1 ||
    { cat "$T/build.out"; fail "build"; }
"$CAIRN" save cairn-docker-test:1 -o "$T/image.tar" || fail "save"
# That RUN layer is such a series: walked by the size each member header
# carries, members of the exact layout, more than one, ending at the end.
run_blob=$("$CAIRN" inspect cairn-docker-test:1 | jq -r '.[0].Store.Layers[1].Digest')
python3 - "$CAIRN_ROOT/blobs/sha256/${run_blob#sha256:}" <<'PY' ||
import struct, sys
b = open(sys.argv[1], "rb").read()
head = bytes([0x1F, 0x8B, 8, 4, 0, 0, 0, 0, 0, 0xFF, 8, 0, 0x43, 0x7A, 4, 0])
off = n = 0
while off < len(b):
    assert b[off:off + 16] == head, "member %d at %d: header" % (n, off)
    off += struct.unpack("<I", b[off + 16:off + 20])[0]
    n += 1
assert off == len(b) and n > 1, "sizes end at %d of %d, %d members" % (off, len(b), n)
PY
    fail "the RUN layer is not a series of cairn gzip members"

# Start dockerd: networking off, everything under $T.
start_dockerd || skip "$dockerd_why"

# docker load must accept cairn's archive whatever the host can run.
dk load -i "$T/image.tar" > "$T/load.out" 2>&1 || fail "docker load: $(cat "$T/load.out")"
grep -q 'cairn-docker-test:1' "$T/load.out" || fail "docker load did not name the tag: $(cat "$T/load.out")"
dk image inspect cairn-docker-test:1 > "$T/dinspect.json" || fail "docker image inspect"
assert_eq "$(jq -r '.[0].Config.User' "$T/dinspect.json")" "app" "User as docker reads it"
assert_eq "$(jq -r '.[0].Config.WorkingDir' "$T/dinspect.json")" "/data" "WorkingDir as docker reads it"
assert_eq "$(jq -r '.[0].RootFS.Layers | length' "$T/dinspect.json")" 3 "layers as docker reads them"

# A control container from `docker import` of the same rootfs: if even
# that cannot run, this host cannot run containers (cgroups, seccomp...).
dk import "$T/busybox.tar" cairn-docker-control:1 >/dev/null 2>&1 || fail "docker import of the control image"
if ! dk run --rm --network=none cairn-docker-control:1 /bin/echo control-ok > "$T/control.out" 2>&1; then
    why=$(tail -2 "$T/control.out")
    stop_dockerd
    skip "docker cannot run containers here (control image failed too): $why"
fi
grep -q '^control-ok$' "$T/control.out" || fail "control container output: $(cat "$T/control.out")"

dk run --rm --network=none cairn-docker-test:1 > "$T/run.out" 2>&1 || fail "docker run: $(cat "$T/run.out")"
printf 'from RUN\ncopied file\nhello-from-env 1000 /data\n1000\nvi-gone\n%s\n' \
    "$(seq 1 300000 | md5sum | cut -c1-32)" > "$T/expected"
diff -u "$T/expected" "$T/run.out" || fail "docker run output differs"

stop_dockerd
echo "test_build_docker: all passed"
