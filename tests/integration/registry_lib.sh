# Registry fixtures for the integration tests (sourced after lib.sh, which
# gives $T and fail). Debian's docker-registry (distribution 2.8) on
# 127.0.0.1 with an ephemeral port and its storage in $T, in one of four
# modes; keys and certificates are made here, in $T. Nothing runs until
# reg_start; everything started is killed on exit.
#
#   reg_start MODE [OPTIONS]  start a registry; MODE is one of
#       http      plain HTTP, no auth
#       tls       HTTPS with a CA and a server certificate for 127.0.0.1
#       htpasswd  plain HTTP with Basic auth (bcrypt htpasswd)
#       token     plain HTTP with token auth and tests/integration/
#                 token_issuer.py as the token service
#     OPTIONS (any mode, after MODE):
#       --tls              also serve HTTPS (htpasswd and token modes)
#       --anonymous-pull   token mode: anyone may pull
#       --ttl SECONDS      token mode: token lifetime (default 300)
#       --redirect         blob GETs answer 307 to a static file server over
#                          the storage (the `redirect` middleware)
#     Users (htpasswd and token modes): alice/alice-pw may pull and push
#     everything; bob/bob-pw may pull everything (token mode; in htpasswd
#     mode Basic auth cannot tell them apart).
#     Sets (for the registry just started):
#       REG_ADDR      127.0.0.1:PORT        REG_PORT   PORT
#       REG_URL       http(s)://REG_ADDR    REG_DIR    its state folder
#       REG_STORAGE   the storage root      REG_ACCESS_LOG  access log
#                     (one line a request: "METHOD /v2/... HTTP/1.1" STATUS)
#       REG_LOG       the registry's own log (stderr)
#       REG_CA        tls: the CA certificate (PEM); empty otherwise
#       REG_CERTS_DIR tls: $REG_DIR/certs.d/REG_ADDR holding ca.crt: for
#                     skopeo --cert-dir, and CAIRN_CERTS_D=$REG_DIR/certs.d
#                     makes cairn trust the registry
#       REG_TLS_ARGS  array: skopeo's TLS flags for this registry
#                     (--tls-verify=false, or --cert-dir DIR); skopeo copy
#                     wants them as --src-... / --dest-...: reg_skopeo_tls
#       REG_ISSUER_URL, REG_ISSUER_LOG, REG_ISSUER_CONTROL   token mode:
#                     the realm, its request log (one JSON line a request)
#                     and the control folder (files `mode`, `ttl`; see
#                     token_issuer.py)
#       REG_SERVICE   token mode: the service name ("cairn-registry")
#   reg_access_count PATTERN  lines of REG_ACCESS_LOG matching the
#                     extended regex PATTERN (e.g. '"GET /v2/[^ ]*/manifests/')
#   reg_issuer_count [JQ-FILTER]  token requests logged by the issuer
#                     (optionally only those matching a jq select filter,
#                     e.g. '.status == 200')
#   reg_issuer_set NAME VALUE  write a control file (mode 500|garbage|hang,
#                     ttl N); reg_issuer_set mode '' restores normal
#   reg_skopeo_tls src|dest   prints REG_TLS_ARGS with the prefix skopeo
#                     copy wants (--src-tls-verify=false, --dest-cert-dir D)
#   reg_push_busybox REPO[:TAG] [USER:PASS]  pushes a small busybox image
#                     (one layer, tests/rootfs.sh, cmd sh) to the registry
#                     last started with skopeo; prints nothing, returns
#                     non-zero (skopeo's output on stderr) when it fails
#   reg_oci_busybox           makes (once) the OCI layout it pushes and
#                     prints its path ($T/reg-oci, image "busybox:latest")
#   reg_push_index REPO[:TAG] [USER:PASS]  pushes (skopeo copy --all) an OCI
#                     index of two platforms, linux/amd64 (the busybox image)
#                     and linux/arm64/v8 (the same layer, its own config)
#   reg_oci_index             adds that index to the layout (ref "multi")
#                     once and prints the layout's path
#   reg_stop_all              kill every registry and issuer started (and
#                     the pids a test appended to REG_PIDS)
#   reg_start_plain [tls|redirect], reg_oci_image DIR NAME FILE...,
#   reg_push DIR:NAME REPO:TAG [USER:PASS]   the pull tests' short names (the
#                     pull tests' stand-in), kept so they run unchanged;
#                     REG_STATIC_LOG (--redirect) logs the static server's
#                     requests as "METHOD PATH auth=HEADER"
#
# Without lib.sh (a unit test starting a registry through bash): set T to a
# folder and REG_NO_TRAP=1; the caller stops them with reg_stop_all in a
# shell given the same T (pids are kept in $T/reg-pids).
: "${T:?registry_lib.sh needs T (source lib.sh first)}"
REG_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REG_PYTHON=${REG_PYTHON:-/usr/bin/python3}
REG_N=${REG_N:-0}
REG_SERVICE=cairn-registry
# Background helpers a test starts itself (a fault proxy...): append their
# pids and reg_stop_all stops them with the registries.
REG_PIDS=()

