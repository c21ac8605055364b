#!/usr/bin/env bash
# Connection limits (issue 9, item 14): cairnd hands gRPC a metadata size
# limit, a cap on calls per connection, a handshake timeout and idle/age
# limits, so a client cannot hold connections or streams for free; and,
# with a gRPC that parses headers in linear time (>= 1.53.2, CVE-2023-33953),
# Health/Check and Capabilities answer within 100 ms while four connections
# trickle 64 MB header blocks. What gRPC 1.51 leaves open is written down
# in docs/security.md.
. "$(dirname "$0")/server_lib.sh"
FLOOD=$CAIRN_BUILD_DIR/bench/bench_h2flood
[ -x "$FLOOD" ] || { echo "missing $FLOOD (build bench_h2flood)"; exit 1; }
flood() { "$FLOOD" --addr "127.0.0.1:$CD_PORT" "$@"; }

# The limits are announced in the server's HTTP/2 SETTINGS: 100 concurrent
# streams (3) and 8 KiB of headers (6); without them gRPC 1.51 announces
# no stream limit at all.
cd_start
expect 0 flood --settings 1
grep -qx 'setting 3=100' "$T/last.out" && pass "SETTINGS_MAX_CONCURRENT_STREAMS=100" \
    || fail "no stream limit announced: $(tr '\n' ' ' <"$T/last.out")"
grep -qx 'setting 6=8192' "$T/last.out" && pass "SETTINGS_MAX_HEADER_LIST_SIZE=8192" \
    || fail "no header list limit announced: $(tr '\n' ' ' <"$T/last.out")"
grep -q 'connections: headers up to 8192 bytes, 100 calls each, 10s to handshake' "$CD_LOG" \
    && pass "limits logged at start-up" || fail "no 'connections:' line in the log"
cd_stop

cd_start --max-header-size 16K --max-streams 8
expect 0 flood --settings 1
grep -qx 'setting 3=8' "$T/last.out" && grep -qx 'setting 6=16384' "$T/last.out" \
    && pass "--max-streams and --max-header-size reach the SETTINGS" \
    || fail "flags not applied: $(tr '\n' ' ' <"$T/last.out")"
cd_stop

# A connection that never speaks HTTP/2 is closed after the handshake
# timeout (gRPC's default is 120 s); one that speaks it but makes no call is
# closed after --max-connection-idle; a header block that never ends does
# not keep a connection either. Bounds: the limit plus 3 s for a loaded
# machine.
cd_start --handshake-timeout 2s --max-connection-idle 2s
expect 0 flood --idle 0 --timeout-ms 5000 && pass "silent connection $(cat "$T/last.out")"
expect 0 flood --idle 1 --timeout-ms 5000 && pass "connection without calls $(cat "$T/last.out")"
expect 0 flood --conns 1 --bytes 64K --header 64K --warmup-ms 5000 --probes 1 --bound-ms 100000
if grep -q '[1-9][0-9]* closed by the server' "$T/last.out"; then
    pass "an unfinished header block: $(head -1 "$T/last.out")"
else
    fail "an unfinished header block kept its connection: $(head -1 "$T/last.out")"
fi
alive limits
cd_stop

# The hidden --no-connection-limits keeps gRPC's defaults: the same silent
# connection is still open (this is what the checks above would see on a
# cairnd without the limits).
cd_start --no-connection-limits
expect 1 flood --idle 0 --timeout-ms 4000 && pass "without limits: $(cat "$T/last.out")"
cd_stop

# The remedy docs/operations.md gives for gRPC 1.51: nginx in front, which
# refuses header blocks past its buffers before anything reaches cairnd.
# The issue's check, through it: four raw connections trickle 64 MB header
# blocks (HEADERS plus CONTINUATION frames of hand-encoded literal fields,
# never ended; the flooders reconnect whenever they are cut off) while the
# median of five Health/Check and five GetCapabilities calls, on a channel
# connected before the flood, must be at most 100 ms. 100 ms holds on a
# loaded 2-core ASan machine: a call takes under 10 ms here, and the median
# keeps one scheduling hiccup from deciding the result.
flood_check() {
    expect 0 "$FLOOD" --addr "$1" --conns 4 --bytes 64M --header 64M --chunk 16393 --gap-ms 1 \
        --warmup-ms 2000 --probes 5 --bound-ms 100 --timeout-ms 3000 \
        && pass "$2: $(tail -1 "$T/last.out")"
    sed 's/^/    /' "$T/last.out"
}
if command -v nginx >/dev/null; then
    cd_start
    NGINX_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$T/nginx"
    cat >"$T/nginx/nginx.conf" <<NGINX
daemon off;
master_process off;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT http2;
        large_client_header_buffers 4 8k;
        http2_max_concurrent_streams 100;
        client_max_body_size 0;
        client_body_timeout 1h;
        location / {
            grpc_pass grpc://127.0.0.1:$CD_PORT;
            grpc_read_timeout 1h;
            grpc_send_timeout 1h;
        }
    }
}
NGINX
    nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log" &
    NGINX_PID=$!
    for i in $(seq 1 50); do
        "$PROBE" --addr "127.0.0.1:$NGINX_PORT" --timeout 2 health >/dev/null 2>&1 && break
        sleep 0.1
    done
    # The recipe also carries ordinary traffic: a 6 MiB ByteStream Write
    # and Read through nginx.
    head -c $((6 << 20)) /dev/urandom >"$T/big"
    BIG=$(digest "$T/big")
    NGINX_ADDR=127.0.0.1:$NGINX_PORT
    expect 0 "$PROBE" --addr "$NGINX_ADDR" write "uploads/u/blobs/$BIG" "$T/big" \
        && expect 0 "$PROBE" --addr "$NGINX_ADDR" read "blobs/$BIG" && cmp -s "$T/last.out" "$T/big" \
        && pass "6 MiB written and read back through nginx" || fail "ByteStream through nginx"
    flood_check "$NGINX_ADDR" "behind nginx, under a header flood"
    kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null
    alive behind_nginx
    cd_stop
else
    echo "SKIP: nginx is not installed (scripts/deps.sh installs it)"
fi

# The header flood. gRPC before 1.53.2 parses a header field that spans
# frames in quadratic time before any limit applies (CVE-2023-33953): no
# channel argument bounds it, and Health misses even a 3 s deadline (see
# docs/security.md). Run it where the library is fixed, or when asked to.
# The version is the Debian package's: grpc.pc gives the core library's
# own number (29.0.0 for 1.51.1).
GRPC_VERSION=$(dpkg-query -W -f '${Version}' libgrpc-dev 2>/dev/null || echo unknown)
if [ "$GRPC_VERSION" = unknown ] || dpkg --compare-versions "$GRPC_VERSION" ge 1.53.2 ||
    [ "${CAIRN_TEST_H2FLOOD:-0}" = 1 ]; then
    cd_start
    flood_check "127.0.0.1:$CD_PORT" "under a header flood"
    alive header_flood
    cd_stop
else
    echo "SKIP: header flood: gRPC $GRPC_VERSION has CVE-2023-33953" \
         "(no limit applies before a header field is complete); set CAIRN_TEST_H2FLOOD=1 to run it"
fi
finish
