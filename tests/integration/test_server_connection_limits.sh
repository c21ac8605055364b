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

# The header flood. gRPC before 1.53.2 parses a header field that spans
# frames in quadratic time before any limit applies (CVE-2023-33953): no
# channel argument bounds it, and Health misses even a 3 s deadline (see
# docs/security.md). Run it where the library is fixed, or when asked to.
# The version is the Debian package's: grpc.pc gives the core library's
# own number (29.0.0 for 1.51.1).
GRPC_VERSION=$(dpkg-query -W -f '${Version}' libgrpc-dev 2>/dev/null || echo unknown)
if [ "$GRPC_VERSION" = unknown ] || dpkg --compare-versions "$GRPC_VERSION" ge 1.53.2 ||
    [ "${CAIRN_TEST_H2FLOOD:-0}" = 1 ]; then
    # 100 ms is the issue's bound. It holds on a loaded 2-core ASan
    # machine because each probe is one small call on a connection made
    # before the flood, and the median of 5 probes per method is taken, so
    # one scheduling hiccup does not decide the result.
    cd_start
    expect 0 flood --conns 4 --bytes 64M --header 64M --chunk 16393 --gap-ms 1 \
        --warmup-ms 2000 --probes 5 --bound-ms 100 --timeout-ms 3000 \
        && pass "under a header flood: $(tail -1 "$T/last.out")"
    sed 's/^/    /' "$T/last.out"
    alive header_flood
    cd_stop
else
    echo "SKIP: header flood: gRPC $GRPC_VERSION has CVE-2023-33953" \
         "(no limit applies before a header field is complete); set CAIRN_TEST_H2FLOOD=1 to run it"
fi
finish