reg_stop_all() {
    local pid
    for pid in "${REG_PIDS[@]}"; do
        echo "$pid" >> "$T/reg-pids"
    done
    REG_PIDS=()
    [ -f "$T/reg-pids" ] || return 0
    while read -r pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done < "$T/reg-pids"
    while read -r pid; do
        local i
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done < "$T/reg-pids"
    rm -f "$T/reg-pids"
}

# The registries stop first, then whatever the EXIT trap did before
# (lib.sh's rm -rf "$T", docker_lib.sh's stop_dockerd): source this file
# after the other libs.
if [ -z "${REG_NO_TRAP:-}" ]; then
    _reg_prev_trap=$(trap -p EXIT)
    if [ -n "$_reg_prev_trap" ]; then
        _reg_prev_trap=${_reg_prev_trap#trap -- }
        eval "_reg_prev_trap=${_reg_prev_trap% EXIT}"
    fi
    trap "reg_stop_all; ${_reg_prev_trap:-rm -rf \"\$T\"}" EXIT
fi

_reg_die() {
    if declare -F fail >/dev/null; then
        fail "$*"
    fi
    echo "registry_lib: $*" >&2
    exit 1
}

# A CA and a certificate for 127.0.0.1 signed by it, in $1.
_reg_make_tls() {
    local d=$1
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$d/ca.key" -out "$d/ca.crt" -days 2 \
        -subj "/CN=cairn test CA" >/dev/null 2>&1 || _reg_die "openssl: CA"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$d/server.key" -out "$d/server.csr" \
        -subj "/CN=127.0.0.1" >/dev/null 2>&1 || _reg_die "openssl: server key"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$d/ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
        -CAcreateserial -out "$d/server.crt" -days 2 -extfile "$d/ext" \
        >/dev/null 2>&1 || _reg_die "openssl: server certificate"
}

# The issuer's signing key and a certificate for it, for the registry's
# rootcertbundle.
_reg_make_issuer_key() {
    local d=$1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$d/issuer.key" -out "$d/issuer.crt" -days 2 \
        -subj "/CN=cairn test token issuer" >/dev/null 2>&1 \
        || _reg_die "openssl: issuer key"
}

# Waits for a file holding a port, or for pid to die.
_reg_wait_port() {
    local file=$1 pid=$2 what=$3 log=$4 i
    for i in $(seq 1 100); do
        [ -s "$file" ] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log" >&2
            _reg_die "$what exited during start-up"
        fi
        sleep 0.1
    done
    cat "$log" >&2
    _reg_die "$what did not start"
}

_reg_start_issuer() {
    local d=$1 anon=$2 ttl=$3
    _reg_make_issuer_key "$d"
    cat > "$d/users" <<'EOF'
alice:alice-pw:*=pull,push,delete
bob:bob-pw:*=pull
EOF
    mkdir -p "$d/control"
    REG_ISSUER_LOG=$d/issuer-requests.log
    REG_ISSUER_CONTROL=$d/control
    : > "$REG_ISSUER_LOG"
    local args=(--key "$d/issuer.key" --cert "$d/issuer.crt"
                --issuer cairn-test-issuer --service "$REG_SERVICE"
                --users "$d/users" --ttl "$ttl" --control "$d/control"
                --log "$REG_ISSUER_LOG" --port-file "$d/issuer.port")
    [ "$anon" = 1 ] && args+=(--anonymous-pull)
    "$REG_PYTHON" "$REG_LIB_DIR/token_issuer.py" "${args[@]}" \
        > "$d/issuer.out" 2>&1 &
    local pid=$!
    echo "$pid" >> "$T/reg-pids"
    _reg_wait_port "$d/issuer.port" "$pid" "token issuer" "$d/issuer.out"
    REG_ISSUER_URL=http://127.0.0.1:$(cat "$d/issuer.port")/token
}

# A static file server over the storage root for the redirect middleware,
# on its own port; prints the port. It logs "METHOD PATH auth=HEADER" a
# request to REG_STATIC_LOG, so a test sees no Authorization follows the
# redirect.
_reg_start_static() {
    local d=$1
    : > "$d/static.log"
    "$REG_PYTHON" - "$REG_STORAGE" "$d/static.port" "$d/static.log" \
        > "$d/static.out" 2>&1 <<'EOF' &
import functools, http.server, os, sys
root, portfile, logfile = sys.argv[1:4]
class H(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        with open(logfile, "a") as f:
            f.write("%s %s auth=%s\n" % (self.command, self.path,
                                         self.headers.get("Authorization")))
h = functools.partial(H, directory=root)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
open(portfile + ".tmp", "w").write("%d\n" % s.server_address[1])
os.rename(portfile + ".tmp", portfile)
s.serve_forever()
EOF
    local pid=$!
    echo "$pid" >> "$T/reg-pids"
    _reg_wait_port "$d/static.port" "$pid" "static file server" "$d/static.out"
    cat "$d/static.port"
}

reg_start() {
    local mode=${1:?reg_start MODE}
    shift
    local tls=0 anon=0 ttl=300 redirect=0 mtls=0
    while [ $# -gt 0 ]; do
        case $1 in
        --tls) tls=1 ;;
        --mtls) tls=1; mtls=1 ;;
        --anonymous-pull) anon=1 ;;
        --ttl) ttl=$2; shift ;;
        --redirect) redirect=1 ;;
        *) _reg_die "reg_start: unknown option $1" ;;
        esac
        shift
    done
    case $mode in
    http) ;;
    tls) tls=1 ;;
    htpasswd|token) ;;
    *) _reg_die "reg_start: unknown mode $mode" ;;
    esac
    REG_N=$((REG_N + 1))
    REG_DIR=$T/reg$REG_N
    REG_STORAGE=$REG_DIR/storage
    REG_ACCESS_LOG=$REG_DIR/access.log
    REG_LOG=$REG_DIR/registry.log
    REG_CA=
    REG_CERTS_DIR=
    REG_CLIENT_CERT=
    REG_CLIENT_KEY=
    REG_ISSUER_URL=
    REG_ISSUER_LOG=
    REG_ISSUER_CONTROL=
    mkdir -p "$REG_STORAGE"
    local conf=$REG_DIR/config.yml
    cat > "$conf" <<EOF
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
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:0
  secret: cairn-test-$REG_N
