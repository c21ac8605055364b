#!/usr/bin/env bash
# Connection limits (issue 9, item 14): cairnd hands gRPC a metadata size
# limit, a cap on calls per connection, a handshake timeout and idle/age
# limits, so a client cannot hold connections or streams for free; its own
# HTTP/2 gate (server/grpc/gate.c, server/grpc/relay.c) caps header blocks before
# gRPC 1.51 parses them (CVE-2023-33953) and caps connections in total and
# per client address; and Health/Check and Capabilities answer within
# 100 ms while four connections trickle 64 MB header blocks at cairnd
# itself. What gRPC 1.51 still leaves open is written down in
# docs/security.md.
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

# The issue's check: four raw connections trickle 64 MB header blocks
# (HEADERS plus CONTINUATION frames of hand-encoded literal fields, never
# ended; the flooders reconnect whenever they are cut off) while the median
# of five Health/Check and of five GetCapabilities calls, on a channel
# connected before the flood, must be at most 1 s and every call must
# answer within 3 s. A call takes under 15 ms here, but the bound is
# loose on purpose (a test never fails because the machine is slow: a
# 2-core ASan machine under a load of 9 once gave a median over 100 ms);
# it still separates the two cases, because without the gate every call
# takes over 3 s. The issue's 100 ms is measured in bench/, not here. First through the optional proxy docs/operations.md describes
# (nginx, which refuses header blocks past its buffers), then against
# cairnd itself.
flood_check() {
    expect 0 "$FLOOD" --addr "$1" --conns 4 --bytes 64M --header 64M --chunk 16393 --gap-ms 1 \
        --warmup-ms 2000 --probes 5 --bound-ms 1000 --timeout-ms 3000 \
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

# The header flood against cairnd itself. gRPC 1.51 parses a header field
# that spans frames in quadratic time before any limit applies
# (CVE-2023-33953; without the gate Health misses even a 3 s deadline, see
# docs/security.md); the gate closes a connection whose header block passes
# 64 KiB (2 x --max-header-size, at least 64 KiB) before gRPC reads it.
cd_start
flood_check "127.0.0.1:$CD_PORT" "cairnd alone, under a header flood"
grep -q 'closed by the HTTP/2 gate: header block larger than the limit' "$CD_LOG" \
    && pass "the gate closed the flooding connections (logged)" \
    || fail "no gate refusal in the log"
[ "$(grep -c 'closed by the HTTP/2 gate' "$CD_LOG")" -le 20 ] \
    && pass "gate refusals logged at most once a second" || fail "gate refusals flood the log"
# Fields that each fit in one frame (gRPC 1.51 counts its limit per frame,
# not per block): the block cap closes these too.
expect 0 flood --conns 4 --bytes 64M --header 4K --chunk 16393 --gap-ms 1 \
    --warmup-ms 2000 --probes 5 --bound-ms 1000 --timeout-ms 3000 \
    && pass "4 KiB fields: $(tail -1 "$T/last.out")"
alive header_flood
cd_stop

# The same flood without the gate (the hidden --no-gate keeps gRPC's own
# listener, as before the gate): Health misses its deadlines. It burns a
# minute of CPU and leaves cairnd unable to drain, so only on request.
if [ "${CAIRN_TEST_H2FLOOD_CONTROL:-0}" = 1 ]; then
    cd_start --no-gate
    expect 1 "$FLOOD" --addr "127.0.0.1:$CD_PORT" --conns 4 --bytes 64M --header 64M \
        --chunk 16393 --gap-ms 1 --warmup-ms 2000 --probes 5 --bound-ms 1000 --timeout-ms 3000 \
        && pass "without the gate the check fails: $(tail -1 "$T/last.out")"
    kill -KILL "$CD_PID"; wait "$CD_PID" 2>/dev/null; CD_PID=
fi

# Connection caps: connections past --max-connections-per-ip from one
# address, or past --max-connections in total, are closed at once; the
# ones before them are served (they get the server's SETTINGS).
hold() {
    python3 - "$CD_PORT" "$1" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(9)[:3] + b"\x04" + bytes(5)
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(hello)
    socks.append(s)
    time.sleep(0.1)
out = []
for s in socks:
    s.settimeout(2.0)
    try:
        out.append("open" if s.recv(65536) else "closed")
    except (ConnectionResetError, BrokenPipeError):
        out.append("closed")
    except socket.timeout:
        out.append("silent")
print(" ".join(out))
PY
}
cd_start --max-connections-per-ip 2
[ "$(hold 3)" = "open open closed" ] && pass "--max-connections-per-ip 2: third closed" \
    || fail "--max-connections-per-ip 2: $(hold 3)"
grep -q 'refused: --max-connections-per-ip reached' "$CD_LOG" && pass "per-address refusal logged" \
    || fail "no per-address refusal in the log"
alive per_ip_cap
cd_stop
# gRPC sees relayed connections as "fd:N"; log lines that name a call's
# peer still give the client's address.
cd_start
expect $UNAUTHENTICATED probe --token a --token2 b health
grep -q "Health/Check from ipv4:127\.0\.0\.1:[0-9]*: 2 'authorization' headers" "$CD_LOG" \
    && pass "a call's peer is logged as the client's address" \
    || fail "peer in the log: $(grep "'authorization' headers" "$CD_LOG" | head -1)"
cd_stop
cd_start --max-connections 3
[ "$(hold 4)" = "open open open closed" ] && pass "--max-connections 3: fourth closed" \
    || fail "--max-connections 3: $(hold 4)"
alive total_cap
cd_stop
# TLS: the relay terminates TLS and the gate reads the decrypted frames,
# so an oversized header block sent over TLS is closed as well (gRPC's own
# TLS listener would parse it). A python client with ALPN h2 sends one
# 1 MB header field that never ends.
if command -v openssl >/dev/null; then
    (cd "$T" && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca \
        -keyout ca.key -out ca.pem && printf 'subjectAltName=IP:127.0.0.1\n' >san.ext &&
        openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -extfile san.ext -out server.pem) >/dev/null 2>"$T/openssl.log" \
        || { cat "$T/openssl.log"; fail "openssl"; }
    cd_start --tls-cert "$T/server.pem" --tls-key "$T/server.key"
    out=$(python3 - "$CD_PORT" "$T/ca.pem" <<'PY'
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
def frame(t, flags, sid, payload):
    return len(payload).to_bytes(3, "big") + bytes([t, flags]) + sid.to_bytes(4, "big") + payload
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b""))
# A literal field, new name, with a 1 MB value: HEADERS, then CONTINUATIONs.
s.sendall(frame(1, 0, 1, b"\x00\x07x-flood\x7f\xe1\xff\x3f" + b"a" * 16000))
sent = 16000
try:
    while sent < 1 << 20:
        s.sendall(frame(9, 0, 1, b"a" * 16384))
        sent += 16384
    s.settimeout(5)
    while s.recv(65536):
        pass
    print("closed")
except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
    print("closed")
except socket.timeout:
    print("still open")
PY
)
    [ "$out" = closed ] && grep -q 'closed by the HTTP/2 gate: header block' "$CD_LOG" \
        && pass "over TLS, the oversized header block is closed by the gate" \
        || fail "over TLS: $out; $(grep -c 'HTTP/2 gate' "$CD_LOG") gate lines"
    expect 0 probe --ca "$T/ca.pem" --timeout 5 health && pass "TLS health after the flood" \
        || fail "TLS health after the flood"
    cd_stop
fi
finish
