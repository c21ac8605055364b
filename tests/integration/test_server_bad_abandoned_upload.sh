#!/usr/bin/env bash
# Bad input: an upload whose client disconnects and never returns. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
# Bad flag values are refused at start-up with a message naming the flag.
expect 2 "$CAIRND" --listen 127.0.0.1:0 --dir "$T/x" --max-size 1G --upload-idle-timeout 0s
grep -q -- '--upload-idle-timeout: 0s is outside' "$T/last.err" && pass "idle timeout 0s refused" \
    || fail "no clear error for --upload-idle-timeout 0s: $(cat "$T/last.err")"
expect 2 "$CAIRND" --listen 127.0.0.1:0 --dir "$T/x" --max-size 1G --stage-batch 3000K
grep -q -- '--stage-batch: 3000K is not a whole number of MiB' "$T/last.err" \
    && pass "stage batch 3000K refused" || fail "no clear error for --stage-batch: $(cat "$T/last.err")"
# 1 MiB staging batches: the abandoned upload below has two batches staged
# in the store, which the expiry must remove.
cd_start --upload-idle-timeout 2s --stage-batch 1M
grep -q 'uploads idle for 2s dropped, staged 1 MiB per txn' "$CD_LOG" && pass "flags in effect" \
    || fail "start-up line does not show the flags"
head -c 3000000 /dev/urandom >"$T/f"
D=$(digest "$T/f")
R="uploads/gone/blobs/$D"
# The client sends 2.5 MB, then cancels the call (it goes away).
expect $CANCELLED probe write "$R" "$T/f" count=2500000 finish=0 abort=1
expect 0 probe qws "$R" && grep -q 'committed_size=2500000 complete=0' "$T/last.out" \
    && pass "disconnected upload parked for resume" || fail "qws: $(cat "$T/last.out")"
sleep 5
expect_msg $NOT_FOUND 'no upload in progress' probe qws "$R"
grep -q 'dropped 1 abandoned upload' "$CD_LOG" && pass "abandoned upload dropped after the TTL"
expect 0 probe fmb "" "$D" && grep -q "$D" "$T/last.out" && pass "nothing visible"
expect 0 probe write "$R" "$T/f" chunk=1048576 && pass "fresh upload under the same name works"
alive abandoned_upload
cd_stop
finish