EOF
    if [ "$tls" = 1 ]; then
        _reg_make_tls "$REG_DIR/tls"
        REG_CA=$REG_DIR/tls/ca.crt
        cat >> "$conf" <<EOF
  tls:
    certificate: $REG_DIR/tls/server.crt
    key: $REG_DIR/tls/server.key
EOF
        if [ "$mtls" = 1 ]; then
            local d=$REG_DIR/tls
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout "$d/client.key" -out "$d/client.csr" -subj "/CN=cairn" \
                >/dev/null 2>&1 || _reg_die "openssl: client key"
            openssl x509 -req -in "$d/client.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
                -CAcreateserial -out "$d/client.crt" -days 2 >/dev/null 2>&1 \
                || _reg_die "openssl: client certificate"
            REG_CLIENT_CERT=$d/client.crt
            REG_CLIENT_KEY=$d/client.key
            printf '    clientcas:\n      - %s\n' "$d/ca.crt" >> "$conf"
        fi
    fi
    REG_STATIC_LOG=
    if [ "$redirect" = 1 ]; then
        local sport
        sport=$(_reg_start_static "$REG_DIR")
        REG_STATIC_LOG=$REG_DIR/static.log
        cat >> "$conf" <<EOF
middleware:
  storage:
    - name: redirect
      options:
        baseurl: http://127.0.0.1:$sport
