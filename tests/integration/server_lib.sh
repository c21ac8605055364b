# Shared helpers for the cairnd integration tests (tests/integration/
# test_server_*.sh). Source it; it starts nothing by itself.
#
#   cd_start [cairnd options...]   start cairnd on 127.0.0.1:0 with a temp
#                                   --dir; sets CD_PORT, CD_PID, CD_LOG
#   probe ARGS...                   bench_reapi_probe against that server
#   expect CODE CMD...              run CMD, require exit code CODE
#   cd_stop                         SIGTERM, require exit 0 within 10 s
set -u

: "${CAIRND:?CAIRND must point at the cairnd binary}"
: "${CAIRN_BUILD_DIR:?CAIRN_BUILD_DIR must point at the build directory}"
PROBE=${PROBE:-$CAIRN_BUILD_DIR/bench/bench_reapi_probe}
[ -x "$PROBE" ] || { echo "missing $PROBE (build bench_reapi_probe)"; exit 1; }

# gRPC core keeps a few process-lifetime globals; ASan must still find our
# leaks, so leak checking stays on (cairnd calls grpc_shutdown()).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0}

T=$(mktemp -d "${TMPDIR:-/tmp}/cairnd-test.XXXXXX")
CD_PID=
CD_PORT=
CD_LOG=
CD_N=0
FAILS=0

cd_cleanup() {
    if [ -n "$CD_PID" ] && kill -0 "$CD_PID" 2>/dev/null; then
        kill -KILL "$CD_PID" 2>/dev/null
        wait "$CD_PID" 2>/dev/null
    fi
    rm -rf "$T"
}
trap cd_cleanup EXIT

fail() {
    echo "FAIL: $*"
    FAILS=$((FAILS + 1))
}
pass() { echo "ok: $*"; }

# cd_start [options]: options override the defaults (--max-size etc. may be
# given again; cairnd takes the last).
cd_start() {
    CD_N=$((CD_N + 1))
    local dir=${CD_DIR:-$T/store$CD_N}
    mkdir -p "$dir"
    CD_LOG=$T/cairnd$CD_N.log
    "$CAIRND" --listen 127.0.0.1:0 --dir "$dir" --max-size 1G --threads 2 \
        --log-level debug "$@" >"$T/cairnd$CD_N.out" 2>"$CD_LOG" &
    CD_PID=$!
    local i
    for i in $(seq 1 100); do
        CD_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/cairnd$CD_N.out" 2>/dev/null)
        [ -n "$CD_PORT" ] && return 0
        if ! kill -0 "$CD_PID" 2>/dev/null; then
            echo "cairnd exited during start-up:"; cat "$CD_LOG"; exit 1
        fi
        sleep 0.1
    done
    echo "cairnd did not print its port:"; cat "$CD_LOG"; exit 1
}

cd_stop() {
    kill -TERM "$CD_PID"
    local i
    for i in $(seq 1 100); do
        kill -0 "$CD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$CD_PID" 2>/dev/null; then
        fail "cairnd did not exit within 10 s of SIGTERM"
        kill -KILL "$CD_PID"
    fi
    local rc=0
    wait "$CD_PID" || rc=$?
    CD_PID=
    [ "$rc" -eq 0 ] || { fail "cairnd exited $rc after SIGTERM"; tail -20 "$CD_LOG"; }
    grep -q 'summary (exit)' "$CD_LOG" || fail "no exit summary in the log"
    if grep -q 'ERROR: \(AddressSanitizer\|LeakSanitizer\)\|runtime error:' "$CD_LOG"; then
        fail "sanitizer report in the cairnd log"; grep -A20 Sanitizer "$CD_LOG" | head -40
    fi
}

probe() { "$PROBE" --addr "127.0.0.1:$CD_PORT" "$@"; }

# expect CODE CMD... : CMD's exit code must be CODE; its stderr is kept in
# $T/last.err, stdout in $T/last.out.
expect() {
    local want=$1; shift
    local rc=0
    "$@" >"$T/last.out" 2>"$T/last.err" || rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail "expected exit $want, got $rc: $*"
        sed 's/^/    /' "$T/last.err" | head -5
        return 1
    fi
    return 0
}

# expect_msg CODE PATTERN CMD... : as expect, and stderr matches PATTERN.
expect_msg() {
    local want=$1 pat=$2; shift 2
    expect "$want" "$@" || return 1
    if ! grep -q -- "$pat" "$T/last.err"; then
        fail "message does not match '$pat': $(head -1 "$T/last.err")"
        return 1
    fi
    pass "$(head -1 "$T/last.err")"
}

# The server answers after a bad request (it stays up).
alive() {
    expect 0 probe health || fail "server not healthy after: $*"
}

sha() { sha256sum "$1" | cut -c1-64; }
size() { stat -c %s "$1"; }
digest() { echo "$(sha "$1")/$(size "$1")"; }

finish() {
    if [ "$FAILS" -ne 0 ]; then
        echo "$FAILS check(s) failed"; exit 1
    fi
    echo "all checks passed"
}

# gRPC status codes as the probe's exit codes.
OK=0 CANCELLED=1 INVALID_ARGUMENT=3 DEADLINE_EXCEEDED=4 NOT_FOUND=5 PERMISSION_DENIED=7
RESOURCE_EXHAUSTED=8 ABORTED=10 OUT_OF_RANGE=11 UNIMPLEMENTED=12 UNAVAILABLE=14
UNAUTHENTICATED=16
