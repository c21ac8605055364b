#!/usr/bin/env bash
# Big ByteStream uploads through a node stream to the bucket while they
# arrive (a multipart upload, part by part; docs/storage.md "Two tiers"),
# against a real Swift with s3api on 127.0.0.1:
# 1. a 40 MiB blob (3 parts of 16 MiB): acknowledged, the object in the
#    bucket with its size, read back byte for byte through another node;
#    no multipart upload left in progress;
# 2. a client killed mid-stream (kill -9 of the probe after 36 MiB): the
#    parts already sent are an upload in progress while the client is
#    gone; once the node drops the abandoned upload, no object and no
#    upload in progress remain in the bucket;
# 3. an upload whose bytes do not match its digest: refused, and neither
#    an object nor an upload in progress is left in the bucket;
# 4. BatchUpdateBlobs of 200 small blobs (their PUTs in parallel): every
#    one in the bucket and read back through another node;
# 5. /metrics has the bucket's counters: what was put, and no errors;
# 6. a node stopped with a parked streamed upload aborts it, exits clean.
. "$(dirname "$0")/s3_nodes_lib.sh"

node_start 1 --upload-idle-timeout 2s --metrics-listen 127.0.0.1:0
MP=$(sed -n 's/^metrics on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$T/cairnd$CD_N.out")
node_start 2

# uploads_of KEY: the in-progress multipart uploads of KEY (ListMultipartUploads).
uploads_of() {
    s3_curl "$S3_ENDPOINT/$S3_BUCKET?prefix=$(echo "$1" | sed 's,/,%2F,g')&uploads=" >"$T/uploads.xml"
    grep -o "<Key>$1</Key>" "$T/uploads.xml" | wc -l
}
# object_size KEY: the object's Content-Length, or 404.
object_size() {
    s3_curl -I "$S3_ENDPOINT/$S3_BUCKET/$1" -o "$T/head.out" -w '%{http_code}' >"$T/head.code"
    if [ "$(cat "$T/head.code")" = 200 ]; then
        tr -d '\r' <"$T/head.out" | sed -n 's/^[Cc]ontent-[Ll]ength: //p'
    else
        cat "$T/head.code"
    fi
}

# 1. A whole big upload.
head -c $((40 << 20)) /dev/urandom >"$T/big"
key=$(bucket_key cas main "$T/big")
expect 0 at 1 write "main/uploads/u1/blobs/$(digest "$T/big")" "$T/big" chunk=1048576 &&
    pass "40 MiB written through node 1" || fail "40 MiB write"
[ "$(object_size "$key")" = $((40 << 20)) ] && pass "the object is in the bucket" ||
    fail "object $key: $(object_size "$key")"
[ "$(uploads_of "$key")" -eq 0 ] || fail "an upload in progress after the commit: $(head -c 400 "$T/uploads.xml")"
expect 0 at 2 read "main/blobs/$(digest "$T/big")" && cmp -s "$T/last.out" "$T/big" &&
    pass "read back through node 2" || fail "read back through node 2"

# 2. A client killed mid-stream.
head -c $((40 << 20)) /dev/urandom >"$T/killed"
key=$(bucket_key cas main "$T/killed")
at 1 write "main/uploads/u2/blobs/$(digest "$T/killed")" "$T/killed" count=$((36 << 20)) \
    chunk=1048576 finish=0 hold=120 >"$T/killed.out" 2>&1 &
client=$!
seen=0
for _ in $(seq 200); do
    [ "$(uploads_of "$key")" -gt 0 ] && { seen=1; break; }
    sleep 0.1
done
[ "$seen" -eq 1 ] && pass "parts go up while the client streams" ||
    fail "no upload in progress while the client streamed: $(head -c 400 "$T/uploads.xml")"
kill -KILL "$client"
wait "$client" 2>/dev/null
gone=0
for _ in $(seq 150); do
    [ "$(uploads_of "$key")" -eq 0 ] && { gone=1; break; }
    sleep 0.1
done
[ "$gone" -eq 1 ] && pass "the killed client's upload is aborted in the bucket" ||
    fail "upload still in progress: $(head -c 400 "$T/uploads.xml")"
[ "$(object_size "$key")" = 404 ] && pass "no object for the killed upload" ||
    fail "object of the killed upload: $(object_size "$key")"

# 3. Bytes that do not match the digest: refused, nothing left.
head -c $((40 << 20)) /dev/urandom >"$T/other"
cp "$T/killed" "$T/claimed"
key=$(bucket_key cas main "$T/claimed")
expect 3 at 1 write "main/uploads/u3/blobs/$(digest "$T/claimed")" "$T/other" chunk=1048576 &&
    pass "a corrupt upload is refused" || fail "corrupt upload: $(cat "$T/last.out")"
[ "$(object_size "$key")" = 404 ] && pass "no object for the corrupt upload" ||
    fail "object of the corrupt upload: $(object_size "$key")"
[ "$(uploads_of "$key")" -eq 0 ] && pass "no upload in progress for the corrupt upload" ||
    fail "upload of the corrupt upload in progress: $(head -c 400 "$T/uploads.xml")"

# 4. BatchUpdateBlobs of 200 small blobs.
mkdir -p "$T/small"
for i in $(seq 1 200); do head -c 1024 /dev/urandom >"$T/small/$i"; done
expect 0 at 1 put-many main "$T"/small/* && pass "200 blobs in one BatchUpdateBlobs" ||
    fail "batch update"
bad=0
for i in 1 57 200; do
    [ "$(object_size "$(bucket_key cas main "$T/small/$i")")" = 1024 ] || bad=1
    at 2 read "main/blobs/$(digest "$T/small/$i")" >"$T/back" 2>/dev/null && cmp -s "$T/back" "$T/small/$i" || bad=1
done
[ "$bad" -eq 0 ] && pass "the batch's blobs are in the bucket and read back" || fail "batch blobs missing"

# 5. The bucket's counters in /metrics: the 40 MiB blob and the 200 small
# ones were put; the killed and the corrupt uploads were not.
curl -s --max-time 10 "http://127.0.0.1:$MP/metrics" >"$T/metrics"
metric() { sed -n "s/^$1 //p" "$T/metrics"; }
[ "$(metric cairnd_bucket_puts_total)" = 201 ] &&
    [ "$(metric cairnd_bucket_put_bytes_total)" = $(((40 << 20) + 200 * 1024)) ] &&
    [ "$(metric cairnd_bucket_errors_total)" = 0 ] &&
    pass "/metrics counts 201 bucket puts, no errors" ||
    fail "bucket metrics: $(grep '^cairnd_bucket' "$T/metrics" | tr '\n' ' ')"

# 6. A node stopped while a killed client's upload is parked: the upload
# is aborted on the way out (and the exit is clean: no sanitizer report).
node_start 3 --upload-idle-timeout 1h
head -c $((40 << 20)) /dev/urandom >"$T/parked"
key=$(bucket_key cas main "$T/parked")
at 3 write "main/uploads/u4/blobs/$(digest "$T/parked")" "$T/parked" count=$((36 << 20)) \
    chunk=1048576 finish=0 hold=120 >/dev/null 2>&1 &
client=$!
for _ in $(seq 200); do
    [ "$(uploads_of "$key")" -gt 0 ] && break
    sleep 0.1
done
kill -KILL "$client"
wait "$client" 2>/dev/null
sleep 0.5
node_stop 3
node_stop 1
node_stop 2
[ "$(uploads_of "$key")" -eq 0 ] && [ "$(object_size "$key")" = 404 ] &&
    pass "a parked upload is aborted when its node stops" ||
    fail "after the stop: $(object_size "$key"), $(head -c 400 "$T/uploads.xml")"
finish