EOF
    fi
    case $mode in
    htpasswd)
        htpasswd -bcB "$REG_DIR/htpasswd" alice alice-pw >/dev/null 2>&1 \
            || _reg_die "htpasswd (apache2-utils) failed"
        htpasswd -bB "$REG_DIR/htpasswd" bob bob-pw >/dev/null 2>&1
        cat >> "$conf" <<EOF
auth:
  htpasswd:
    realm: cairn-test-realm
    path: $REG_DIR/htpasswd
EOF
        ;;
    token)
        _reg_start_issuer "$REG_DIR" "$anon" "$ttl"
        cat >> "$conf" <<EOF
auth:
  token:
    realm: $REG_ISSUER_URL
    service: $REG_SERVICE
    issuer: cairn-test-issuer
    rootcertbundle: $REG_DIR/issuer.crt
EOF
        ;;
    esac
    # A test's own settings (e.g. a notifications or proxy block).
    if [ -n "${REG_EXTRA_CONFIG:-}" ]; then
        printf '%s\n' "$REG_EXTRA_CONFIG" >> "$conf"
    fi
    : > "$REG_ACCESS_LOG"
    # distribution reads REGISTRY_* variables as settings; skopeo's
    # REGISTRY_AUTH_FILE would become auth.file. None of them reach it.
    local unset=() v
    for v in $(compgen -e | grep '^REGISTRY_' || true); do
        unset+=(-u "$v")
    done
    env "${unset[@]}" docker-registry serve "$conf" > "$REG_ACCESS_LOG" 2> "$REG_LOG" &
    local pid=$! i
    echo "$pid" >> "$T/reg-pids"
    REG_PORT=
    for i in $(seq 1 100); do
        REG_PORT=$(sed -n 's/.*msg="listening on 127\.0\.0\.1:\([0-9][0-9]*\)[,"].*/\1/p' \
            "$REG_LOG" 2>/dev/null | head -n 1 || true)
        [ -n "$REG_PORT" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$REG_LOG" >&2
            _reg_die "docker-registry exited during start-up"
        fi
        sleep 0.1
    done
    [ -n "$REG_PORT" ] || { cat "$REG_LOG" >&2; _reg_die "docker-registry did not start"; }
    REG_ADDR=127.0.0.1:$REG_PORT
    if [ "$tls" = 1 ]; then
        REG_URL=https://$REG_ADDR
        REG_CERTS_DIR=$REG_DIR/certs.d/$REG_ADDR
        mkdir -p "$REG_CERTS_DIR"
        cp "$REG_CA" "$REG_CERTS_DIR/ca.crt"
        if [ -n "$REG_CLIENT_CERT" ]; then
            # the certs.d names of a client pair (skopeo, Docker, cairn)
            cp "$REG_CLIENT_CERT" "$REG_CERTS_DIR/client.cert"
            cp "$REG_CLIENT_KEY" "$REG_CERTS_DIR/client.key"
        fi
        REG_TLS_ARGS=(--cert-dir "$REG_CERTS_DIR")
    else
        REG_URL=http://$REG_ADDR
        REG_TLS_ARGS=(--tls-verify=false)
    fi
}

