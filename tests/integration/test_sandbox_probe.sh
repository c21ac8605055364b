#!/usr/bin/env bash
# The RUN sandbox next to `docker run` (issue 9): tests/probe/sandbox_probe
# runs in a RUN step (default network, then --network none) and in a
# `docker run` of the same busybox root, and reports per check whether the
# risky thing was allowed. The test fails
#  - when a check the sandbox must refuse is allowed in a RUN (asserted
#    directly, so it needs no Docker), and
#  - when a check Docker refuses is allowed in a RUN (the comparison).
# Every failing check is named; all checks are reported before failing.
# The builds and `docker run` run on a pty the test owns (script(1)), so
# the terminal checks see a real controlling terminal and stdout that is a
# terminal, as in an interactive shell. Also checked: a node a RUN makes
# is kept in the layer, and /dev/null and friends still work.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/docker_lib.sh"

probe="$CAIRN_BUILD_DIR/tests/probe/sandbox_probe"
[ -x "$probe" ] || fail "$probe is not built"
command -v script >/dev/null || fail "script (util-linux) is needed for the pty"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

# The host side: a TCP listener on 127.0.0.1 and an abstract unix socket.
sock="cairn-probe-$$-$RANDOM"
"$probe" serve "$sock" > "$T/serve.port" 2>&1 &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null || true; stop_dockerd; rm -rf "$T"' EXIT
for _ in $(seq 1 100); do
    [ -s "$T/serve.port" ] && break
    sleep 0.05
done
port=$(head -1 "$T/serve.port")
[[ "$port" =~ ^[0-9]+$ ]] || fail "probe serve: $(cat "$T/serve.port")"
netns=$(stat -L -c %i /proc/self/ns/net)
sid=$(awk '{print $6}' /proc/self/stat)
probe_args="--netns $netns --tcp $port --unix $sock --sid $sid --mknod-dir /cache"

# on_pty OUT CMD...: runs CMD with a fresh pty as its controlling terminal
# and stdin/stdout/stderr, the output (CR stripped) into OUT.
on_pty() {
    local out=$1
    shift
    local cmd
    cmd=$(printf '%q ' "$@")
    SHELL=/bin/bash script -qec "$cmd" /dev/null < /dev/null > "$out.raw" 2>&1
    local rc=$?
    tr -d '\r' < "$out.raw" > "$out"
    return $rc
}

ctx="$T/ctx"
mkdir -p "$ctx"
cp "$probe" "$ctx/sandbox_probe"
cat > "$ctx/Dockerfile" <<DF
FROM busybox
COPY sandbox_probe /sandbox_probe
RUN --mount=type=cache,target=/cache /sandbox_probe check $probe_args
RUN mknod /tmp/keep c 1 3 && { cat /tmp/keep 2>/dev/null && echo node-opened || echo node-unopenable; }
RUN test -c /tmp/keep && ! cat /tmp/keep 2>/dev/null && echo node-kept
RUN echo x > /dev/null && head -c 3 /dev/zero | wc -c && head -c 5 /dev/urandom | wc -c && head -c 2 /dev/random | wc -c && ! echo x > /dev/full && echo devices-ok
DF

on_pty "$T/default.out" "$CAIRN" build --progress plain -t probe:1 "$ctx" ||
    { cat "$T/default.out"; fail "build (default network)"; }
on_pty "$T/none.out" "$CAIRN" build --progress plain --no-cache --network none "$ctx" ||
    { cat "$T/none.out"; fail "build (--network none)"; }

# results FILE: the probe's "NAME allowed|denied DETAIL" lines in FILE.
results() { awk '$2 == "allowed" || $2 == "denied"' "$1"; }
# verdict RESFILE CHECK, detail RESFILE CHECK
verdict() { awk -v c="$2" '$1 == c {print $2}' "$1"; }
detail() { awk -v c="$2" '$1 == c {$1 = $2 = ""; sub(/^ +/, ""); print}' "$1"; }
results "$T/default.out" > "$T/default.res"
results "$T/none.out" > "$T/none.res"
[ "$(wc -l < "$T/default.res")" -ge 30 ] || { cat "$T/default.out"; fail "the probe did not report in a RUN"; }

failures=()
# The layer keeps the node the RUN made; the node cannot be opened; the
# host's devices can.
for w in node-unopenable node-kept devices-ok; do
    grep -q "^$w\$" "$T/default.out" || failures+=("RUN did not print $w")
