#!/usr/bin/env bash
# Bad input: a digest function other than SHA256. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start
echo data >"$T/f"
D=$(digest "$T/f")
PROBE_DIGEST_FUNCTION=5 expect_msg $INVALID_ARGUMENT 'unsupported digest function 5' probe fmb "" "$D"
PROBE_DIGEST_FUNCTION=3 expect_msg $INVALID_ARGUMENT 'unsupported digest function 3' probe put "" "$T/f"
PROBE_DIGEST_FUNCTION=99 expect_msg $INVALID_ARGUMENT 'digest function 99' probe ac-get "" "$D"
expect 0 probe fmb "" "$D" && grep -q "$D" "$T/last.out" && pass "nothing stored under another function"
expect_msg $UNIMPLEMENTED "digest function 'md5'" probe read "blobs/md5/${D%/*}/6"
PROBE_DIGEST_FUNCTION=1 expect 0 probe put "" "$T/f" && pass "explicit SHA256 accepted"
alive digest_function
cd_stop
finish
