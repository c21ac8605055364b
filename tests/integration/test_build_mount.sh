#!/usr/bin/env bash
# RUN --mount (bind, cache, tmpfs, secret, ssh), RUN --network and
# --security: what the command sees, that nothing mounted reaches a layer
# (checked in the tars `cairn save` writes), that a bind mount is keyed by
# the content mounted, and the errors for what cairn refuses.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"
mkdir -p "$T/other/etc/other"
echo "from the other image" > "$T/other/etc/other/note.txt"
tar -C "$T/other" -cf "$T/other.tar" .
"$CAIRN" import "$T/other.tar" other:1 >/dev/null || fail "import other"

# unpack IMAGE DIR: the image's layers extracted into DIR, their listing
# (tar tv) into DIR.list.
unpack() {
    local img=$1 dir=$2
    rm -rf "$dir" "$dir.save" && mkdir -p "$dir" "$dir.save"
    "$CAIRN" save "$img" -o "$dir.tar" || fail "save $img"
    tar -C "$dir.save" -xf "$dir.tar"
    : > "$dir.list"
    for l in $(jq -r '.[0].Layers[]' "$dir.save/manifest.json"); do
        tar -C "$dir" --numeric-owner -xf "$dir.save/$l" || fail "extract $l of $img"
        tar --numeric-owner -tvf "$dir.save/$l" >> "$dir.list"
    done
}

# build NAME CTX [args...]: builds into $T/NAME.out, failing the test on error.
build() {
    local name=$1 ctx=$2
    shift 2
    "$CAIRN" build --progress plain "$@" "$ctx" > "$T/$name.out" 2>&1 ||
        { cat "$T/$name.out"; fail "build $name"; }
}

# build_fails NAME CTX PATTERN [args...]: the build must fail and its
# output match PATTERN (grep -E).
build_fails() {
    local name=$1 ctx=$2 pat=$3
    shift 3
    if "$CAIRN" build --progress plain "$@" "$ctx" > "$T/$name.out" 2>&1; then
        cat "$T/$name.out"
        fail "$name: the build succeeded"
    fi
    grep -qE -- "$pat" "$T/$name.out" || fail "$name: expected /$pat/, got: $(cat "$T/$name.out")"
}

# 1. Bind mounts from the context, a stage and an image.
ctx="$T/ctx"
mkdir -p "$ctx/src/sub" "$ctx/other"
echo "hello" > "$ctx/src/a.txt"
echo "deep" > "$ctx/src/sub/d.txt"
echo "outside the mount" > "$ctx/other/b.txt"
echo "ignored" > "$ctx/src/ignored.txt"
printf 'src/ignored.txt\n' > "$ctx/.dockerignore"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox AS builder
RUN echo "built in a stage" > /out.txt

FROM busybox
RUN --mount=source=src,target=/m cat /m/a.txt /m/sub/d.txt && echo "bind-run-1"
RUN --mount=target=/ctx,source=src ! touch /ctx/x 2>/dev/null && ! test -e /ctx/ignored.txt && echo "ro-and-ignored-ok"
RUN --mount=source=src,target=/w,rw echo scribble > /w/new.txt && echo more >> /w/a.txt && cat /w/new.txt
RUN --mount=from=builder,source=/out.txt,target=/in/out.txt cat /in/out.txt
RUN --mount=from=other:1,source=etc/other,target=/o cat /o/note.txt
RUN --mount=source=src/a.txt,target=/etc/a.txt cat /etc/a.txt && echo file-bind-ok
RUN --mount=from=builder,target=/b,rw echo x > /b/out.txt && echo y > /b/new.txt && cat /b/out.txt
RUN --mount=from=builder,source=/out.txt,target=/again.txt cat /again.txt
RUN echo done > /done.txt
WORKDIR /work
RUN --mount=target=.,source=src cat a.txt > /dev/null && echo "workdir-bind-ok"
DF
build b1 "$ctx" -t mount:1
grep -q '^hello$' "$T/b1.out" || fail "bind mount content not visible"
grep -q '^deep$' "$T/b1.out" || fail "bind mount subdirectory not visible"
grep -q '^ro-and-ignored-ok$' "$T/b1.out" || fail "bind mount writable or .dockerignore'd file visible: $(cat "$T/b1.out")"
grep -q '^scribble$' "$T/b1.out" || fail "rw bind mount not writable"
grep -q '^built in a stage$' "$T/b1.out" || fail "bind mount from a stage"
grep -q '^from the other image$' "$T/b1.out" || fail "bind mount from an image"
grep -q '^file-bind-ok$' "$T/b1.out" || fail "bind mount of a single file"
grep -q '^x$' "$T/b1.out" || fail "rw bind mount of a stage not writable"
assert_eq "$(grep -c '^built in a stage$' "$T/b1.out")" 2 "rw writes to a stage's mount were discarded"
# rw writes are discarded: the context is untouched.
[ ! -e "$ctx/src/new.txt" ] || fail "rw bind mount wrote into the context"
assert_eq "$(cat "$ctx/src/a.txt")" "hello" "rw bind mount changed a context file"
unpack mount:1 "$T/img1"
for p in m ctx w in o in/out.txt etc/a.txt b again.txt; do
    grep -qE " $p/?\$" "$T/img1.list" && fail "mount target /$p reached a layer: $(grep " $p" "$T/img1.list")"
