#!/usr/bin/env bash
# Bad input: hashes that are not 64 hex digits. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start
expect_msg $INVALID_ARGUMENT 'not hexadecimal' probe fmb "" "$(printf 'z%.0s' $(seq 64))/1"
expect_msg $INVALID_ARGUMENT 'got 10 characters' probe fmb "" "abcdef0123/1"
expect_msg $INVALID_ARGUMENT 'got 65 characters' probe ac-get "" "$(printf 'a%.0s' $(seq 65))/1"
expect_msg $INVALID_ARGUMENT 'got 3 characters' probe read "blobs/abc/1"
expect_msg $INVALID_ARGUMENT 'not hexadecimal' probe read "blobs/$(printf 'g%.0s' $(seq 64))/1"
alive hashes
cd_stop
finish
