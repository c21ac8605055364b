#!/usr/bin/env bash
# cairnd's S3 client (server/s3/) against a real S3 server: OpenStack Swift
# with s3api on 127.0.0.1 (s3_lib.sh), driven by bench_s3_probe. Covers
# the calls the store makes (check, put, put_fd multipart, ranged parallel
# get, head, head_many, delete), how credentials are found, and the errors
# a user must be able to read: wrong secret, unknown key id, missing
# bucket, server gone.
set -euo pipefail
: "${CAIRN_BUILD_DIR:?CAIRN_BUILD_DIR must point at the build directory}"
P=$CAIRN_BUILD_DIR/bench/bench_s3_probe
[ -x "$P" ] || { echo "missing $P (build bench_s3_probe)"; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0}

T=$(mktemp -d "${TMPDIR:-/tmp}/cairn-s3.XXXXXX")
trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/s3_lib.sh"

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { echo "ok: $*"; }
# Every output of the probe is kept, to look for secrets at the end.
n=0
probe() {
    n=$((n + 1))
    "$P" "$@" >"$T/out.$n" 2>"$T/err.$n"
}
out() { cat "$T/out.$n"; }
errtext() { cat "$T/err.$n"; }
sha() { sha256sum "$1" | cut -c1-64; }

s3_start

# --- the bucket, small objects, keys that need encoding -----------------
probe check && pass "check finds the bucket" || fail "check: $(errtext)"

printf 'hello s3\n' >"$T/small"
key='dir/a b+c%d~é=&?.txt'
if probe put "$key" "$T/small" && probe head "$key" && [ "$(out)" = 9 ]; then
    pass "put then head: 9 bytes"
else
    fail "put/head of an encoded key: $(errtext)"
fi
probe get "$key" "$T/small.back" && cmp -s "$T/small" "$T/small.back" &&
    pass "get returns the bytes put" || fail "get of $key: $(errtext)"
# The object is where S3 says it is: curl finds it at the escaped path.
code=$(s3_get_raw 'dir/a%20b%2Bc%25d~%C3%A9%3D%26%3F.txt' "$T/raw")
[ "$code" = 200 ] && cmp -s "$T/small" "$T/raw" &&
    pass "object stored under its exact name" || fail "raw GET: HTTP $code"

# --- 100 MiB: multipart upload, parallel ranged GET ----------------------
head -c $((100 << 20)) /dev/urandom >"$T/big"
want=$(sha "$T/big")
etag_of() {
    s3_curl -I "$S3_ENDPOINT/$S3_BUCKET/$1" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: *//p'
}
# 16 at once: 13 parts of 8 MiB. S3's ETag of a multipart object ends in
# -<parts>.
if probe --part-size $((8 << 20)) --parallel 16 put-fd big "$T/big"; then
    pass "put-fd of 100 MiB"
else
    fail "put-fd: $(errtext)"
fi
case $(etag_of big) in
*-13\"*|*-13) pass "uploaded as 13 parts of 8 MiB" ;;
*) fail "not a 13-part upload: ETag $(etag_of big)" ;;
esac
# 4 at once: parts grow to 25 MiB, so that all 4 are in flight together.
probe --part-size $((8 << 20)) --parallel 4 put-fd big4 "$T/big" ||
    fail "put-fd, 4 at once: $(errtext)"
case $(etag_of big4) in
*-4\"*|*-4) pass "4 at once: 4 parts" ;;
*) fail "4 at once: ETag $(etag_of big4)" ;;
esac
uploads=$(s3_curl "$S3_ENDPOINT/$S3_BUCKET?uploads=")
echo "$uploads" | grep -q '<UploadId>' &&
    fail "an upload is left in progress" || pass "no upload left in progress"
if probe --part-size $((3 << 20)) --parallel 4 get big - &&
    [ "$(out)" = "$want" ]; then
    pass "ranged parallel get: sha256 matches"
else
    fail "ranged get: $(out) $(errtext)"
fi
# Four threads on one client, as cairnd's threads share it (ASan/UBSan
# builds catch a race's damage): every thread gets every byte.
if probe --threads 4 --part-size $((4 << 20)) --parallel 4 get big - &&
    [ "$(out | sort -u)" = "$want" ] && [ "$(out | wc -l)" = 4 ]; then
    pass "4 threads, parallel ranged gets on one client: 4 right sha256s"
else
    fail "threaded get: $(out) $(errtext)"
fi
off=$((5 << 20 | 12345)) len=$((20 << 20 | 777))
part=$(dd if="$T/big" bs=1M skip=$off count=$len iflag=skip_bytes,count_bytes \
    status=none | sha256sum | cut -c1-64)
probe --part-size $((1 << 20)) --parallel 8 get big - $off $len &&
    [ "$(out)" = "$part" ] && pass "get of an odd range across 21 parts" ||
    fail "odd range: $(out) $(errtext)"
probe get big - $(((100 << 20) - 10)) 20 &&
    fail "a range past the end succeeded" ||
    { grep -q -- '-1016' "$T/err.$n" && pass "range past the end: CORRUPT"; } ||
    fail "range past the end: $(errtext)"

# --- HEAD of 1,000 keys, 50 present ---------------------------------------
: >"$T/keys"
: >"$T/want"
for i in $(seq 1 1000); do
    k=$(printf 'many/%04d' "$i")
    echo "$k" >>"$T/keys"
    if [ $((i % 20)) = 0 ]; then
        s3_put_raw "$k" "$T/small"
        echo 1 >>"$T/want"
    else
        echo 0 >>"$T/want"
    fi
