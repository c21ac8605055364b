#!/usr/bin/env bash
# Bad input: negative and absurd sizes. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start
H=$(echo x | sha256sum | cut -c1-64)
expect_msg $INVALID_ARGUMENT 'size -1 is negative' probe fmb "" "$H/-1"
expect_msg $INVALID_ARGUMENT 'exceeds the largest blob' probe fmb "" "$H/4611686018427387904"
expect_msg $INVALID_ARGUMENT 'not a non-negative decimal' probe read "blobs/$H/-5"
expect_msg $INVALID_ARGUMENT 'not a valid size' probe read "blobs/$H/99999999999999999999999"
expect_msg $INVALID_ARGUMENT 'exceeds the largest blob' probe write "uploads/u/blobs/$H/4611686018427387904" /dev/null
alive sizes
cd_stop
finish
