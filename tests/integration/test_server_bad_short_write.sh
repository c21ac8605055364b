#!/usr/bin/env bash
# Bad input: a write that finishes before its size. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start
head -c 100000 /dev/urandom >"$T/f"
D=$(digest "$T/f")
expect_msg $INVALID_ARGUMENT 'finish_write after 60000 bytes, the digest says 100000' \
    probe write "uploads/u/blobs/$D" "$T/f" count=60000
expect 0 probe fmb "" "$D" && grep -q "$D" "$T/last.out" && pass "short upload not visible"
expect $NOT_FOUND probe read "blobs/$D" && pass "not readable"
expect_msg $INVALID_ARGUMENT 'ended at 30000 of 100000 bytes without finish_write' \
    probe write "uploads/u2/blobs/$D" "$T/f" count=30000 finish=0
alive short_write
cd_stop
finish
