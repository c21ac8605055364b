#!/usr/bin/env bash
# Bad input: content that does not hash to its digest. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start
echo "real content" >"$T/f"
OTHER=$(echo other | sha256sum | cut -c1-64)/$(size "$T/f")
expect_msg $INVALID_ARGUMENT 'does not hash' probe put "" "$T/f" "$OTHER"
expect 0 probe fmb "" "$OTHER" && grep -q "${OTHER%/*}" "$T/last.out" && pass "mismatched batch blob not stored"
expect_msg $INVALID_ARGUMENT 'does not hash' probe write "uploads/u/blobs/$OTHER" "$T/f"
expect 0 probe fmb "" "$OTHER" && grep -q "${OTHER%/*}" "$T/last.out" && pass "mismatched stream not stored"
expect $NOT_FOUND probe read "blobs/$OTHER" && pass "nothing readable"
alive wrong_digest
cd_stop
finish