done
[ -f "$T/img1/done.txt" ] || fail "the last RUN's file is missing"
grep -q '^workdir-bind-ok$' "$T/b1.out" || fail "bind mount at WORKDIR"
# WORKDIR creates its directory even when a mount covers it (Docker's
# rule); nothing of the mount is in it.
[ -d "$T/img1/work" ] || fail "WORKDIR /work missing when a mount covered it"
assert_eq "$(ls -A "$T/img1/work" | wc -l)" 0 "files of the mount at WORKDIR in the image"
[ ! -e "$T/img1/etc/a.txt" ] || fail "a file bind mount target stayed in the image"

# 2. The key covers what a bind mount shows: a change outside the mounted
# subtree keeps the step cached, a change inside reruns it.
build b2 "$ctx" -t mount:1
grep -q '^bind-run-1$' "$T/b2.out" && fail "unchanged bind mount reran"
echo "changed outside" > "$ctx/other/b.txt"
build b3 "$ctx" -t mount:1
grep -q '^bind-run-1$' "$T/b3.out" && fail "a change outside the mounted source reran the step"
echo "changed inside" > "$ctx/src/sub/d.txt"
build b4 "$ctx" -t mount:1
grep -q '^bind-run-1$' "$T/b4.out" || fail "a change in the mounted source did not rerun the step: $(cat "$T/b4.out")"
grep -q '^changed inside$' "$T/b4.out" || fail "the rerun did not see the new content"
# An ignored file is no input either.
echo "ignored but changed" > "$ctx/src/ignored.txt"
build b5 "$ctx" -t mount:1
grep -q '^bind-run-1$' "$T/b5.out" && fail "a .dockerignore'd file under the mount reran the step"

# Without a .dockerignore a read-only mount binds the context as it is
# (no copy): still read-only, still keyed by content, rw still private.
dctx="$T/direct"
mkdir -p "$dctx/lib"
echo "direct v1" > "$dctx/lib/v.txt"
ln -s v.txt "$dctx/lib/link.txt"
cat > "$dctx/Dockerfile" <<'DF'
FROM busybox
RUN --mount=source=lib,target=/lib2 cat /lib2/link.txt && ! touch /lib2/x 2>/dev/null && echo "direct-ran"
RUN --mount=source=lib,target=/lib3,rw echo scratch > /lib3/v.txt && cat /lib3/v.txt
DF
build d1 "$dctx"
grep -q '^direct v1$' "$T/d1.out" || fail "direct bind content: $(cat "$T/d1.out")"
grep -q '^direct-ran$' "$T/d1.out" || fail "direct bind writable"
assert_eq "$(cat "$dctx/lib/v.txt")" "direct v1" "rw bind wrote through to the context"
echo "direct v2" > "$dctx/lib/v.txt"
build d2 "$dctx"
grep -q '^direct v2$' "$T/d2.out" || fail "direct bind: an edit did not rerun the step: $(cat "$T/d2.out")"

