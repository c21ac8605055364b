#!/usr/bin/env bash
# Bad input: a digest whose size does not match the data. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start
echo "twelve bytes" >"$T/f"
H=$(sha "$T/f")
expect_msg $INVALID_ARGUMENT 'digest says 99 bytes, data has 13' probe put "" "$T/f" "$H/99"
expect_msg $INVALID_ARGUMENT 'data runs past the digest size 5' probe write "uploads/u/blobs/$H/5" "$T/f"
expect 0 probe fmb "" "$H/5" "$H/99" && [ "$(wc -l <"$T/last.out")" -eq 2 ] && pass "neither size stored"
alive wrong_size
cd_stop
finish
