#!/usr/bin/env bash
# Issue 9, item 3: every RUN step runs under Docker's default seccomp
# profile. Through a real `cairn build` on a busybox base: /proc/self/status
# says "Seccomp: 2" (root and USER app alike), `unshare -U` and
# `unshare -m` are refused with EPERM, a RUN step of
# `unshare -U -m -r mount ...` fails the build, and ordinary steps (a
# pipeline, background jobs, a subshell, a user switch) still work. Then,
# where a private dockerd can run, the same probe script under `docker run`
# and in a RUN step must print the same lines.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/docker_lib.sh"

command -v busybox >/dev/null || fail "busybox-static is not installed"
bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
for applet in unshare grep sort sleep; do
    [ -e "$T/rootfs/bin/$applet" ] || fail "busybox has no $applet applet"
done
# The probe for part 3: one line per attempt, allowed or the error.
cat > "$T/rootfs/probe.sh" <<'SH'
p() {
    name=$1
    shift
    if out=$("$@" 2>&1); then echo "probe $name: allowed"; else echo "probe $name: refused: $out"; fi
}
echo "probe $(grep '^Seccomp:' /proc/self/status | tr -s '\t ' ' ')"
p unshare-user unshare -U true
p unshare-mount unshare -m true
p unshare-user-mount unshare -U -m -r mount -t tmpfs t /tmp
p unshare-net unshare -n true
p unshare-pid unshare -p -f true
p nsenter nsenter -t 1 -m true
p mount mount -t tmpfs t /tmp
p hostname hostname cairn-probe
p dmesg dmesg
p chroot chroot / true
p linux32 linux32 true
SH
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

# 1. What a RUN sees and may do. Each probe prints one line to the log.
ctx="$T/ctx"
mkdir -p "$ctx"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox:latest
RUN echo "root $(grep '^Seccomp:' /proc/self/status | tr -s '\t ' ' ')"
RUN unshare -U true 2>/tmp/e && echo "userns allowed" || echo "userns refused: $(cat /tmp/e)"
RUN unshare -m true 2>/tmp/e && echo "mountns allowed" || echo "mountns refused: $(cat /tmp/e)"
RUN mount -t tmpfs t /mnt 2>/dev/null && echo "mount allowed" || echo "mount refused"
RUN printf 'b\na\nc\n' | sort | tr '\n' ' ' | sed 's/^/pipeline /'; echo
RUN sleep 0.1 & sleep 0.1 & wait; (echo "background and subshell done")
USER app
RUN echo "app $(grep '^Seccomp:' /proc/self/status | tr -s '\t ' ' ')"
DF
"$CAIRN" build --progress plain "$ctx" > "$T/b1" 2>&1 || { cat "$T/b1"; fail "build"; }
grep -q '^root Seccomp: 2$' "$T/b1" || { cat "$T/b1"; fail "RUN as root is not under a seccomp filter"; }
grep -q '^app Seccomp: 2$' "$T/b1" || { cat "$T/b1"; fail "RUN as USER app is not under a seccomp filter"; }
grep -q '^userns refused: .*Operation not permitted' "$T/b1" ||
    { cat "$T/b1"; fail "unshare -U was not refused with EPERM"; }
grep -q '^mountns refused: .*Operation not permitted' "$T/b1" ||
    { cat "$T/b1"; fail "unshare -m was not refused with EPERM"; }
grep -q '^mount refused$' "$T/b1" || { cat "$T/b1"; fail "mount was not refused"; }
grep -q '^pipeline a b c $' "$T/b1" || { cat "$T/b1"; fail "a pipeline broke"; }
grep -q '^background and subshell done$' "$T/b1" || { cat "$T/b1"; fail "background jobs broke"; }

# 2. The escape of the report: a user namespace gives back CAP_SYS_ADMIN,
# and with it mounts. The step fails, so the build does, as under Docker.
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox:latest
RUN unshare -U -m -r mount -t tmpfs t /tmp
DF
if "$CAIRN" build --progress plain "$ctx" > "$T/b2" 2>&1; then
    cat "$T/b2"
    fail "RUN unshare -U -m -r mount succeeded"
fi
grep -q 'Operation not permitted' "$T/b2" || { cat "$T/b2"; fail "no EPERM in the failed build"; }

# 3. Next to `docker run` (Docker's default profile and capabilities).
if ! start_dockerd; then
    echo "SKIP: the Docker comparison: $dockerd_why"
    echo "ok: RUN steps run under the seccomp filter"
    exit 0
fi
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox:latest
RUN sh /probe.sh
DF
"$CAIRN" build --progress plain "$ctx" > "$T/b3" 2>&1 || { cat "$T/b3"; fail "probe build"; }
grep '^probe ' "$T/b3" > "$T/probe.cairn" || true
dk import "$T/busybox.tar" cairn-seccomp-probe:1 >/dev/null 2>&1 || fail "docker import"
dk run --rm --network=none cairn-seccomp-probe:1 sh /probe.sh > "$T/d3" 2>&1 ||
    { cat "$T/d3"; fail "docker run of the probe"; }
grep '^probe ' "$T/d3" > "$T/probe.docker" || true
[ "$(wc -l < "$T/probe.docker")" -ge 12 ] || { cat "$T/d3"; fail "the probe printed too little under docker"; }
diff -u "$T/probe.docker" "$T/probe.cairn" || fail "RUN and docker run differ (- docker, + cairn)"

echo "ok: RUN steps run under the seccomp filter, as under docker run"
