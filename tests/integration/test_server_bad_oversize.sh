#!/usr/bin/env bash
# Bad input: messages over the gRPC limit and batches over the advertised limit. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start
head -c $((9 * 1024 * 1024)) /dev/urandom >"$T/nine"
expect $RESOURCE_EXHAUSTED probe put "" "$T/nine" && pass "9 MiB message refused: $(head -1 "$T/last.err")"
head -c $((5 * 1024 * 1024)) /dev/urandom >"$T/five"
expect_msg $INVALID_ARGUMENT 'more than max_batch_total_size_bytes' probe put "" "$T/five"
expect_msg $INVALID_ARGUMENT 'more than max_batch_total_size_bytes' probe get "" "$(sha "$T/five")/$((5 * 1024 * 1024))"
expect 0 probe fmb "" "$(digest "$T/nine")" "$(digest "$T/five")" && [ "$(wc -l <"$T/last.out")" -eq 2 ] \
    && pass "nothing stored"
expect 0 probe write "uploads/u/blobs/$(digest "$T/nine")" "$T/nine" chunk=1048576 && pass "large blob fine via ByteStream"
alive oversize
cd_stop
finish
