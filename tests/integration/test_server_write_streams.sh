#!/usr/bin/env bash
# ByteStream Write streams that misbehave or overlap: a stream that sends
# nothing (or stops sending) is cancelled with DEADLINE_EXCEEDED after half
# the upload TTL and its upload is parked for a resume; a second concurrent
# Write on the same resource name is ABORTED; QueryWriteStatus during an
# active stream reports the bytes received so far.
#
# The probe's hold=S keeps its stream open and silent (no half-close) for
# up to S seconds, returning as soon as the server ends the call.
. "$(dirname "$0")/server_lib.sh"
head -c 3000000 /dev/urandom >"$T/f"
D=$(digest "$T/f")

# --upload-idle-timeout 4s: streams idle for 2 s are cancelled.
cd_start --upload-idle-timeout 4s

# A stream that opens and never sends a message.
t0=$(date +%s)
expect_msg $DEADLINE_EXCEEDED 'no WriteRequest for 2s' \
    probe --timeout 60 write "uploads/silent/blobs/$D" "$T/f" silent=1 hold=30
t1=$(date +%s)
[ $((t1 - t0)) -le 10 ] && pass "silent stream ended by the server after $((t1 - t0)) s" \
    || fail "silent stream held for $((t1 - t0)) s"
expect $NOT_FOUND probe qws "uploads/silent/blobs/$D" && pass "nothing to resume for a stream without a name"

# A stream that sends 1 MB and then goes quiet without half-closing.
R="uploads/quiet/blobs/$D"
expect_msg $DEADLINE_EXCEEDED 'upload kept for a resume' \
    probe --timeout 60 write "$R" "$T/f" count=1000000 finish=0 hold=30
grep -q 'cancelled 1 Write stream(s) idle' "$CD_LOG" && pass "idle cancel logged" \
    || fail "no idle cancel in the log"
expect 0 probe qws "$R" && grep -q 'committed_size=1000000 complete=0' "$T/last.out" \
    && pass "idle stream's upload parked at 1000000" || fail "qws: $(cat "$T/last.out")"
expect 0 probe write "$R" "$T/f" from=1000000 chunk=1048576 \
    && pass "resumed after the idle cancel"
expect 0 probe read "blobs/$D" && pass "resumed blob readable"
alive idle_streams
cd_stop

# Overlapping streams need a stream that stays live for a while: TTL 20,
# idle cancel after 10 s.
cd_start --upload-idle-timeout 20s
R="uploads/busy/blobs/$D"
probe --timeout 60 write "$R" "$T/f" count=1000000 finish=0 hold=30 >"$T/held.out" 2>"$T/held.err" &
held=$!
live=
for _ in $(seq 1 50); do
    if probe qws "$R" >"$T/q.out" 2>/dev/null && grep -q 'committed_size=1000000' "$T/q.out"; then
        live=1; break
    fi
    sleep 0.1
done
[ -n "$live" ] && pass "QueryWriteStatus during the stream reports the live offset 1000000" \
    || fail "qws during the stream: $(cat "$T/q.out")"
grep -q 'complete=0' "$T/q.out" || fail "live upload reported complete"
expect_msg $ABORTED 'another Write stream is using this resource name' \
    probe write "$R" "$T/f" chunk=1048576
expect_msg $ABORTED 'another Write stream' probe write "$R" "$T/f" from=1000000 chunk=1048576
kill -0 "$held" 2>/dev/null && pass "first stream still open after the refused ones" \
    || fail "first stream ended early: $(cat "$T/held.err")"
# The first stream is cancelled once idle; its upload then resumes.
rc=0
wait "$held" || rc=$?
[ "$rc" -eq $DEADLINE_EXCEEDED ] && pass "held stream cancelled when idle" \
    || fail "held stream ended with $rc: $(cat "$T/held.err")"
expect 0 probe write "$R" "$T/f" from=1000000 chunk=1048576 && pass "resumed after the overlap"
expect 0 probe read "blobs/$D" && pass "blob readable"
alive overlapping_streams
cd_stop
finish
