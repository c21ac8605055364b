# A plain-HTTP docker-registry for the pull tests (sourced after lib.sh,
# which gives $T and fail). The same names as registry_lib.sh's http mode,
# so a test can move to it unchanged:
#
#   reg_start_plain [tls|redirect]  starts Debian's docker-registry on 127.0.0.1
#                           with an ephemeral port, storage in $T; sets
#                           REG_ADDR (127.0.0.1:PORT), REG_PORT,
#                           REG_STORAGE, REG_ACCESS_LOG (one line a
#                           request), REG_LOG; killed on exit. tls: HTTPS
#                           with a CA made in $T (REG_CA, its PEM) and a
#                           certificate for 127.0.0.1; redirect: blob GETs
#                           answer 307 to a static file server over the
#                           storage (the `redirect` middleware), which logs
#                           to REG_STATIC_LOG
#   reg_access_count RE     lines of REG_ACCESS_LOG matching the extended
#                           regex RE
#   reg_oci_image DIR NAME FILE...  an OCI layout DIR (created once) with
#                           image NAME: one layer of tests/rootfs.sh's
#                           busybox root plus FILEs copied to / (made with
#                           umoci; cmd sh)
#   reg_push DIR:NAME REPO:TAG  skopeo copy of that image to the registry
: "${T:?registry_plain.sh needs T (source lib.sh first)}"
REG_PIDS=()
REG_CA=

reg_stop_plain() {
    local pid
    for pid in "${REG_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    REG_PIDS=()
}
trap 'reg_stop_plain; rm -rf "$T"' EXIT

reg_start_plain() {
    local mode=${1:-}
    REG_DIR=$T/reg
    REG_STORAGE=$REG_DIR/storage
    REG_ACCESS_LOG=$REG_DIR/access.log
    REG_LOG=$REG_DIR/registry.log
    mkdir -p "$REG_STORAGE"
    cat > "$REG_DIR/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $REG_STORAGE
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
EOF
    if [ "$mode" = tls ]; then
        local d=$REG_DIR/tls
        mkdir -p "$d"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$d/ca.key" -out "$d/ca.crt" -days 2 -subj "/CN=cairn test CA" \
            >/dev/null 2>&1 || fail "openssl: CA"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=127.0.0.1" \
            >/dev/null 2>&1 || fail "openssl: server key"
        printf 'subjectAltName=IP:127.0.0.1\n' > "$d/ext"
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
            -CAcreateserial -out "$d/server.crt" -days 2 -extfile "$d/ext" \
            >/dev/null 2>&1 || fail "openssl: server certificate"
        REG_CA=$d/ca.crt
        printf '  tls:\n    certificate: %s\n    key: %s\n' \
            "$d/server.crt" "$d/server.key" >> "$REG_DIR/config.yml"
    elif [ "$mode" = redirect ]; then
        python3 "$CAIRN_SOURCE_DIR/tests/integration/registry_static.py" \
            "$REG_STORAGE" "$REG_DIR/static.port" "$REG_DIR/static.log" \
            > "$REG_DIR/static.out" 2>&1 &
        REG_PIDS+=($!)
        local j
        for j in $(seq 1 50); do [ -s "$REG_DIR/static.port" ] && break; sleep 0.1; done
        REG_STATIC_LOG=$REG_DIR/static.log
        printf 'middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: http://127.0.0.1:%s\n' \
            "$(cat "$REG_DIR/static.port")" >> "$REG_DIR/config.yml"
    fi
    # Made here, not by the background redirections, which may come late.
    : > "$REG_ACCESS_LOG"
    : > "$REG_LOG"
    env -u REGISTRY_HTTP_ADDR docker-registry serve "$REG_DIR/config.yml" \
        > "$REG_ACCESS_LOG" 2> "$REG_LOG" &
    REG_PIDS+=($!)
    local i
    REG_PORT=
    for i in $(seq 1 100); do
        REG_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' \
            "$REG_LOG" 2>/dev/null | head -1 || true)
        [ -n "$REG_PORT" ] && break
        sleep 0.1
    done
    [ -n "$REG_PORT" ] || { cat "$REG_LOG" >&2; fail "docker-registry did not start"; }
    REG_ADDR=127.0.0.1:$REG_PORT
    local scheme=http
    [ "$mode" = tls ] && scheme=https
    for i in $(seq 1 50); do
        curl -fsS ${REG_CA:+--cacert "$REG_CA"} "$scheme://$REG_ADDR/v2/" \
            >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "docker-registry does not answer on $REG_ADDR"
}

reg_access_count() {
    grep -cE "$1" "$REG_ACCESS_LOG" || true
}

reg_oci_image() {
    local dir=$1 name=$2 b=$T/bundle-$2
    shift 2
    [ -d "$dir" ] || umoci init --layout "$dir" >/dev/null
    umoci new --image "$dir:$name" >/dev/null
    umoci unpack --rootless --image "$dir:$name" "$b" >/dev/null 2>&1
    sh "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$b/rootfs"
    local f
    for f in "$@"; do
        cp -r "$f" "$b/rootfs/"
    done
    umoci repack --image "$dir:$name" "$b" >/dev/null
    umoci config --image "$dir:$name" --config.cmd sh \
        --os linux --architecture "${REG_ARCH:-$(dpkg --print-architecture)}" >/dev/null
    rm -rf "$b"
}

reg_push() {
    skopeo copy -q --dest-tls-verify=false "oci:$1" "docker://$REG_ADDR/$2" \
        >/dev/null
}
