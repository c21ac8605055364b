#!/usr/bin/env bash
# Bad input: a store that eviction cannot make room in. The call fails with a specific status and message,
# nothing partial becomes visible, and the server stays up.
. "$(dirname "$0")/server_lib.sh"
cd_start --max-size 2M
head -c 3000000 /dev/urandom >"$T/huge"
D=$(digest "$T/huge")
expect_msg $RESOURCE_EXHAUSTED 'store is full' probe write "uploads/u/blobs/$D" "$T/huge" chunk=1048576
expect 0 probe fmb "" "$D" && grep -q "$D" "$T/last.out" && pass "nothing stored"
# Blobs that fit one at a time evict older ones instead of failing.
for i in 1 2 3; do
    head -c 900000 /dev/urandom >"$T/p$i"
    expect 0 probe write "uploads/u$i/blobs/$(digest "$T/p$i")" "$T/p$i" chunk=1048576 || fail "blob $i"
done
expect 0 probe fmb "" "$(digest "$T/p3")" && [ ! -s "$T/last.out" ] && pass "eviction made room for the newest"
alive full_store
cd_stop
finish
