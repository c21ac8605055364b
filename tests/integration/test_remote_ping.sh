#!/usr/bin/env bash
# cairn cache ping/stats against a real cairnd: capabilities, latency, what
# the token may do; clear failures for a server that is not there, a bad
# URL and a missing token.
. "$(dirname "$0")/server_lib.sh"
: "${CAIRN:?CAIRN must point at the cairn binary}"

cat >"$T/tokens" <<'TOK'
ci-secret      write  *
laptop-secret  read   *
TOK
cd_start --tokens "$T/tokens"
URL=grpc://127.0.0.1:$CD_PORT/main

expect 0 "$CAIRN" cache ping --cache-token ci-secret "$URL" &&
    grep -q '^cache .*: ok' "$T/last.out" && grep -q 'access  *read, write' "$T/last.out" &&
    grep -qE 'latency +[0-9.]+ ms' "$T/last.out" && pass "ping with a write token" ||
    fail "ping write: $(cat "$T/last.out" "$T/last.err")"
expect 0 env CAIRN_CACHE_TOKEN=laptop-secret "$CAIRN" cache ping "$URL" &&
    grep -q 'read (read-only)' "$T/last.out" && pass "ping with a read token (from the environment)" ||
    fail "ping read: $(cat "$T/last.out")"
expect 1 "$CAIRN" cache ping "$URL" && grep -q 'UNAUTHENTICATED' "$T/last.err" &&
    pass "no token: UNAUTHENTICATED" || fail "no token: $(cat "$T/last.out" "$T/last.err")"
mkdir -p "$T/xdg/cairn"
printf '# fleet settings\ncache-token = ci-secret\ncache-timeout = 5s\n' >"$T/xdg/cairn/config"
expect 0 env XDG_CONFIG_HOME="$T/xdg" "$CAIRN" cache stats "$URL" &&
    grep -qE 'max batch +4194304 bytes' "$T/last.out" && grep -q 'api  *2.0-2.3' "$T/last.out" &&
    pass "stats with the token from the config file" || fail "stats: $(cat "$T/last.out" "$T/last.err")"
printf 'cache-timeout = soon\n' >"$T/xdg/cairn/config"
expect 2 env XDG_CONFIG_HOME="$T/xdg" "$CAIRN" cache ping "$URL" && grep -q 'config:1' "$T/last.err" &&
    pass "bad config line named" || fail "bad config: $(cat "$T/last.err")"
cd_stop

expect 1 "$CAIRN" cache ping --cache-timeout 2s "grpc://127.0.0.1:$CD_PORT" &&
    grep -q 'UNAVAILABLE' "$T/last.err" && pass "server gone: UNAVAILABLE" ||
    fail "server gone: $(cat "$T/last.err")"
expect 2 "$CAIRN" cache ping "http://127.0.0.1:1" && grep -q 'grpc://' "$T/last.err" &&
    pass "bad URL refused" || fail "bad URL: $(cat "$T/last.err")"
expect 2 "$CAIRN" cache ping "grpc://127.0.0.1:1/blobs" && pass "reserved instance name refused"
finish
