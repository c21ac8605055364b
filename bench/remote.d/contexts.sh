#!/bin/sh
# Usage: bench/remote.d/contexts.sh DIR [DOCKERFILE...]
#
# Writes build contexts of bench/remote into DIR/<name> (default: exercise,
# app2000 and multistage; also big-random, big-binary and many-files):
# each Dockerfile next to this script, plus its source files. app2000 gets
# 2,000 small C-like files (20 directories of 100), big-binary ~256 MB of
# copies of the host's shared libraries (as bench/build lays them out),
# generated here so that the repository does not carry them. The
# Dockerfiles are the ones bench/build uses, so the two benchmarks compare.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 DIR [DOCKERFILE...]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
out=$1
shift
[ $# -gt 0 ] || set -- exercise app2000 multistage
for df in "$@"; do
    mkdir -p "$out/$df"
    cp "$here/$df/Dockerfile" "$out/$df/Dockerfile"
    case $df in big-random | many-files) echo seed >"$out/$df/seed.txt" ;; esac
done
if [ -d "$out/big-binary" ]; then
    # Copies of the host's shared libraries, in name order, each at most
    # four times under different directories, until 256 MiB are laid out.
    want=$((256 << 20)) have=0
    for round in 0 1 2 3; do
        mkdir -p "$out/big-binary/lib/r$round"
        for f in $(find /usr/lib/x86_64-linux-gnu -maxdepth 1 -type f -name '*.so*' | LC_ALL=C sort); do
            [ "$have" -lt "$want" ] || break 2
            cp "$f" "$out/big-binary/lib/r$round/"
            have=$((have + $(stat -c %s "$f")))
        done
    done
fi
[ -d "$out/exercise" ] && echo "hello from the benchmark" >"$out/exercise/greeting.txt"
if [ -d "$out/app2000" ]; then
    d=0
    while [ $d -lt 20 ]; do
        dd=$(printf %02d $d)
        mkdir -p "$out/app2000/src/mod$dd"
        f=0
        while [ $f -lt 100 ]; do
            ff=$(printf %02d $f)
            printf '/* mod%s/file%s.c */\n#include "mod%s.h"\n\nint mod%s_fn%s(int x)\n{\n    return x * %d + %d;\n}\n' \
                "$dd" "$ff" "$dd" "$dd" "$ff" $((f + 1)) $d >"$out/app2000/src/mod$dd/file$ff.c"
            f=$((f + 1))
        done
        d=$((d + 1))
    done
fi
if [ -d "$out/multistage" ]; then
    echo "generator input" >"$out/multistage/gen.txt"
    echo "packer input" >"$out/multistage/pack.txt"
    echo "final stage file" >"$out/multistage/main.txt"
fi