reg_skopeo_tls() {
    local side=${1:?reg_skopeo_tls src|dest}
    if [ -n "$REG_CERTS_DIR" ]; then
        printf '%s\n' "--$side-cert-dir" "$REG_CERTS_DIR"
    else
        printf '%s\n' "--$side-tls-verify=false"
    fi
}

reg_access_count() {
    grep -cE "${1:?reg_access_count PATTERN}" "$REG_ACCESS_LOG" || true
}

reg_issuer_count() {
    local filter=${1:-true}
    jq -c "select($filter)" "$REG_ISSUER_LOG" | wc -l
}

reg_issuer_set() {
    printf '%s\n' "$2" > "$REG_ISSUER_CONTROL/${1:?reg_issuer_set NAME VALUE}"
}

reg_oci_busybox() {
    local oci=$T/reg-oci
    if [ ! -d "$oci" ]; then
        local rootfs=$T/reg-rootfs
        sh "$REG_LIB_DIR/../rootfs.sh" "$rootfs" >/dev/null || _reg_die "rootfs.sh"
        umoci init --layout "$oci" >/dev/null || _reg_die "umoci init"
        umoci new --image "$oci:busybox" >/dev/null || _reg_die "umoci new"
        umoci insert --rootless --image "$oci:busybox" "$rootfs" / >/dev/null \
            || _reg_die "umoci insert"
        umoci config --image "$oci:busybox" --config.cmd sh \
            >/dev/null || _reg_die "umoci config"
        umoci tag --image "$oci:busybox" latest >/dev/null
        umoci gc --layout "$oci" >/dev/null
    fi
    echo "$oci"
}

# Adds the file $2 as a blob of layout $1; prints "DIGEST SIZE".
_reg_blob_add() {
    local hex size
    hex=$(sha256sum "$2" | cut -d' ' -f1)
    size=$(stat -c %s "$2")
    cp "$2" "$1/blobs/sha256/$hex"
    echo "sha256:$hex $size"
}

reg_oci_index() {
    local oci
    oci=$(reg_oci_busybox)
    if ! jq -e '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "multi")' \
            "$oci/index.json" >/dev/null; then
        local w=$T/reg-index-work m cfg d1 s1 d2 s2 di si
        mkdir -p "$w"
        m=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "latest") | .digest' \
            "$oci/index.json")
        d1=$m
        s1=$(stat -c %s "$oci/blobs/sha256/${m#sha256:}")
        cfg=$(jq -r .config.digest "$oci/blobs/sha256/${m#sha256:}")
        # The second platform: the same layer under an arm64/v8 config.
        jq -c '.architecture = "arm64" | .variant = "v8"' \
            "$oci/blobs/sha256/${cfg#sha256:}" > "$w/config-arm64"
        local c2 c2size
        read -r c2 c2size < <(_reg_blob_add "$oci" "$w/config-arm64")
        jq -c --arg d "$c2" --argjson s "$c2size" '.config.digest = $d | .config.size = $s' \
            "$oci/blobs/sha256/${m#sha256:}" > "$w/manifest-arm64"
        read -r d2 s2 < <(_reg_blob_add "$oci" "$w/manifest-arm64")
        jq -n -c --arg d1 "$d1" --argjson s1 "$s1" --arg d2 "$d2" --argjson s2 "$s2" '{
            schemaVersion: 2,
            mediaType: "application/vnd.oci.image.index.v1+json",
            manifests: [
              {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d1, size: $s1,
               platform: {architecture: "amd64", os: "linux"}},
              {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d2, size: $s2,
               platform: {architecture: "arm64", os: "linux", variant: "v8"}}]}' > "$w/index"
        read -r di si < <(_reg_blob_add "$oci" "$w/index")
        jq -c --arg d "$di" --argjson s "$si" '.manifests += [{
            mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $s,
            annotations: {"org.opencontainers.image.ref.name": "multi"}}]' \
            "$oci/index.json" > "$w/layout-index" && cp "$w/layout-index" "$oci/index.json"
    fi
    echo "$oci"
}

