#!/usr/bin/env bash
# Bad input: ByteStream resource names with extra or missing segments. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start
echo data >"$T/f"
D=$(digest "$T/f")
expect 0 probe put "" "$T/f"
expect_msg $INVALID_ARGUMENT 'extra segments' probe read "blobs/$D/extra"
expect_msg $INVALID_ARGUMENT 'missing the {hash}/{size}' probe read "blobs/${D%/*}"
expect_msg $INVALID_ARGUMENT 'must be \[instance/\]blobs' probe read "$D"
expect_msg $INVALID_ARGUMENT 'must be \[instance/\]uploads' probe write "uploads/u1/$D" "$T/f"
expect_msg $INVALID_ARGUMENT 'must be \[instance/\]uploads' probe write "blobs/$D" "$T/f"
expect_msg $INVALID_ARGUMENT 'empty path segment' probe read "a//blobs/$D"
expect_msg $UNIMPLEMENTED 'compressed-blobs' probe read "compressed-blobs/zstd/$D"
expect 0 probe read "blobs/$D" && cmp -s "$T/last.out" "$T/f" && pass "well-formed name still reads"
alive resource_names
cd_stop
finish