done
if probe --parallel 16 head-many "$T/keys" && out | cmp -s - "$T/want"; then
    pass "head-many of 1,000: exactly the 50 present"
else
    fail "head-many: $(out | sort | uniq -c | tr '\n' ' ') $(errtext)"
fi
if probe --threads 3 --parallel 8 head-many "$T/keys" &&
    [ "$(out | grep -c 1)" = 150 ] && [ "$(out | wc -l)" = 3000 ]; then
    pass "head-many in 3 threads at once: 3 x 50 present"
else
    fail "threaded head-many: $(out | sort | uniq -c | tr '\n' ' ') $(errtext)"
fi

# --- delete -----------------------------------------------------------------
probe delete "$key" || fail "delete: $(errtext)"
probe head "$key" && fail "head after delete succeeded" ||
    { grep -q -- '-1004' "$T/err.$n" && pass "deleted: head is NOTFOUND"; } ||
    fail "head after delete: $(errtext)"

# --- credentials ------------------------------------------------------------
secret=$AWS_SECRET_ACCESS_KEY
wrong='Wr0ng-Secret-9f3e'
AWS_SECRET_ACCESS_KEY=$wrong probe put x "$T/small" &&
    fail "a wrong secret was accepted" ||
    { grep -q -- '-1014' "$T/err.$n" && grep -q SignatureDoesNotMatch "$T/err.$n" &&
        pass "wrong secret: AUTH, SignatureDoesNotMatch"; } ||
    fail "wrong secret: $(errtext)"
AWS_SECRET_ACCESS_KEY=$wrong probe check &&
    fail "check with a wrong secret succeeded" ||
    { grep -q SignatureDoesNotMatch "$T/err.$n" &&
        pass "check with a wrong secret names the cause"; } ||
    fail "check, wrong secret: $(errtext)"
# Swift's tempauth answers an unknown user as a bad signature (AWS says
# InvalidAccessKeyId); either way the S3 code is named.
AWS_ACCESS_KEY_ID=nobody:nothere probe check &&
    fail "an unknown key id was accepted" ||
    { grep -q -- '-1014' "$T/err.$n" &&
        grep -Eq 'HTTP 403 (InvalidAccessKeyId|SignatureDoesNotMatch)' "$T/err.$n" &&
        pass "unknown key id: AUTH, S3 code named"; } ||
    fail "unknown key id: $(errtext)"

cat >"$T/creds" <<EOF
# a shared credentials file
[default]
aws_access_key_id = $AWS_ACCESS_KEY_ID
aws_secret_access_key = $wrong

[profile other]
aws_access_key_id=$AWS_ACCESS_KEY_ID
aws_secret_access_key=$secret
EOF
# (An empty AWS_ACCESS_KEY_ID counts as unset, as for the AWS CLI.)
AWS_ACCESS_KEY_ID= AWS_SECRET_ACCESS_KEY= AWS_SHARED_CREDENTIALS_FILE=$T/creds \
    AWS_PROFILE=other probe check &&
    pass "shared credentials file at AWS_PROFILE" ||
    fail "profile other: $(errtext)"
AWS_ACCESS_KEY_ID= AWS_SECRET_ACCESS_KEY= AWS_SHARED_CREDENTIALS_FILE=$T/creds \
    probe check &&
    fail "profile default (wrong secret) was accepted" ||
    { grep -q SignatureDoesNotMatch "$T/err.$n" &&
        pass "shared credentials file: profile default used by default"; } ||
    fail "profile default: $(errtext)"
probe --creds-file "$T/creds" check &&
    fail "the credentials file flag did not beat the environment" ||
    { grep -q SignatureDoesNotMatch "$T/err.$n" &&
        pass "--creds-file beats AWS_* in the environment"; } ||
    fail "--creds-file: $(errtext)"
AWS_PROFILE=nope probe --creds-file "$T/creds" check &&
    fail "a missing profile was accepted" ||
    { grep -q 'no profile \[nope\]' "$T/err.$n" && pass "missing profile named"; } ||
    fail "missing profile: $(errtext)"

# --- a missing bucket -------------------------------------------------------
probe --url s3://no-such-bucket check && fail "a missing bucket was found" ||
    { grep -q -- '-1004' "$T/err.$n" && grep -q 'no-such-bucket not found' "$T/err.$n" &&
        pass "missing bucket: NOTFOUND, named"; } ||
    fail "missing bucket: $(errtext)"

# --- the fixture the tier tests use: corrupt, restart ------------------------
probe put corrupt-me "$T/small" || fail "put corrupt-me: $(errtext)"
s3_corrupt corrupt-me
s3_get_raw corrupt-me "$T/corrupt" >/dev/null
cmp -s "$T/small" "$T/corrupt" && fail "s3_corrupt left the object intact" ||
    pass "s3_corrupt changes the bytes served"
s3_restart
probe get big - && [ "$(out)" = "$want" ] &&
    pass "after a restart every object is back" || fail "after restart: $(errtext)"

# --- the server gone ----------------------------------------------------------
s3_stop
start=$SECONDS
rc=0
timeout 60 "$P" --timeout 5 check >"$T/out.gone" 2>"$T/err.gone" || rc=$?
if [ "$rc" = 1 ] && grep -q -- '-1013' "$T/err.gone"; then
    pass "server gone: RPC error, no hang ($((SECONDS - start)) s)"
else
    fail "server gone: exit $rc: $(cat "$T/err.gone")"
fi

# --- no secret in anything printed -------------------------------------------
if grep -l -e "$secret" -e "$wrong" "$T"/out.* "$T"/err.* 2>/dev/null; then
    fail "a secret was printed"
else
    pass "no secret in any output"
fi

[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all passed"