done
grep -q '^ *3$' "$T/default.out" && grep -q '^ *5$' "$T/default.out" ||
    failures+=("reading /dev/zero or /dev/urandom in a RUN")
"$CAIRN" save probe:1 -o "$T/image.tar" || fail "save"
mkdir -p "$T/save" && tar -C "$T/save" -xf "$T/image.tar"
found=
for l in $(jq -r '.[0].Layers[]' "$T/save/manifest.json"); do
    tar --numeric-owner -tvf "$T/save/$l" | grep -qE '^c.* 1,3 .*tmp/keep$' && found=1
done
[ -n "$found" ] || failures+=("no layer holds the device node /tmp/keep")

# must_deny RESFILE WHAT CHECK...: each CHECK reported and denied.
must_deny() {
    local res=$1 what=$2 c v
    shift 2
    for c in "$@"; do
        v=$(verdict "$res" "$c")
        if [ "$v" != denied ]; then
            failures+=("$c ${v:-missing} in a RUN ($what): $(detail "$res" "$c")")
        fi
    done
}
# /proc and /sys (item 1), devices (item 2), the terminal (item 5).
mine=(procsys_core_pattern_write procsys_ip_forward_write
      proc_sysrq_trigger_write proc_irq_write proc_kcore_read proc_keys_read
      proc_timer_list_read proc_sched_debug_read proc_scsi_list
      sys_firmware_list mknod_c10_259:/tmp mknod_c1_3:/tmp mknod_c1_3:/dev
      mknod_c1_3:/cache dev_tty_open tty_fd_inherited tiocsti session_shared)
# Seccomp (item 3).
seccomp=(keyctl_user_keyring_read add_key unshare_newuser unshare_newns_mount
         unshare_newuser_newns_mount clone_newuser clone3_newuser bpf
         perf_event_open userfaultfd kexec_load open_by_handle_at
         personality_odd)
# Network (item 4).
network=(netns_host af_packet_host_net tcp_host_loopback abstract_unix_host)
for mode in default none; do
    must_deny "$T/$mode.res" "$mode network" "${mine[@]}" "${seccomp[@]}" "${network[@]}"
done

# The comparison: nothing Docker refuses may be allowed in a RUN.
compare_docker() {
    dk import "$T/busybox.tar" cairn-probe-base:1 >/dev/null 2>&1 || fail "docker import"
    # A host where Docker cannot run any container (cgroups...) skips.
    if ! dk run --rm --network none cairn-probe-base:1 /bin/true > "$T/control.out" 2>&1; then
        echo "SKIP: the docker comparison: docker cannot run containers here: $(tail -2 "$T/control.out")"
        return 0
    fi
    local drun=(run --rm -v "$probe:/sandbox_probe:ro" -v cairn-probe-cache:/cache
                cairn-probe-base:1 /sandbox_probe check $probe_args)
    local net="docker's default network"
    if ! on_pty "$T/docker.out" "$DOCKER" -H "unix://$T/docker.sock" "${drun[@]}"; then
        # dockerd --bridge=none may have no default network: none is
        # what the comparison needs anyway.
        net="--network none"
        drun=(run --network none "${drun[@]:1}")
        on_pty "$T/docker.out" "$DOCKER" -H "unix://$T/docker.sock" "${drun[@]}" ||
            fail "docker run of the probe: $(cat "$T/docker.out")"
    fi
    echo "docker run of the probe with $net"
    results "$T/docker.out" > "$T/docker.res"
    [ "$(wc -l < "$T/docker.res")" -ge 30 ] || fail "the probe did not report in docker: $(cat "$T/docker.out")"
    local c v mode
    while read -r c v _; do
        [ "$v" = denied ] || continue
        for mode in default none; do
            if [ "$(verdict "$T/$mode.res" "$c")" = allowed ]; then
                failures+=("$c allowed in a RUN ($mode network) but denied by docker run: $(detail "$T/$mode.res" "$c")")
            fi
        done
    done < "$T/docker.res"
}
if start_dockerd; then
    compare_docker
    stop_dockerd
else
    echo "SKIP: the docker comparison: $dockerd_why"
fi

echo "probe results: RUN (default network), RUN (--network none), docker run"
while read -r c v _; do
    printf '  %-30s %-8s %-8s %s\n' "$c" "$v" "$(verdict "$T/none.res" "$c")" \
        "$( [ -f "$T/docker.res" ] && verdict "$T/docker.res" "$c")"
done < "$T/default.res"
if [ ${#failures[@]} -gt 0 ]; then
    printf 'FAIL: %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "test_sandbox_probe: all passed"
