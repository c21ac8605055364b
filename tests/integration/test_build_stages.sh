#!/usr/bin/env bash
# Dockerfile semantics beyond one stage: multi-stage with --target, COPY
# --from a stage and from an image, ONBUILD triggers, ARG/ENV scoping,
# WORKDIR creating its directory, USER by name, heredoc RUN and COPY,
# COPY --chown by name and --chmod. Files are checked in the layers that
# `cairn save` writes, read with tar.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"
# A second image, different from busybox, to COPY --from.
mkdir -p "$T/other/etc/other"
echo "from the other image" > "$T/other/etc/other/note.txt"
tar -C "$T/other" -cf "$T/other.tar" .
"$CAIRN" import "$T/other.tar" other:1 >/dev/null || fail "import other"

# unpack IMAGE DIR: the image's layers extracted in order into DIR (no
# whiteouts in these images), their listing (tar tv) into DIR.list.
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

# inspect_q IMAGE JQ: one value from `cairn inspect`.
inspect_q() {
    "$CAIRN" inspect "$1" | jq -r ".[0]$2"
}

# 1. ONBUILD: a base made by a Dockerfile carries the trigger in its
# config; a child build runs it first and does not pass it on.
mkdir -p "$T/onb"
printf 'FROM busybox\nONBUILD RUN echo trigger-ran && touch /triggered\n' > "$T/onb/Dockerfile"
"$CAIRN" build --progress plain -t onbase:1 "$T/onb" > "$T/onb.out" 2>&1 || { cat "$T/onb.out"; fail "onbuild base"; }
assert_eq "$(inspect_q onbase:1 '.Config.OnBuild[0]')" "RUN echo trigger-ran && touch /triggered" "OnBuild in the base config"

# docker import --change accepts ONBUILD; cairn import does not yet (see
# docs/build.md). When it does, the trigger must run in a child build.
if "$CAIRN" import --change 'ONBUILD RUN touch /imported-trigger' "$T/busybox.tar" onimport:1 \
    > "$T/onimport.out" 2>&1; then
    mkdir -p "$T/onimp"
    printf 'FROM onimport:1\nRUN test -f /imported-trigger\n' > "$T/onimp/Dockerfile"
    "$CAIRN" build --progress plain "$T/onimp" > "$T/onimp.out" 2>&1 ||
        fail "ONBUILD from import --change did not run: $(cat "$T/onimp.out")"
else
    grep -q 'ONBUILD' "$T/onimport.out" || fail "import --change ONBUILD: $(cat "$T/onimport.out")"
    echo "NOTE: cairn import --change ONBUILD is not supported yet; tested ONBUILD through a Dockerfile"
fi

ctx="$T/ctx"
mkdir -p "$ctx"
echo "context file" > "$ctx/f.txt"
cat > "$ctx/Dockerfile" <<'DF'
ARG BASE=busybox
FROM ${BASE} AS builder
ARG GREETING=hello
ENV BUILT_BY=builder
RUN echo "$GREETING from builder" > /out.txt
WORKDIR /work/sub
RUN pwd > /work/pwd.txt && echo "builder-ran"

FROM onbase:1 AS child
RUN test -f /triggered && echo "child-sees-trigger"

FROM busybox AS unused
RUN echo "unused-stage-ran"

FROM busybox AS final
ARG GREETING
ARG ONLY_ARG=argval
ENV APP_MODE=prod APP_DIR=/app
WORKDIR $APP_DIR
COPY --from=builder /out.txt ./
COPY --from=child /triggered /from-child/triggered
COPY --from=other:1 /etc/other/note.txt /from-image/note.txt
COPY --chown=app:app f.txt /owned/f.txt
COPY --chown=1000:2000 --chmod=0751 f.txt /mode/f.txt
COPY <<EOT /heredoc.txt
heredoc line $APP_MODE
EOT
RUN <<EOT
set -e
echo "heredoc-run GREETING=$GREETING ONLY_ARG=$ONLY_ARG APP_MODE=$APP_MODE"
echo hr > /heredoc-run.txt
EOT
USER app
RUN echo "uid=$(id -u) gid=$(id -g) user=$(id -un)" && touch /tmp/by-app
CMD ["cat", "/app/out.txt"]
DF

# 2. The full build: every needed stage runs, the unused one does not.
"$CAIRN" build --progress plain --build-arg GREETING=howdy -t stages:final "$ctx" > "$T/b1.out" 2>&1 ||
    { cat "$T/b1.out"; fail "multi-stage build"; }
grep -q '^builder-ran$' "$T/b1.out" || fail "builder stage did not run"
grep -q '^trigger-ran$' "$T/b1.out" || fail "ONBUILD trigger did not run: $(cat "$T/b1.out")"
grep -q '^child-sees-trigger$' "$T/b1.out" || fail "trigger's file not seen by the child"
grep -q '^unused-stage-ran$' "$T/b1.out" && fail "a stage the target does not need ran"
grep -q '^heredoc-run GREETING=howdy ONLY_ARG=argval APP_MODE=prod$' "$T/b1.out" ||
    fail "RUN did not see the build args / env: $(grep heredoc-run "$T/b1.out")"
