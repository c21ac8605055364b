#!/usr/bin/env bash
# The end of a build with --cache. A build that succeeded leaves gRPC up
# and exits (cairn_cache_leave, docs/build.md), so:
# 1. its uploads are all done before it exits: a fresh store then hits
#    every step remotely;
# 2. a fresh all-hit build exits 0 with the same image, and its store
#    has the image (under ASan the leak check at exit runs with gRPC's
#    threads alive and must find nothing: a report fails the exit status);
# 3. a failure after the image's commit (a --metadata-file that cannot be
#    written, a --push to a port nothing listens on) still gives a
#    non-zero exit and its error, with the full teardown, and the image
#    stays built.
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000

busybox_base
cd_start
URL="grpc://127.0.0.1:$CD_PORT/exit"

ctx=$T/ctx
mkdir -p "$ctx"
echo hello >"$ctx/greeting.txt"
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox:latest
RUN mkdir -p /data && echo built >/data/base
COPY greeting.txt /data/
RUN cat /data/greeting.txt >/data/copy
CMD ["cat", "/data/copy"]
DF

# 1. Misses upload; the process exits only once they are done.
newstore A
build A a1 --progress plain -t ex --cache "$URL" "$ctx"
want=$(id_of a1)
[ -n "$want" ] || { fail "the first build printed no image ID"; finish; }
summary a1 | grep -qE '[1-9][0-9]* bytes up' || fail "A uploaded nothing: $(summary a1)"

# 2. A fresh store: every step a remote hit, exit 0, the same image.
newstore B
build B b1 --progress plain -t ex --cache "$URL" "$ctx"
summary b1 | grep -q '3 remote hits, 0 run' ||
    fail "uploads were not all done before A exited: $(summary b1)"
assert_eq "$(id_of b1)" "$want" "fresh all-hit build's image"
CAIRN_ROOT=$T/B "$CAIRN" images | grep -q '^ex ' || fail "B's store lacks the image: $(CAIRN_ROOT=$T/B "$CAIRN" images)"
grep -qi 'leak\|sanitizer' "$T/b1" && fail "B: $(cat "$T/b1")"
pass "a build exits after its uploads, all-hit build exits 0 with its image"

# 3. Failures after the commit still fail the command.
newstore C
rc=0
CAIRN_ROOT=$T/C "$CAIRN" build --progress plain -t ex --cache "$URL" \
    --metadata-file "$T/no/such/dir/meta.json" "$ctx" >"$T/c1" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "an unwritable --metadata-file exited 0: $(cat "$T/c1")"
grep -q 'meta.json' "$T/c1" || fail "no error naming the metadata file: $(cat "$T/c1")"
CAIRN_ROOT=$T/C "$CAIRN" images | grep -q '^ex ' || fail "C's image was not committed"
grep -qi 'leak\|sanitizer' "$T/c1" && fail "C: $(cat "$T/c1")"

# Port 1 on loopback: nothing listens there, the push is refused.
newstore D
rc=0
CAIRN_ROOT=$T/D "$CAIRN" build --progress plain --push -t "127.0.0.1:1/ex" \
    --cache "$URL" "$ctx" >"$T/d1" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "a push to a closed port exited 0: $(cat "$T/d1")"
grep -q 'Successfully built' "$T/d1" || fail "D did not build: $(cat "$T/d1")"
grep -qi 'leak\|sanitizer' "$T/d1" && fail "D: $(cat "$T/d1")"
pass "failures after the commit exit non-zero with their error"
finish
