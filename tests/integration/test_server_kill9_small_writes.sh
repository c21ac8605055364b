#!/usr/bin/env bash
# cairnd killed with -9 while 64 clients write small blobs at once (their
# writes meet in group commits, answered from the store's committer
# thread): after a restart on the same store, every blob whose Write had
# been answered OK is there and reads back whole (the first read after a
# restart hashes the blob), and the server stays healthy.
. "$(dirname "$0")/server_lib.sh"
LOAD=$CAIRN_BUILD_DIR/bench/bench_load
[ -x "$LOAD" ] || { echo "missing $LOAD (build bench_load)"; exit 1; }

export CD_DIR=$T/store
cd_start
acks=$T/acks
# 64 writes in flight for up to 30 s; killed long before that.
"$LOAD" "127.0.0.1:$CD_PORT" small 1024 30 64 "$acks" >"$T/load.out" 2>&1 &
load=$!
for _ in $(seq 1 300); do
    [ "$(wc -l <"$acks" 2>/dev/null || echo 0)" -gt 300 ] && break
    sleep 0.1
done
kill -KILL "$CD_PID"
wait "$CD_PID" 2>/dev/null
CD_PID=
# The client sees its calls fail now; stop it, keeping what it recorded.
kill "$load" 2>/dev/null
wait "$load" 2>/dev/null
n=$(($(wc -l <"$acks") - 1))
[ "$n" -gt 300 ] && pass "$n writes answered OK before the kill" ||
    fail "only $n writes answered before the kill: $(tail -3 "$T/load.out")"

cd_start
if "$LOAD" "127.0.0.1:$CD_PORT" check 1024 "$acks" >"$T/check.out" 2>&1; then
    pass "after the restart: $(cat "$T/check.out")"
else
    fail "acknowledged blobs lost or damaged: $(cat "$T/check.out")"
fi
grep -q 'is corrupt in the store' "$CD_LOG" &&
    fail "the restarted server found damage: $(grep -m3 'is corrupt in the store' "$CD_LOG")"
alive "the check"
cd_stop
finish
