#!/usr/bin/env bash
# HOME in RUN, as Docker (runc) sets it: from the user's /etc/passwd entry
# when the environment has none, "/" for a uid without an entry, never
# overriding ENV HOME; and it does not leak into the image config.
. "$(dirname "$0")/lib.sh"

bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
tar -C "$T/rootfs" -cf "$T/busybox.tar" .
"$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import"

ctx="$T/ctx"
mkdir -p "$ctx"
cat > "$ctx/Dockerfile" <<'DF'
FROM busybox
RUN echo "root-home=$HOME"
USER app
RUN echo "app-home=$HOME"
USER 1000:0
RUN echo "uid-home=$HOME"
USER 4321
RUN echo "nouser-home=$HOME"
USER root
ENV HOME=/custom
RUN echo "env-home=$HOME"
DF
"$CAIRN" build --progress plain -t home "$ctx" > "$T/out" 2>&1 || { cat "$T/out"; fail "build"; }
grep -qx 'root-home=/root' "$T/out" || fail "root HOME: $(cat "$T/out")"
grep -qx 'app-home=/home/app' "$T/out" || fail "app HOME: $(cat "$T/out")"
grep -qx 'uid-home=/home/app' "$T/out" || fail "uid 1000 HOME: $(cat "$T/out")"
grep -qx 'nouser-home=/' "$T/out" || fail "HOME without a passwd entry: $(cat "$T/out")"
grep -qx 'env-home=/custom' "$T/out" || fail "ENV HOME overridden: $(cat "$T/out")"

# Only the ENV instruction puts HOME in the image config.
"$CAIRN" inspect home > "$T/inspect.json"
assert_eq "$(jq -r '.[0].Config.Env[] | select(startswith("HOME="))' "$T/inspect.json")" \
    "HOME=/custom" "HOME in the config"
printf 'FROM busybox\nRUN echo "x=$HOME"\n' > "$ctx/Dockerfile"
"$CAIRN" build --progress plain -t nohome "$ctx" > "$T/out2" 2>&1 || fail "second build"
assert_eq "$(jq -r '[.[0].Config.Env[] | select(startswith("HOME="))] | length' \
    <("$CAIRN" inspect nohome))" 0 "HOME leaked into the config"

echo "test_build_home: all passed"
