#!/usr/bin/env bash
# A flood of refused connections cannot flood the log: the relay's refusal
# lines (server/grpc/relay.c refuse_log) go through a cd_log_budget of one
# line a second, and the next line written names how many were refused
# since the last one, so no refusal goes uncounted.
#
# One connection holds the only slot of --max-connections-per-ip 1; then
# REFUSALS more connect one after another, each waiting until cairnd has
# closed it (so each refusal has been logged or dropped before the next);
# after more than a second, one last connection is refused and its line
# must carry the count of those dropped before it. The bound on lines
# comes from the burst's own measured duration, so a slow machine only
# loosens it.
. "$(dirname "$0")/server_lib.sh"
REFUSALS=40

cd_start --max-connections-per-ip 1 --handshake-timeout 60s
out=$(python3 - "$CD_PORT" "$REFUSALS" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(9)[:3] + b"\x04" + bytes(5)
holder = socket.create_connection(("127.0.0.1", port))
holder.sendall(hello)
holder.settimeout(5)
holder.recv(65536)  # the server's SETTINGS: the slot is taken

def refused():
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(10)
    try:
        closed = s.recv(65536) == b""
    except ConnectionResetError:
        closed = True
    s.close()
    return closed

start = time.monotonic()
closed = sum(refused() for _ in range(n))
elapsed = time.monotonic() - start
time.sleep(1.2)  # past the budget's one-second window
closed += refused()
print(closed, int(elapsed) + 1)
holder.close()
PY
)
read -r closed windows <<<"$out"
total=$((REFUSALS + 1))
[ "$closed" = "$total" ] && pass "$total connections refused" || fail "refused: $out"

lines=$(grep -c 'refused: --max-connections-per-ip reached' "$CD_LOG")
counted=$(sed -n 's/.*--max-connections-per-ip reached (\([0-9]*\) refused since the last such line)$/\1/p' \
    "$CD_LOG" | awk '{s += $1} END {print s + 0}')
# At most one line in each second the burst touched, plus the last one.
[ "$lines" -ge 1 ] && [ "$lines" -le $((windows + 1)) ] \
    && pass "$total refusals in ${windows}s gave $lines log lines" \
    || fail "$total refusals in ${windows}s gave $lines log lines (at most $((windows + 1)))"
[ "$counted" = "$total" ] && pass "the lines count all $total refusals" \
    || fail "the lines count $counted refusals, not $total"
alive refusal_flood
cd_stop
finish