# 3. Cache mounts: persistent, shared by id, never in a layer, kept by prune.
cctx="$T/cache"
mkdir -p "$cctx"
cat > "$cctx/Dockerfile" <<'DF'
FROM busybox
RUN --mount=type=cache,target=/var/cache/app echo run >> /var/cache/app/log && echo "runs=$(wc -l < /var/cache/app/log)"
RUN --mount=type=cache,target=/other,id=/var/cache/app echo "shared=$(wc -l < /other/log)"
RUN --mount=type=cache,target=/owned,id=owned,uid=1000,gid=2000,mode=0770 stat -c 'cache-owner=%u:%g:%a' /owned
DF
build c1 "$cctx" --no-cache -t cache:1
grep -q '^runs=1$' "$T/c1.out" || fail "first cache run: $(cat "$T/c1.out")"
grep -q '^shared=1$' "$T/c1.out" || fail "cache id shared between targets"
grep -q '^cache-owner=1000:2000:770$' "$T/c1.out" || fail "cache uid/gid/mode: $(grep cache-owner "$T/c1.out")"
build c2 "$cctx" --no-cache -t cache:1
grep -q '^runs=2$' "$T/c2.out" || fail "cache mount did not persist between builds: $(cat "$T/c2.out")"
unpack cache:1 "$T/cimg"
grep -qE ' (var/cache/app|other|owned)/?' "$T/cimg.list" && fail "cache mount reached a layer: $(cat "$T/cimg.list")"
"$CAIRN" prune -f > /dev/null || fail "prune"
build c3 "$cctx" --no-cache -t cache:1
grep -q '^runs=3$' "$T/c3.out" || fail "prune deleted a cache mount: $(cat "$T/c3.out")"
# cairn builder du lists them; builder prune removes them (docker builder
# prune), except one a build holds.
"$CAIRN" builder du > "$T/du.out" || fail "builder du"
grep -qE '^/var/cache/app +false +[0-9.]+kB$' "$T/du.out" || fail "builder du: $(cat "$T/du.out")"
grep -qE '^owned +false ' "$T/du.out" || fail "builder du owned: $(cat "$T/du.out")"
# cairn du counts them too, as Docker's "Build Cache" row: none held now,
# all reclaimable by builder prune.
ncache=$(($(wc -l < "$T/du.out") - 2)) # less the header and the Total line
"$CAIRN" du | awk '$1 == "Build" { print $3, $4 }' > "$T/sysdu.out"
assert_eq "$(cat "$T/sysdu.out")" "$ncache 0" "du's Build cache row (total, active)"
printf 'FROM busybox\nRUN --mount=type=cache,target=/hold,id=held touch /hold/f && sleep 3\n' > "$T/hold.Dockerfile"
"$CAIRN" build --progress plain -f "$T/hold.Dockerfile" "$cctx" > "$T/hold.out" 2>&1 & hold=$!
for _ in $(seq 50); do [ -e "$CAIRN_ROOT"/cache-mounts/*/data/f ] 2>/dev/null && break; sleep 0.1; done
"$CAIRN" builder prune -f > "$T/bprune.out" || fail "builder prune"
wait $hold || { cat "$T/hold.out"; fail "the build holding a cache mount"; }
grep -q '^1 cache mount in use by a build, kept$' "$T/bprune.out" || fail "builder prune: $(cat "$T/bprune.out")"
"$CAIRN" builder du > "$T/du2.out" || fail "builder du after prune"
assert_eq "$(grep -c '^held ' "$T/du2.out")" 1 "the held cache mount survived builder prune"
assert_eq "$(grep -cE '^(/var/cache/app|owned) ' "$T/du2.out")" 0 "builder prune removed the idle ones"
build c4 "$cctx" --no-cache -t cache:1
grep -q '^runs=1$' "$T/c4.out" || fail "a pruned cache mount starts empty: $(cat "$T/c4.out")"

# A cache seeded from a stage: a new cache starts as a copy of from's
# source; an existing one keeps its own content.
cat > "$cctx/Dockerfile.seed" <<'DF'
FROM busybox AS seed
RUN mkdir -p /seed/sub && echo seeded > /seed/sub/s.txt
FROM busybox
RUN --mount=type=cache,id=seeded,target=/c,from=seed,source=/seed cat /c/sub/s.txt && echo again > /c/sub/s.txt
DF
build c5 "$cctx" -f "$cctx/Dockerfile.seed" --no-cache
grep -q '^seeded$' "$T/c5.out" || fail "cache mount from= not seeded: $(cat "$T/c5.out")"
build c6 "$cctx" -f "$cctx/Dockerfile.seed" --no-cache
grep -q '^again$' "$T/c6.out" || fail "a seeded cache was seeded again: $(cat "$T/c6.out")"

# 4. sharing=locked: two builds at once never use the cache together;
# sharing=private gives the second one its own directory.
lctx="$T/locked"
mkdir -p "$lctx"
cat > "$lctx/Dockerfile" <<'DF'
FROM busybox
ARG N
RUN --mount=type=cache,target=/c,id=lk,sharing=locked if [ -e /c/busy ]; then echo CONFLICT; exit 1; fi; touch /c/busy; sleep 1; rm /c/busy; echo "locked-$N"
DF
"$CAIRN" build --progress plain --build-arg N=1 "$lctx" > "$T/l1.out" 2>&1 & p1=$!
"$CAIRN" build --progress plain --build-arg N=2 "$lctx" > "$T/l2.out" 2>&1 & p2=$!
wait $p1 || { cat "$T/l1.out"; fail "locked build 1"; }
wait $p2 || { cat "$T/l2.out"; fail "locked build 2"; }
grep -q '^CONFLICT$' "$T/l1.out" "$T/l2.out" && fail "sharing=locked let two runs in at once"
grep -q '^locked-1$' "$T/l1.out" && grep -q '^locked-2$' "$T/l2.out" || fail "locked builds did not both run"
sed -i 's/sharing=locked/sharing=private/; s/id=lk/id=pv/; s/sleep 1; rm \/c\/busy/sleep 1/' "$lctx/Dockerfile"
"$CAIRN" build --progress plain --build-arg N=1 "$lctx" > "$T/p1.out" 2>&1 & p1=$!
sleep 0.3
"$CAIRN" build --progress plain --build-arg N=2 "$lctx" > "$T/p2.out" 2>&1 & p2=$!
wait $p1 || { cat "$T/p1.out"; fail "private build 1"; }
wait $p2 || { cat "$T/p2.out"; fail "private build 2 found the first one's cache directory"; }

# 5. tmpfs: an empty tmpfs of the size given, not in the layer.
tctx="$T/tmpfs"
mkdir -p "$tctx"
cat > "$tctx/Dockerfile" <<'DF'
FROM busybox
RUN --mount=type=tmpfs,target=/scratch,size=2m grep -q ' /scratch tmpfs ' /proc/mounts && echo "entries=$(ls -A /scratch | wc -l)" && df -k /scratch | tail -1 | awk '{print "kb=" $2}' && echo x > /scratch/f
DF
build t1 "$tctx" -t tmpfs:1
grep -q '^entries=0$' "$T/t1.out" || fail "tmpfs not empty: $(cat "$T/t1.out")"
grep -q '^kb=2048$' "$T/t1.out" || fail "tmpfs size: $(cat "$T/t1.out")"
unpack tmpfs:1 "$T/timg"
grep -q 'scratch' "$T/timg.list" && fail "tmpfs target reached a layer"

# 6. Secrets: readable, never in a layer, the history, inspect or the store.
sctx="$T/secret"
mkdir -p "$sctx"
printf 's3cr3t-v4lue-%s' "$$" > "$T/token"
cat > "$sctx/Dockerfile" <<'DF'
FROM busybox
RUN --mount=type=secret,id=token echo "secret-sum=$(md5sum < /run/secrets/token | cut -c1-32)" && stat -c 'secret-mode=%a' /run/secrets/token
RUN --mount=type=secret,id=token,target=/home/key,mode=0440,uid=1000 stat -c 'key=%a:%u' /home/key
RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo absent-ok
RUN --mount=type=secret,id=envtok cat /run/secrets/envtok | wc -c
DF
MY_TOKEN="env-secret" build s1 "$sctx" -t secret:1 --compression none \
    --secret "id=token,src=$T/token" --secret id=envtok,env=MY_TOKEN
grep -q "^secret-sum=$(md5sum < "$T/token" | cut -c1-32)\$" "$T/s1.out" || fail "secret not readable: $(cat "$T/s1.out")"
grep -q '^secret-mode=400$' "$T/s1.out" || fail "secret default mode"
grep -q '^key=440:1000$' "$T/s1.out" || fail "secret target/mode/uid: $(cat "$T/s1.out")"
grep -q '^absent-ok$' "$T/s1.out" || fail "a missing optional secret"
grep -q '^10$' "$T/s1.out" || fail "secret from env"
grep -q "s3cr3t-v4lue" "$T/s1.out" && fail "the secret reached the build output"
grep -rq "s3cr3t-v4lue" "$CAIRN_ROOT" && fail "the secret reached the store"
"$CAIRN" history --no-trunc secret:1 | grep -q "s3cr3t" && fail "the secret reached the history"
"$CAIRN" inspect secret:1 | grep -q "s3cr3t" && fail "the secret reached inspect"
unpack secret:1 "$T/simg"
grep -qE ' (run|home/key)' "$T/simg.list" && fail "secret target reached a layer: $(cat "$T/simg.list")"
# A required secret that was not given fails the step, naming it.
printf 'FROM busybox\nRUN --mount=type=secret,id=need,required echo no\n' > "$sctx/Dockerfile"
build_fails s2 "$sctx" 'step 2/2 \(.*Dockerfile:2 RUN\).*secret need not found'
build_fails s3 "$sctx" '--secret.*not set' --secret id=x,env=CAIRN_TEST_UNSET_VAR

# 7. ssh: nothing is forwarded; required fails, optional is skipped.
xctx="$T/ssh"
mkdir -p "$xctx"
printf 'FROM busybox\nRUN --mount=type=ssh test ! -e /run/buildkit/ssh_agent.0 && echo ssh-skipped\n' > "$xctx/Dockerfile"
build x1 "$xctx"
grep -q '^ssh-skipped$' "$T/x1.out" || fail "optional ssh mount"
printf 'FROM busybox\nRUN --mount=type=ssh,required=true echo no\n' > "$xctx/Dockerfile"
build_fails x2 "$xctx" 'step 2/2 \(.*Dockerfile:2 RUN\).*type=ssh.*forwards no SSH agent'

# 8. --network per step and --security.
nctx="$T/net"
mkdir -p "$nctx"
cat > "$nctx/Dockerfile" <<'DF'
FROM busybox
RUN --network=none echo "ifaces=$(tail -n +3 /proc/net/dev | wc -l)"
RUN --network=host echo "hostifaces=$(tail -n +3 /proc/net/dev | wc -l)"
RUN --security=sandbox echo sandbox-ok
DF
build n1 "$nctx"
grep -q '^ifaces=1$' "$T/n1.out" || fail "--network=none: $(grep ifaces "$T/n1.out")"
host_ifaces=$(tail -n +3 /proc/net/dev | wc -l)
grep -q "^hostifaces=$host_ifaces\$" "$T/n1.out" || fail "--network=host: $(grep hostifaces "$T/n1.out")"
grep -q '^sandbox-ok$' "$T/n1.out" || fail "--security=sandbox"
build n2 "$nctx" --network none --no-cache
grep -q "^hostifaces=$host_ifaces\$" "$T/n2.out" || fail "RUN --network=host under build --network none"

# 9. Bad flags: a clear error naming the line, or the step, and the flag.
bad() {
    local name=$1 line=$2 pat=$3
    mkdir -p "$T/bad-$name"
    printf 'FROM busybox\n%s\n' "$line" > "$T/bad-$name/Dockerfile"
    build_fails "bad-$name" "$T/bad-$name" "$pat"
}
bad insecure 'RUN --security=insecure echo hi' 'step 2/2 \(.*Dockerfile:2 RUN\): RUN --security=insecure is not supported'
bad security 'RUN --security=foo echo hi' 'Dockerfile:2: RUN --security=foo: security mode not supported'
bad network 'RUN --network=bridge echo hi' 'Dockerfile:2: RUN --network=bridge: network mode not supported'
bad type 'RUN --mount=type=nfs,target=/x echo hi' 'Dockerfile:2: RUN --mount=type=nfs,target=/x: unsupported mount type "nfs"'
bad key 'RUN --mount=target=/x,colour=red echo hi' "Dockerfile:2: .*unexpected key 'colour'"
bad mode 'RUN --mount=target=/x,mode=0755 echo hi' 'Dockerfile:2: .*mode not allowed for "bind" type mounts'
bad size 'RUN --mount=type=cache,target=/x,size=1m echo hi' "Dockerfile:2: .*unexpected key 'size' for mount type 'cache'"
bad sharing 'RUN --mount=type=cache,target=/x,sharing=maybe echo hi' 'Dockerfile:2: .*unsupported sharing value "maybe"'
bad notarget 'RUN --mount=type=tmpfs echo hi' 'Dockerfile:2: RUN --mount: target is required'
bad twice 'RUN --mount=type=tmpfs,target=/x --mount=type=cache,target=/x echo hi' 'Dockerfile:2: RUN --mount: two mounts on target /x'
bad fromvar 'RUN --mount=from=$X,target=/x echo hi' "Dockerfile:2: .*'from' doesn't support variable expansion"
bad nostage 'RUN --mount=from=nosuch,target=/x echo hi' 'nosuch'
bad nosource 'RUN --mount=source=missing,target=/x echo hi' 'Dockerfile:2: RUN --mount target=/x, source: "/missing": not found'
bad escape 'RUN --mount=source=../..,target=/x echo hi' 'Dockerfile:2: RUN --mount target=/x, source: .*outside the build context'
bad cachefrom 'RUN --mount=type=cache,target=/x,from=busybox,source=nothere echo hi' 'step 2/2 \(.*Dockerfile:2 RUN\): .*source "/nothere" not found in busybox'

echo "test_build_mount: all passed"
