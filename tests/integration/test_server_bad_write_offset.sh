#!/usr/bin/env bash
# Bad input: writes and reads at a wrong offset. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start
head -c 100000 /dev/urandom >"$T/f"
D=$(digest "$T/f")
expect_msg $INVALID_ARGUMENT 'write_offset 500 does not match the committed size 0' \
    probe write "uploads/u/blobs/$D" "$T/f" offset=500
expect $INVALID_ARGUMENT probe write "uploads/u/blobs/$D" "$T/f" count=40000 finish=0
expect_msg $INVALID_ARGUMENT 'write_offset 50000 does not match the committed size 40000' \
    probe write "uploads/u/blobs/$D" "$T/f" from=50000
expect 0 probe fmb "" "$D" && grep -q "$D" "$T/last.out" && pass "nothing visible"
expect 0 probe write "uploads/u/blobs/$D" "$T/f" from=40000 && pass "resume at the right offset works"
expect_msg $OUT_OF_RANGE 'read_offset 100001 is outside' probe read "blobs/$D" 100001
expect_msg $OUT_OF_RANGE 'read_offset -1 is outside' probe read "blobs/$D" -1
expect_msg $OUT_OF_RANGE 'read_limit -3 is negative' probe read "blobs/$D" 0 -3
alive write_offset
cd_stop
finish
