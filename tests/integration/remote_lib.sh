# Helpers for the shared-cache tests: a cairnd (server_lib.sh) and several
# stores, one per simulated machine, under $T. Source it from a test_*.sh.
. "$(dirname "${BASH_SOURCE[0]}")/server_lib.sh"
: "${CAIRN:?CAIRN must point at the cairn binary}"

# busybox_base: makes $T/busybox.tar, a busybox rootfs made at test time
# (skips the test when Debian's busybox-static is missing).
busybox_base() {
    command -v busybox >/dev/null || { echo "SKIP: busybox-static is not installed"; exit 0; }
    bash "$CAIRN_SOURCE_DIR/tests/rootfs.sh" "$T/rootfs" >/dev/null
    tar -C "$T/rootfs" -cf "$T/busybox.tar" .
}
# newstore NAME: a fresh store $T/NAME with the base image as busybox:latest
newstore() {
    CAIRN_ROOT="$T/$1" "$CAIRN" import "$T/busybox.tar" busybox:latest >/dev/null || fail "import into $1"
}
# build STORE OUT ARGS...: cairn build in STORE, output (both streams) in $T/OUT
build() {
    local store=$1 out=$2; shift 2
    CAIRN_ROOT="$T/$store" "$CAIRN" build "$@" >"$T/$out" 2>&1 || { fail "build $out"; sed 's/^/    /' "$T/$out" | tail -15; }
}
# id_of OUT: the image ID a build printed
id_of() { sed -n 's/^Successfully built //p' "$T/$1"; }
# summary OUT: the build's closing summary line
summary() { grep '^cairn: ' "$T/$1"; }
# field OUT WORD: the number before WORD in the summary ("remote hits", "run", ...)
field() { summary "$1" | grep -oE "[0-9]+ $2" | cut -d' ' -f1; }
