# Sourced by bench/remote (not run alone): the cold-cache fan-out. N
# builders start together on the same Dockerfile (bench/remote.d/fanout:
# three RUN steps of about a CPU second each) against a cache that has
# nothing of it yet, as when a push to main fans out to N CI jobs:
#   1 x cairn          one fresh store, an empty cairnd instance
#   4 x cairn          four fresh stores at once, an empty instance; step
#                      claims (docs/remote.md "Claims") make one run each
#                      step and the others wait for its result
#   4 x cairn, no claims  the same with cache-claim-ttl = off: each runs all
#   1 x / 4 x BuildKit four dockerds (one per "machine", so their solvers
#                      share nothing, as on four CI runners), each
#                      building with --cache-from a registry repository no
#                      one has pushed yet and exporting its cache after
#                      the build (inline cache, then docker push)
# Per round and row: wall clock of all N, and CPU seconds: the client
# processes' (bash `times`: getrusage of the children the bench waited
# for, which includes the RUN processes cairn's sandbox reaped) plus the
# servers' (/proc/PID/stat utime+stime+cutime+cstime of cairnd, or of each
# dockerd and its containerd, before and after). A fresh instance or
# repository per round keeps every round cold.
#
# Uses from bench/remote: T, CAIRN, CAIRND, CACHE_URL, cairnd_pid, REG,
# DOCKER_BIN, say, now, elapsed, stop_pid, cairn_store, cairn_ran,
# buildkit_ran, median, ratio.

FAN_N=4
declare -a fan_dockerd=()
declare -A fan_wall fan_cpu fan_ran

# CPU seconds of PID and the children it reaped, or 0 when it is gone.
proc_cpu() {
    local tck
    tck=$(getconf CLK_TCK)
    awk -v t="$tck" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13 + $14 + $15) / t }' \
        "/proc/$1/stat" 2>/dev/null || echo 0
}
# Children CPU of a subshell from its `times` output (second line).
times_cpu() {
    sed -n 2p "$1" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } printf "%.2f\n", s }'
}
addf() { awk -v a="$1" -v b="$2" -v c="${3:-0}" 'BEGIN { printf "%.2f\n", a + b - c }'; }

fan_servers_cpu() { # the servers of a row: cairnd, or every dockerd + containerd
    local s=0 p
    if [ "$1" = cairn ]; then proc_cpu "$cairnd_pid"; return; fi
    for p in "${fan_dockerd[@]}"; do
        s=$(addf "$s" "$(proc_cpu "$p")")
    done
    for i in $(seq "$FAN_N"); do
        p=$(cat "$T/fx$i/containerd/containerd.pid" 2>/dev/null || true)
        [ -n "$p" ] && s=$(addf "$s" "$(proc_cpu "$p")")
    done
    echo "$s"
}

fan_dockerd_start() {
    [ -x "$DOCKER_BIN" ] && command -v dockerd >/dev/null || { say "fan-out: no docker"; return 1; }
    [ -n "$REG" ] || { say "fan-out: no registry for BuildKit's cache"; return 1; }
    local i j up
    for i in $(seq "$FAN_N"); do
        dockerd --bridge=none --iptables=false --ip-masq=false \
            --data-root "$T/fd$i" --exec-root "$T/fx$i" --pidfile "$T/fd$i.pid" \
            -H "unix://$T/fd$i.sock" --insecure-registry "$REG" >"$T/logs/fan-dockerd$i.log" 2>&1 &
        fan_dockerd+=($!)
    done
    for i in $(seq "$FAN_N"); do
        up=
        for j in $(seq 120); do
            if $DOCKER_BIN -H "unix://$T/fd$i.sock" version >/dev/null 2>&1; then up=1; break; fi
            sleep 0.5
        done
        [ -n "$up" ] || { say "fan-out: dockerd $i did not start"; return 1; }
        $DOCKER_BIN -H "unix://$T/fd$i.sock" import "$T/busybox.tar" busybox:latest >/dev/null || return 1
    done
}
fan_dockerd_stop() {
    local i p ctd
    for i in "${!fan_dockerd[@]}"; do
        ctd=$(cat "$T/fx$((i + 1))/containerd/containerd.pid" 2>/dev/null || true)
        stop_pid "${fan_dockerd[$i]}" "fan-out dockerd" 30
        if [ -n "$ctd" ] && kill -0 "$ctd" 2>/dev/null; then kill -KILL "$ctd" 2>/dev/null || true; fi
    done
    fan_dockerd=()
}