reg_push_index() {
    local ref=${1:?reg_push_index REPO[:TAG] [USER:PASS]} creds=${2:-}
    local oci
    oci=$(reg_oci_index)
    local args=()
    mapfile -t args < <(reg_skopeo_tls dest)
    [ -n "$creds" ] && args+=(--dest-creds "$creds")
    skopeo copy --quiet --all "${args[@]}" "oci:$oci:multi" \
        "docker://$REG_ADDR/$ref" >"$T/reg-push.out" 2>&1 \
        || { cat "$T/reg-push.out" >&2; return 1; }
}

reg_push_busybox() {
    local ref=${1:?reg_push_busybox REPO[:TAG] [USER:PASS]} creds=${2:-}
    local oci
    oci=$(reg_oci_busybox)
    local args=()
    mapfile -t args < <(reg_skopeo_tls dest)
    [ -n "$creds" ] && args+=(--dest-creds "$creds")
    skopeo copy --quiet "${args[@]}" "oci:$oci:latest" \
        "docker://$REG_ADDR/$ref" >"$T/reg-push.out" 2>&1 \
        || { cat "$T/reg-push.out" >&2; return 1; }
}

# The pull tests' short names (plain, tls, mtls, redirect), so those
# tests run on these fixtures unchanged.
reg_start_plain() {
    case ${1:-} in
    "") reg_start http ;;
    tls) reg_start tls ;;
    mtls) reg_start tls --mtls ;;
    redirect) reg_start http --redirect ;;
    *) _reg_die "reg_start_plain: unknown mode $1" ;;
    esac
}

# reg_oci_image DIR NAME FILE...: image NAME in the OCI layout DIR (made
# when missing): one layer, tests/rootfs.sh's busybox root plus FILEs copied
# to /, cmd sh, os linux, architecture $REG_ARCH (default this machine's).
reg_oci_image() {
    local dir=${1:?reg_oci_image DIR NAME FILE...} name=${2:?reg_oci_image DIR NAME FILE...}
    local b=$T/reg-bundle-$name f
    shift 2
    [ -d "$dir" ] || umoci init --layout "$dir" >/dev/null || _reg_die "umoci init"
    umoci new --image "$dir:$name" >/dev/null || _reg_die "umoci new"
    umoci unpack --rootless --image "$dir:$name" "$b" >/dev/null 2>&1 \
        || _reg_die "umoci unpack"
    sh "$REG_LIB_DIR/../rootfs.sh" "$b/rootfs" >/dev/null || _reg_die "rootfs.sh"
    for f in "$@"; do
        cp -r "$f" "$b/rootfs/"
    done
    umoci repack --image "$dir:$name" "$b" >/dev/null || _reg_die "umoci repack"
    umoci config --image "$dir:$name" --config.cmd sh --os linux \
        --architecture "${REG_ARCH:-$(dpkg --print-architecture)}" >/dev/null \
        || _reg_die "umoci config"
    rm -rf "$b"
}

# reg_push DIR:NAME REPO:TAG [USER:PASS]: skopeo copy of that image to the
# registry last started.
reg_push() {
    local src=${1:?reg_push DIR:NAME REPO:TAG} ref=${2:?reg_push DIR:NAME REPO:TAG}
    local creds=${3:-} args=()
    mapfile -t args < <(reg_skopeo_tls dest)
    [ -n "$creds" ] && args+=(--dest-creds "$creds")
    skopeo copy -q "${args[@]}" "oci:$src" "docker://$REG_ADDR/$ref" >/dev/null
}
