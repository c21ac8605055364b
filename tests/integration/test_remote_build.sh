#!/usr/bin/env bash
# The shared cache loop with one cairnd and two stores (two machines): A
# builds and uploads; B gets every step as a remote hit without running a
# RUN, and the same image; a changed COPY source reuses the steps before
# it; instance names keep namespaces apart; a read-only token never
# uploads; a server that is down, or killed mid-build, or that serves a
# layer that is not the one it claims, costs a warning, never a wrong image.
. "$(dirname "$0")/remote_lib.sh"
export SOURCE_DATE_EPOCH=1700000000

busybox_base

ctx=$T/ctx
mkdir -p "$ctx/app"
cat >"$ctx/Dockerfile" <<'DF'
FROM busybox:latest
RUN echo RUN-ONE-RAN && mkdir -p /data && echo one > /data/one
COPY app/ /app/
RUN echo RUN-TWO-RAN && cat /app/* > /data/all
ENV X=1
RUN echo RUN-THREE-RAN && true
DF
echo a >"$ctx/app/a"
echo b >"$ctx/app/b"

cd_start
URL=grpc://127.0.0.1:$CD_PORT/main

# 1. A builds with an empty cache: everything runs and is uploaded.
newstore A
build A a1 -t app --cache "$URL" "$ctx"
grep -qx 'RUN-ONE-RAN' "$T/a1" || fail "A did not run step 2"
summary a1 | grep -q ' 0 remote hits, 4 run' || fail "A summary: $(summary a1)"
summary a1 | grep -qE ', [1-9][0-9]* bytes up' || fail "A uploaded nothing: $(summary a1)"
pass "A built and uploaded: $(summary a1)"

# 2. B, a fresh store: every layer step a remote hit, no RUN executed.
newstore B
build B b1 -t app --cache "$URL" "$ctx"
[ "$(grep -c ' ---> Using cache (remote)' "$T/b1")" -eq 4 ] || fail "B remote hits: $(cat "$T/b1")"
grep -qx 'RUN-[A-Z]*-RAN' "$T/b1" && fail "B ran a RUN step: $(grep -x 'RUN-.*' "$T/b1")"
summary b1 | grep -qE '4 remote hits, 0 run, [1-9][0-9]* bytes down, 0 bytes up' || fail "B summary: $(summary b1)"
[ "$(id_of b1)" = "$(id_of a1)" ] && pass "B: all remote hits, same image $(id_of b1)" ||
    fail "B image $(id_of b1) != A image $(id_of a1)"
# The layers B got are the layers A made.
for s in A B; do CAIRN_ROOT="$T/$s" "$CAIRN" inspect app | jq -r '.[0].RootFS.Layers[]' >"$T/layers.$s" || fail "inspect $s"; done
cmp -s "$T/layers.A" "$T/layers.B" || fail "layers differ between A and B"
# B rebuilds: local hits now, the cache is not needed.
build B b2 -t app --cache "$URL" "$ctx"
summary b2 | grep -q '4 local hits, 0 remote hits, 0 run' || fail "B rebuild: $(summary b2)"

# 3. A changes one COPY source and builds (uploading); C, fresh, gets the
# step before it from the cache; and a fresh D with the change but
# without A's upload runs the COPY and everything after it.
echo changed >"$ctx/app/b"
newstore D
build D d1 -t app --cache "$URL" --cache-mode read "$ctx"
awk '/^Step /{s=$2} /Using cache \(remote\)/{print s}' "$T/d1" | tr '\n' ' ' >"$T/d1.hits"
[ "$(cat "$T/d1.hits")" = "2/6 " ] || fail "after the COPY change: remote hits at steps '$(cat "$T/d1.hits")', want '2/6 '"
grep -qx 'RUN-ONE-RAN' "$T/d1" && fail "D re-ran the step before the change"
grep -qx 'RUN-TWO-RAN' "$T/d1" && grep -qx 'RUN-THREE-RAN' "$T/d1" && pass "changed COPY: step before reused, the rest ran" ||
    fail "D did not run the steps after the change: $(cat "$T/d1")"
summary d1 | grep -q ' 0 bytes up' || fail "read mode uploaded: $(summary d1)"
echo b >"$ctx/app/b"

# 4. Instance names are namespaces: nothing from /main is visible in /pr.
newstore E
build E e1 -t app --cache "grpc://127.0.0.1:$CD_PORT/pr" "$ctx"
grep -q 'Using cache (remote)' "$T/e1" && fail "instance /pr saw /main's entries"
summary e1 | grep -q '0 remote hits, 4 run' && pass "instance names kept apart" || fail "E: $(summary e1)"
cd_stop

# 5. Read-only token: hits work, no upload is attempted, no per-step errors.
cat >"$T/tokens" <<'TOK'
ci   write  *
dev  read   *
TOK
cd_start --tokens "$T/tokens"
URL=grpc://127.0.0.1:$CD_PORT/main
build A a2 -t app --no-cache --cache "$URL" --cache-token ci "$ctx"
summary a2 | grep -qE '[1-9][0-9]* bytes up' || fail "write token did not upload: $(summary a2)"
newstore F
echo "extra" >"$ctx/app/c"
CAIRN_CACHE_TOKEN=dev build F f1 -t app --cache "$URL" "$ctx"
grep -q 'Using cache (remote)' "$T/f1" || fail "read token: no remote hit"
grep -q 'read-only for this client' "$T/f1" || fail "read token: no note: $(cat "$T/f1")"
grep -qi 'warning' "$T/f1" && fail "read token: warnings: $(grep -i warning "$T/f1")"
summary f1 | grep -q ' 0 bytes up' && pass "read-only token: hits, no uploads, no errors" || fail "F: $(summary f1)"
grep -c 'UpdateActionResult\|BatchUpdateBlobs' "$CD_LOG" >/dev/null
rm "$ctx/app/c"
cd_stop

# 6. Server down: a warning, everything runs, the image is right.
newstore G
build G g1 -t app --cache "grpc://127.0.0.1:$CD_PORT/main" --cache-timeout 3s "$ctx"
grep -q 'warning: cache .* unusable' "$T/g1" || fail "no warning for a down server: $(cat "$T/g1")"
[ "$(id_of g1)" = "$(id_of a1)" ] && pass "server down: warning, correct image" || fail "G image $(id_of g1)"

# 7. Server killed mid-build: uploads fail as warnings, the image is right.
cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
sed 's/RUN-THREE-RAN && true/RUN-THREE-RAN \&\& sleep 2/' "$ctx/Dockerfile" >"$T/Dockerfile.slow"
newstore H
newstore H2
CAIRN_ROOT="$T/H2" "$CAIRN" build -t app -f "$T/Dockerfile.slow" "$ctx" >"$T/h2" 2>&1 || fail "reference build"
CAIRN_ROOT="$T/H" "$CAIRN" build -t app -f "$T/Dockerfile.slow" --cache "$URL" "$ctx" >"$T/h1" 2>&1 &
bpid=$!
for i in $(seq 1 100); do grep -qx 'RUN-THREE-RAN' "$T/h1" 2>/dev/null && break; sleep 0.1; done
kill -KILL "$CD_PID"; wait "$CD_PID" 2>/dev/null; CD_PID=
rc=0; wait $bpid || rc=$?
[ "$rc" -eq 0 ] || fail "build with the server killed failed: $(cat "$T/h1")"
[ "$(id_of h1)" = "$(id_of h2)" ] && pass "server killed mid-build: build succeeds, same image" ||
    fail "killed mid-build: image $(id_of h1) != $(id_of h2): $(cat "$T/h1")"

# 8. A lying cache: the action result of step 2 names step 3's layer (a
# blob the server has). The client checks the diff_id and runs the step.
# (FROM scratch: `cairn keys` resolves it without the store, so the test
# knows the action digests.)
cd_start
URL=grpc://127.0.0.1:$CD_PORT/main
ctx2=$T/ctx2
mkdir -p "$ctx2"
printf 'FROM scratch\nCOPY one /one\nCOPY two /two\n' >"$ctx2/Dockerfile"
echo one >"$ctx2/one"
echo two >"$ctx2/two"
build A l1 -t lie --cache "$URL" "$ctx2"
CAIRN_ROOT="$T/A" "$CAIRN" keys --json "$ctx2" >"$T/keys.json" || fail "keys --json"
k2=$(jq -r '.[1].key + "/" + (.[1].material_size|tostring)' "$T/keys.json")
k3=$(jq -r '.[2].key + "/" + (.[2].material_size|tostring)' "$T/keys.json")
probe ac-get main "$k2" >"$T/ac2" || fail "ac-get step 2"
probe ac-get main "$k3" >"$T/ac3" || fail "ac-get step 3"
# Step 2's record (its diff_id and media type) beside step 3's blob.
layer3=$(awk '$1=="file" && $2=="layer"{print $3}' "$T/ac3")
mapfile -t props2 < <(awk '$1=="prop" && $2=="layer"{print "prop=layer:" $3}' "$T/ac2")
[ "${#props2[@]}" -eq 2 ] || fail "step 2's result has no layer properties: $(cat "$T/ac2")"
expect 0 probe ac-put main "$k2" "file=layer:$layer3" "${props2[@]}" || fail "planting the lie"
newstore I
build I i1 -t lie --cache "$URL" "$ctx2"
awk '/^Step /{s=$2} /Using cache \(remote\)/{print s}' "$T/i1" | tr '\n' ' ' >"$T/i1.hits"
[ "$(cat "$T/i1.hits")" = "3/3 " ] || fail "lying step: remote hits at '$(cat "$T/i1.hits")', want '3/3 '"
grep -q 'warning: .*diff_id' "$T/i1" || fail "no warning for the wrong layer: $(cat "$T/i1")"
[ "$(id_of i1)" = "$(id_of l1)" ] && pass "wrong layer refused, step ran, correct image" || fail "I image $(id_of i1)"
cd_stop
finish
