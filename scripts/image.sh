#!/usr/bin/env bash
# Builds the cairnd image with cairn itself, from docker/cairnd/Dockerfile:
# cairnd (Release, from scripts/build.sh unless --cairnd names a binary),
# stripped, plus exactly the shared libraries `ldd` lists and the dynamic
# loader, at the paths ldd names, on an empty base. Tags it
# cairnd:<appVersion of helm/cairnd/Chart.yaml>, the tag the chart runs.
#
#   scripts/image.sh [--cairnd PATH] [--cairn PATH] [--tag NAME:TAG] [--save FILE]
#
# --cairn defaults to the cairn of the same build; the image goes to the
# store of $CAIRN_ROOT (cairn's default). --save writes `cairn save`'s
# archive for `docker load`. Needs root, as `cairn build` does.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$src/helm/cairnd/Chart.yaml")
[ -n "$version" ] || { echo "image.sh: no appVersion in helm/cairnd/Chart.yaml" >&2; exit 1; }
cairnd= cairn= tag="cairnd:$version" save=
while [ $# -gt 0 ]; do
    case $1 in
        --cairnd) cairnd=$2; shift 2 ;;
        --cairn) cairn=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        --save) save=$2; shift 2 ;;
        *) echo "usage: scripts/image.sh [--cairnd PATH] [--cairn PATH] [--tag NAME:TAG] [--save FILE]" >&2
           exit 2 ;;
    esac
done
if [ -z "$cairnd" ]; then
    build=$("$src/scripts/build.sh")
    cairnd=$build/server/cairnd
    cairn=${cairn:-$build/cairn}
fi
cairn=${cairn:-$(dirname "$cairnd")/../cairn}
[ -x "$cairnd" ] || { echo "image.sh: no cairnd at $cairnd" >&2; exit 1; }
[ -x "$cairn" ] || { echo "image.sh: no cairn at $cairn (give --cairn)" >&2; exit 1; }

ctx=$(mktemp -d "${TMPDIR:-/tmp}/cairnd-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cp "$src/docker/cairnd/Dockerfile" "$src/docker/cairnd/passwd" "$src/docker/cairnd/group" "$ctx/"
mkdir -p "$ctx/rootfs/usr/bin" "$ctx/data/store"
chmod 0700 "$ctx/data/store" # as cairnd makes it
strip --strip-unneeded -o "$ctx/rootfs/usr/bin/cairnd" "$cairnd"

# ldd's lines: "libx.so.N => /path (addr)" for each library, "/path/ld.so
# (addr)" for the loader. Copied to the same paths (the binary's
# PT_INTERP names the loader; the loader searches the library directories
# it was built with, which are these). A library ldd cannot find stops the
# build: the image would not start. A static cairnd needs none.
if deps=$(ldd "$cairnd" 2>&1); then
    if grep -q 'not found' <<<"$deps"; then
        echo "image.sh: ldd $cairnd: $(grep 'not found' <<<"$deps")" >&2
        exit 1
    fi
    awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$deps" |
        while read -r lib; do
            mkdir -p "$ctx/rootfs$(dirname "$lib")"
            cp -L "$lib" "$ctx/rootfs$lib"
        done
    [ -n "$(find "$ctx/rootfs" -name 'ld-linux*' -print -quit)" ] ||
        { echo "image.sh: ldd named no dynamic loader for $cairnd" >&2; exit 1; }
elif ! grep -q 'not a dynamic executable' <<<"$deps"; then
    echo "image.sh: ldd $cairnd: $deps" >&2
    exit 1
fi

"$cairn" build -t "$tag" --build-arg "VERSION=$version" "$ctx" >&2
if [ -n "$save" ]; then
    "$cairn" save "$tag" -o "$save"
fi
echo "$tag"
