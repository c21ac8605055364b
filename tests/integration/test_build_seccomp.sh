#!/usr/bin/env bash
# Issue 9, item 3: every RUN step runs under Docker's default seccomp
# profile. Through a real `cairn build` on a busybox base: /proc/self/status
# says "Seccomp: 2" (root and USER app alike), `unshare -U` and
# `unshare -m` are refused with EPERM, a RUN step of
# `unshare -U -m -r mount ...` fails the build, and ordinary steps (a
# pipeline, background jobs, a subshell, a user switch) still work.
. "$(dirname "$0")/lib.sh"

command -v busybox >/dev/null || fail "busybox-static is not installed"
bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
for applet in unshare grep sort sleep; do
    [ -e "$T/rootfs/bin/$applet" ] || fail "busybox has no $applet applet"
done
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

echo "ok: RUN steps run under the seccomp filter"
