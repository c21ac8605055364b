#!/bin/sh
# Usage: bench/remote.d/contexts.sh DIR
#
# Writes the three build contexts of bench/remote into DIR/exercise,
# DIR/app2000 and DIR/multistage: each Dockerfile next to this script, plus
# its source files. app2000 gets 2,000 small C-like files (20 directories of
# 100), generated here so that the repository does not carry them. The
# Dockerfiles are the ones bench/build uses, so the two benchmarks compare.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
out=$1
for df in exercise app2000 multistage; do
    mkdir -p "$out/$df"
    cp "$here/$df/Dockerfile" "$out/$df/Dockerfile"
done
echo "hello from the benchmark" >"$out/exercise/greeting.txt"
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
echo "generator input" >"$out/multistage/gen.txt"
echo "packer input" >"$out/multistage/pack.txt"
echo "final stage file" >"$out/multistage/main.txt"
