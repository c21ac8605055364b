#!/usr/bin/env bash
# Several cairnd nodes sharing one bucket (a real Swift with s3api on
# 127.0.0.1): what a build uploads through node 1 is in the bucket before
# it is acknowledged; a fresh store building through node 2 gets every
# step remotely with the same image; a third node with an empty disk
# serves everything (and warms: a second read is local); blobs put with
# BatchUpdateBlobs and ByteStream (a multipart-sized one too) read back
# through another node byte for byte; FindMissingBlobs through a node that
# never saw a blob asks the bucket.
. "$(dirname "$0")/s3_nodes_lib.sh"
export SOURCE_DATE_EPOCH=1700000000

ctx=$T/ctx
mkdir -p "$ctx"
{ echo 'FROM scratch'; for i in 1 2 3 4 5; do echo "COPY f$i /f$i"; head -c $((i * 3000)) /dev/urandom | base64 >"$ctx/f$i"; done
  echo 'COPY big /big'; } >"$ctx/Dockerfile"
head -c 3000000 /dev/urandom >"$ctx/big"
STEPS=6
build REF ref -t t "$ctx"

node_start 1
node_start 2

# 1. A builds through node 1: every step runs and is uploaded; each
# action result is an object in the bucket.
build A a1 -t t --cache "grpc://127.0.0.1:${NP[1]}/main" "$ctx"
summary a1 | grep -q "0 remote hits, $STEPS run" || fail "A: $(summary a1)"
s3_curl "$S3_ENDPOINT/$S3_BUCKET?list-type=2&prefix=ac%2Fmain%2F" >"$T/ac.xml"
n_ac=$(grep -o '<Key>ac/main/[0-9a-f]*-[0-9]*</Key>' "$T/ac.xml" | wc -l)
[ "$n_ac" -eq "$STEPS" ] && pass "the bucket holds the $STEPS action results" ||
    fail "the bucket holds $n_ac action results: $(head -c 400 "$T/ac.xml")"

# 2. B, a fresh store, builds through node 2, which has none of it on its
# disk: every step a remote hit, the same image.
build B b1 -t t --cache "grpc://127.0.0.1:${NP[2]}/main" "$ctx"
[ "$(field b1 'remote hits')" -eq "$STEPS" ] && [ "$(id_of b1)" = "$(id_of ref)" ] &&
    pass "through node 2: $STEPS remote hits, same image" || fail "B: $(summary b1)"

# 3. Node 3, an empty disk: serves everything; C gets the same image.
node_start 3 --stats-interval 1s
build C c1 -t t --cache "grpc://127.0.0.1:${NP[3]}/main" "$ctx"
[ "$(field c1 'remote hits')" -eq "$STEPS" ] && [ "$(id_of c1)" = "$(id_of ref)" ] &&
    pass "node 3 (empty disk): $STEPS remote hits, same image" || fail "C: $(summary c1)"

# 4. Blobs both ways through different nodes, byte for byte: a small one
# (BatchUpdateBlobs) and one above the 16 MiB part size (ByteStream, a
# multipart upload) written through node 1, read through node 3.
head -c 5000 /dev/urandom >"$T/small"
head -c 40000000 /dev/urandom >"$T/large"
# A miss (remembered by the negative cache) never hides this node's own
# upload: missing, put, present at once.
expect 0 at 1 fmb main "$(digest "$T/small")" && grep -q "$(sha "$T/small")" "$T/last.out" ||
    fail "small is not missing before its upload"
expect 0 at 1 put main "$T/small" || fail "put small through node 1"
expect 0 at 1 fmb main "$(digest "$T/small")" && [ ! -s "$T/last.out" ] &&
    pass "node 1's own upload is present at once after a miss" || fail "fmb after put: $(cat "$T/last.out")"
expect 0 at 1 write "main/uploads/u1/blobs/$(digest "$T/large")" "$T/large" chunk=1048576 ||
    fail "write large through node 1"
code=$(s3_get_raw "$(bucket_key cas main "$T/large")" "$T/large.raw")
[ "$code" = 200 ] && cmp -s "$T/large.raw" "$T/large" && pass "the bucket holds the 40 MB blob whole" ||
    fail "the bucket's copy of the 40 MB blob: HTTP $code"
expect 0 at 3 fmb main "$(digest "$T/small")" "$(digest "$T/large")" "$(sha "$T/small" | tr 0-9a-f a-f0-9)/5000" &&
    [ "$(wc -l <"$T/last.out")" -eq 1 ] && grep -q "/5000" "$T/last.out" && ! grep -q "$(sha "$T/small")" "$T/last.out" &&
    pass "FindMissingBlobs through node 3: bucket blobs present, the unknown one missing" ||
    fail "fmb through node 3: $(cat "$T/last.out")"
expect 0 at 3 get main "$(digest "$T/small")" && cmp -s "$T/last.out" "$T/small" &&
    pass "BatchReadBlobs through node 3 reads the blob node 1 wrote" || fail "get small through node 3"
expect 0 at 3 read "main/blobs/$(digest "$T/large")" && cmp -s "$T/last.out" "$T/large" &&
    pass "ByteStream Read through node 3 reads the 40 MB blob node 1 wrote" || fail "read large through node 3"
# Now on node 3's disk (the streaming reader stores it after the read
# ends, so wait for the counters to say so): read again with the bucket
# gone.
for i in $(seq 1 600); do
    fb=$(grep 'bucket (periodic)' "${NL[3]}" | tail -1 | grep -o 'fill_bytes=[0-9]*' | cut -d= -f2)
    [ "${fb:-0}" -ge 40000000 ] && break
    sleep 0.1
done
[ "${fb:-0}" -ge 40000000 ] || fail "node 3 never stored the 40 MB blob: $(grep 'bucket (periodic)' "${NL[3]}" | tail -1)"
s3_stop
expect 0 at 3 read "main/blobs/$(digest "$T/large")" && cmp -s "$T/last.out" "$T/large" &&
    pass "node 3 warmed up: the blob reads back with the bucket stopped" || fail "node 3 not warm"
s3_restart

# Three callers reading the same cold blob at once through node 4: each
# gets every byte right (they may share one fetch).
node_start 4
for i in 1 2 3; do
    at 4 read "main/blobs/$(digest "$T/large")" >"$T/par$i" 2>"$T/par$i.err" &
    eval "PAR$i=\$!"
done
ok=0
for i in 1 2 3; do
    eval "wait \$PAR$i" && cmp -s "$T/par$i" "$T/large" && ok=$((ok + 1))
done
[ "$ok" -eq 3 ] && pass "three concurrent cold reads through node 4 are all whole" ||
    fail "concurrent cold reads: $ok of 3 whole; $(cat "$T"/par*.err | head -3)"

for n in 1 2 3 4; do node_stop $n; done
echo "node 4: $(bucket_stat "${NL[4]}" | grep -o 'fills=.*')"
acf2=$(bucket_stat "${NL[2]}" | grep -o 'ac_fills=[0-9]*' | cut -d= -f2)
fills2=$(bucket_stat "${NL[2]}" | grep -o ' fills=[0-9]*' | cut -d= -f2)
[ "${acf2:-0}" -eq "$STEPS" ] && [ "${fills2:-0}" -ge 1 ] && pass "node 2 filled its disk from the bucket ($(bucket_stat "${NL[2]}"))" ||
    fail "node 2's bucket counters: $(bucket_stat "${NL[2]}")"
s3_stop
finish