# fan_row ROW N REP: one round of a row; records wall, CPU, steps run.
fan_row() {
    local row=$1 n=$2 rep=$3 i t0 t1 c0 c1 kind=cairn ran=0 r
    [[ $row == *BuildKit* ]] && kind=buildkit
    local tag
    tag=$(tr 'A-Z' 'a-z' <<<"fanout-$rep-${row//[^a-zA-Z0-9]/}")
    for i in $(seq "$n"); do
        if [ $kind = cairn ]; then
            cairn_store "$T/fan-$i"
        else
            local D="$DOCKER_BIN -H unix://$T/fd$i.sock" base ids
            base=$($D images -q --no-trunc busybox:latest)
            ids=$($D images -aq --no-trunc | sort -u | grep -vx "$base" || true)
            [ -z "$ids" ] || $D rmi -f $ids >/dev/null 2>&1 || true
            $D builder prune -af >/dev/null
        fi
    done
    c0=$(fan_servers_cpu $kind)
    t0=$(now)
    (
        for i in $(seq "$n"); do
            log=$T/logs/fan-$tag-$i.log
            if [ $kind = cairn ]; then
                env $([[ $row == *"no claims"* ]] && echo CAIRN_CACHE_CLAIM_TTL=off) \
                    CAIRN_ROOT="$T/fan-$i" "$CAIRN" build --progress plain --network host -t fan \
                    --cache "${CACHE_URL%/*}/$tag" "$T/ctx/fanout" >"$log" 2>&1 &
            else
                D="$DOCKER_BIN -H unix://$T/fd$i.sock"
                { DOCKER_BUILDKIT=1 $D build --network=host --progress plain \
                    --build-arg BUILDKIT_INLINE_CACHE=1 --cache-from "$REG/$tag:cache" \
                    -t "$REG/$tag:cache" "$T/ctx/fanout" && $D push "$REG/$tag:cache"; } >"$log" 2>&1 &
            fi
        done
        bad=0
        for p in $(jobs -p); do wait "$p" || bad=$((bad + 1)); done
        echo "$bad" >"$T/fan.bad"
        times >"$T/fan.times"
    )
    [ "$(cat "$T/fan.bad")" = 0 ] || say "fan-out $row #$rep: $(cat "$T/fan.bad") of $n builds failed (logs: fan-$tag-*.log)"
    t1=$(now)
    c1=$(fan_servers_cpu $kind)
    for i in $(seq "$n"); do
        r=$("${kind}_ran" "$T/logs/fan-$tag-$i.log")
        ran=$((ran + ${r:-0}))
        [ $kind = cairn ] && rm -rf "$T/fan-$i"
    done
    fan_wall["$row"]+="$(elapsed "$t0" "$t1") "
    fan_cpu["$row"]+="$(addf "$(times_cpu "$T/fan.times")" "$c1" "$c0") "
    fan_ran["$row"]+="$ran "
}

fanout_run() {
    mkdir -p "$T/ctx/fanout"
    cp "$here/fanout/Dockerfile" "$T/ctx/fanout/Dockerfile"
    local rows=("1 x cairn" "4 x cairn" "4 x cairn, no claims") rep row
    [ -n "$REG" ] || start_registry || true
    if fan_dockerd_start; then
        rows+=("1 x BuildKit" "4 x BuildKit")
    else
        say "fan-out: BuildKit rows skipped"
    fi
    for rep in $(seq "$reps"); do
        for row in "${rows[@]}"; do
            say "rep $rep/$reps: fan-out, $row"
            case $row in 1*) fan_row "$row" 1 "$rep" ;; *) fan_row "$row" "$FAN_N" "$rep" ;; esac
        done
    done
    fan_dockerd_stop
    printf '\nCold-cache fan-out (bench/remote.d/fanout: 3 RUN steps of ~1 CPU s; empty cache each round): median of %s rounds\n\n' "$reps"
    printf '%-22s %8s %8s %8s %8s  %s\n' ROW wall "vs 1x" "CPU s" "vs 1x" "steps run (per round)"
    local w1 c1 w c
    w1=$(median "${fan_wall["1 x cairn"]}") c1=$(median "${fan_cpu["1 x cairn"]}")
    for row in "${rows[@]}"; do
        w=$(median "${fan_wall["$row"]}") c=$(median "${fan_cpu["$row"]}")
        printf '%-22s %8s %8s %8s %8s  %s\n' "$row" "$w" "$(ratio "$w" "$w1")" "$c" "$(ratio "$c" "$c1")" "${fan_ran["$row"]}"
    done
    printf '\nAll fan-out samples (wall | CPU):\n'
    for row in "${rows[@]}"; do
        printf '  %-22s %s| %s\n' "$row" "${fan_wall["$row"]}" "${fan_cpu["$row"]}"
    done
}
