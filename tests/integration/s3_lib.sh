# A real S3 server for integration tests (sourced): OpenStack Swift with its
# s3api middleware, from Debian's python3-swift, on 127.0.0.1 only
# (tests/integration/s3_swift.py; facts in docs: server/s3/README.md).
#
#   s3_start               start it with a fresh state dir and one bucket;
#                          exports S3_ENDPOINT, S3_BUCKET, S3_URL (s3://BUCKET),
#                          S3_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
#                          (and unsets AWS_SESSION_TOKEN, AWS_PROFILE)
#   s3_stop                stop it (returns when every process is gone); the
#                          objects stay on disk
#   s3_restart             s3_stop, then start again on the same port and state:
#                          every object is back
#   s3_curl ARGS...        curl signed as the test user (SigV4), -sS
#   s3_put_raw KEY FILE    PUT FILE as BUCKET/KEY straight to the server
#   s3_get_raw KEY OUT     GET BUCKET/KEY into OUT; prints the HTTP status
#   s3_object_path KEY     the object's data file on Swift's disk
#   s3_corrupt KEY         flip the first byte of that file in place (same
#                          length: only a digest check can tell). Swift
#                          serves the bad bytes once (200), notices its own
#                          MD5 mismatch at the end and quarantines the file:
#                          later GETs and HEADs of KEY answer 404
#
# The server is a background job of the test's shell: wait for your own jobs
# by pid (`wait "$pid"`), since a bare `wait` would wait for the server too.
# Call s3_start in the test's own shell, not in $(...): the server dies with
# the shell that started it (PR_SET_PDEATHSIG), so a test killed by a signal
# leaves nothing running. State lives in $T/s3 when the test has a temp dir
# $T (lib.sh, server_lib.sh), else in a temp dir removed at exit.
#
# Needs /usr/bin/python3 with python3-swift (scripts/deps.sh).

S3_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
S3_PY=/usr/bin/python3
S3_PID=
S3_PORT=0
S3_DIR=
S3_BUCKET=${S3_BUCKET:-cairn-test}
S3_OWN_DIR=

_s3_die() {
    echo "s3_lib: $*" >&2
    [ -n "$S3_DIR" ] && [ -f "$S3_DIR/swift.log" ] && tail -20 "$S3_DIR/swift.log" >&2
    exit 1
}

# Run at exit when s3_lib made its own dir; chained in front of the trap
# the test had when s3_start ran.
_s3_exit() {
    s3_stop
    [ -n "$S3_OWN_DIR" ] && rm -rf "$S3_OWN_DIR"
    eval "${_S3_PREV_TRAP:-}"
}

# _s3_launch: starts the server on $S3_PORT (0 the first time) and waits for
# its ready file, which holds the proxy's port.
_s3_launch() {
    local ready=$S3_DIR/ready i
    rm -f "$ready"
    "$S3_PY" "$S3_LIB_DIR/s3_swift.py" serve "$S3_DIR/state" "$S3_PORT" \
        "$ready" >>"$S3_DIR/swift.log" 2>&1 &
    S3_PID=$!
    # Up to 60 s: a cold start on a busy two-core machine takes several.
    for i in $(seq 1 1200); do
        [ -s "$ready" ] && break
        kill -0 "$S3_PID" 2>/dev/null || _s3_die "swift exited during start-up"
        sleep 0.05
    done
    [ -s "$ready" ] || _s3_die "swift not ready after 60 s"
    S3_PORT=$(cat "$ready")
    export S3_ENDPOINT=http://127.0.0.1:$S3_PORT
}

s3_start() {
    [ -x "$S3_PY" ] && "$S3_PY" -c 'import swift' 2>/dev/null ||
        _s3_die "python3-swift is not installed (scripts/deps.sh)"
    if [ -n "${T:-}" ] && [ -d "$T" ]; then
        S3_DIR=$T/s3
    else
        S3_OWN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/cairn-s3.XXXXXX")
        S3_DIR=$S3_OWN_DIR
    fi
    mkdir -p "$S3_DIR"
    local prev
    prev=$(trap -p EXIT)
    if [ -n "$prev" ]; then
        eval "set -- $prev"
        _S3_PREV_TRAP=$3
    fi
    trap _s3_exit EXIT

    S3_PORT=0
    _s3_launch
    export AWS_ACCESS_KEY_ID=test:tester AWS_SECRET_ACCESS_KEY=testing
    export S3_REGION=us-east-1 S3_BUCKET S3_URL=s3://$S3_BUCKET
    unset AWS_SESSION_TOKEN AWS_PROFILE
    # curl's --user splits "test:tester" at its colon; a netrc login does not.
    printf 'machine 127.0.0.1 login %s password %s\n' \
        "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$S3_DIR/netrc"
    chmod 600 "$S3_DIR/netrc"
    local code
    code=$(s3_curl -o /dev/null -w '%{http_code}' -X PUT "$S3_ENDPOINT/$S3_BUCKET")
    [ "$code" = 200 ] || _s3_die "creating bucket $S3_BUCKET: HTTP $code"
}

s3_stop() {
    [ -n "$S3_PID" ] || return 0
    # The server kills and reaps its three backends on SIGTERM, then exits;
    # one that does not within 10 s is killed (its backends die with it).
    kill -TERM "$S3_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$S3_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$S3_PID" 2>/dev/null || true
    wait "$S3_PID" 2>/dev/null || true
    S3_PID=
}

s3_restart() {
    s3_stop
    _s3_launch
}

s3_curl() {
    curl -sS --netrc-file "$S3_DIR/netrc" --aws-sigv4 "aws:amz:$S3_REGION:s3" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"
}

s3_put_raw() {
    local code
    code=$(s3_curl -o /dev/null -w '%{http_code}' -T "$2" \
        "$S3_ENDPOINT/$S3_BUCKET/$1")
    [ "$code" = 200 ] || { echo "s3_put_raw $1: HTTP $code" >&2; return 1; }
}

s3_get_raw() {
    s3_curl -o "$2" -w '%{http_code}' "$S3_ENDPOINT/$S3_BUCKET/$1"
}

s3_object_path() {
    "$S3_PY" "$S3_LIB_DIR/s3_swift.py" path "$S3_DIR/state" "$S3_BUCKET" "$1"
}

s3_corrupt() {
    local f b
    f=$(s3_object_path "$1") || return 1
    b=$(od -An -tu1 -N1 "$f" | tr -d ' ')
    printf "\\$(printf '%03o' $(((b + 1) % 256)))" |
        dd of="$f" bs=1 count=1 conv=notrunc status=none
}
