# A private dockerd for tests that check cairn's images with Docker itself:
# no bridge, no iptables, data and exec roots and the socket under $T, so
# it routes nowhere and leaves nothing behind. Source after lib.sh; it
# replaces the EXIT trap so dockerd is stopped before $T is removed.
DOCKERD=$(command -v dockerd || true)
DOCKER=/usr/bin/docker # Debian's docker.io client, matching its dockerd

# stop_dockerd: the dockerd start_dockerd started (by its pid), then any
# mounts it left under $T, so the temporary directory can be removed.
dockerd_pid=
stop_dockerd() {
    if [ -n "$dockerd_pid" ] && kill -0 "$dockerd_pid" 2>/dev/null; then
        kill -TERM "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$dockerd_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$dockerd_pid" 2>/dev/null && kill -KILL "$dockerd_pid" 2>/dev/null
        wait "$dockerd_pid" 2>/dev/null || true
    fi
    dockerd_pid=
    awk -v t="$T" 'index($2, t) == 1 {print $2}' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
trap 'stop_dockerd; rm -rf "$T"' EXIT

# dk ARGS...: the docker client against the private dockerd.
dk() { "$DOCKER" -H "unix://$T/docker.sock" "$@"; }

# start_dockerd: starts the private dockerd and waits until it answers.
# Returns 1 with the reason in $dockerd_why when docker is missing or the
# daemon cannot start here (the caller skips its Docker part).
dockerd_why=
start_dockerd() {
    [ -n "$DOCKERD" ] || { dockerd_why="dockerd is not installed"; return 1; }
    [ -x "$DOCKER" ] || { dockerd_why="$DOCKER is not installed"; return 1; }
    mkdir -p "$T/docker" "$T/exec"
    "$DOCKERD" --bridge=none --iptables=false --ip-masq=false \
        --data-root "$T/docker" --exec-root "$T/exec" --pidfile "$T/docker.pid" \
        -H "unix://$T/docker.sock" > "$T/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 300); do
        kill -0 "$dockerd_pid" 2>/dev/null || break
        dk version >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    local why
    why=$(grep -iE 'level=(fatal|error)|failed' "$T/dockerd.log" | tail -3)
    dockerd_why="dockerd did not start here: ${why:-$(tail -3 "$T/dockerd.log")}"
    stop_dockerd
    return 1
}