grep -q '^uid=1000 gid=1000 user=app$' "$T/b1.out" || fail "USER app: $(grep uid= "$T/b1.out")"

# 3. The image config: ENV persists, ARGs do not, WORKDIR/USER/CMD set,
# nothing from the builder stage's ENV, no ONBUILD passed on.
env_json=$(inspect_q stages:final '.Config.Env')
echo "$env_json" | jq -e 'index("APP_MODE=prod") != null and index("APP_DIR=/app") != null' >/dev/null ||
    fail "ENV not in the config: $env_json"
echo "$env_json" | jq -e 'map(select(startswith("GREETING=") or startswith("ONLY_ARG=") or startswith("BUILT_BY="))) | length == 0' >/dev/null ||
    fail "ARG or another stage's ENV leaked into the config: $env_json"
assert_eq "$(inspect_q stages:final '.Config.WorkingDir')" "/app" "WorkingDir"
assert_eq "$(inspect_q stages:final '.Config.User')" "app" "User"
assert_eq "$(inspect_q stages:final '.Config.Cmd | join(" ")')" "cat /app/out.txt" "Cmd"
assert_eq "$(inspect_q stages:final '.Config.OnBuild // [] | length')" "0" "OnBuild passed on"

# 4. The files, as the saved layers hold them.
unpack stages:final "$T/final"
assert_eq "$(cat "$T/final/app/out.txt")" "howdy from builder" "COPY --from=builder (with the build arg)"
[ -f "$T/final/from-child/triggered" ] || fail "COPY --from=child of the trigger's file"
assert_eq "$(cat "$T/final/from-image/note.txt")" "from the other image" "COPY --from=other:1"
assert_eq "$(cat "$T/final/heredoc.txt")" 'heredoc line $APP_MODE' "heredoc COPY (no expansion of the body)"
assert_eq "$(cat "$T/final/heredoc-run.txt")" "hr" "heredoc RUN's file"
grep -qE '^-rw-r--r-- 1000/1000 .* owned/f\.txt$' "$T/final.list" ||
    fail "--chown=app:app: $(grep owned/f.txt "$T/final.list")"
grep -qE '^-rwxr-x--x 1000/2000 .* mode/f\.txt$' "$T/final.list" ||
    fail "--chown=1000:2000 --chmod=0751: $(grep mode/f.txt "$T/final.list")"
grep -qE '^-rw-r--r-- 1000/1000 .* tmp/by-app$' "$T/final.list" ||
    fail "file made by USER app: $(grep by-app "$T/final.list")"
grep -qE '^d.* 0/0 .* app/?$' "$T/final.list" || fail "WORKDIR /app not in a layer: $(grep ' app' "$T/final.list")"

# 5. --target: only the builder stage, and its WORKDIR made /work/sub.
"$CAIRN" build --progress plain --target builder -t stages:builder "$ctx" > "$T/b2.out" 2>&1 ||
    { cat "$T/b2.out"; fail "--target builder"; }
grep -q 'FROM busybox AS final' "$T/b2.out" && fail "--target builder ran the final stage"
unpack stages:builder "$T/builder"
assert_eq "$(cat "$T/builder/work/pwd.txt")" "/work/sub" "WORKDIR in the builder"
[ -d "$T/builder/work/sub" ] || fail "WORKDIR did not create /work/sub"
assert_eq "$(cat "$T/builder/out.txt")" "hello from builder" "ARG default without --build-arg"
assert_eq "$(inspect_q stages:builder '.Config.WorkingDir')" "/work/sub" "builder WorkingDir"
inspect_q stages:builder '.Config.Env' | jq -e 'index("BUILT_BY=builder") != null' >/dev/null ||
    fail "builder ENV: $(inspect_q stages:builder '.Config.Env')"

# 6. A rebuild of the target is all cache; a changed build arg reruns
# only the steps that use it.
"$CAIRN" build --progress plain --build-arg GREETING=howdy -t stages:final "$ctx" > "$T/b3.out" 2>&1 || fail "rebuild"
grep -qE '^(trigger-ran|builder-ran|heredoc-run .*)$' "$T/b3.out" && fail "a cached step ran again"
assert_eq "$(grep -c ' ---> Using cache' "$T/b3.out")" 12 "cached layer steps"
"$CAIRN" build --progress plain --build-arg GREETING=hi -t stages:final "$ctx" > "$T/b4.out" 2>&1 || fail "changed arg"
grep -q '^heredoc-run GREETING=hi ' "$T/b4.out" || fail "changed build arg not seen"
grep -q '^trigger-ran$' "$T/b4.out" && fail "the ONBUILD stage reran for an arg it does not use"

echo "test_build_stages: all passed"
