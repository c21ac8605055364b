#!/usr/bin/env bash
# Bad input: an upload whose client disconnects and never returns. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start --upload-ttl 2
head -c 3000000 /dev/urandom >"$T/f"
D=$(digest "$T/f")
R="uploads/gone/blobs/$D"
# The client sends 1 MB, then cancels the call (it goes away).
expect $CANCELLED probe write "$R" "$T/f" count=1000000 finish=0 abort=1
expect 0 probe qws "$R" && grep -q 'committed_size=1000000 complete=0' "$T/last.out" \
    && pass "disconnected upload parked for resume" || fail "qws: $(cat "$T/last.out")"
sleep 5
expect_msg $NOT_FOUND 'no upload in progress' probe qws "$R"
grep -q 'dropped 1 abandoned upload' "$CD_LOG" && pass "abandoned upload dropped after the TTL"
expect 0 probe fmb "" "$D" && grep -q "$D" "$T/last.out" && pass "nothing visible"
expect 0 probe write "$R" "$T/f" chunk=1048576 && pass "fresh upload under the same name works"
alive abandoned_upload
cd_stop
finish
