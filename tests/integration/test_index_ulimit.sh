#!/usr/bin/env bash
# Under `ulimit -v` cairn works, or says what is wrong: the index's map
# starts small and grows (client/store/index.c) instead of reserving 16 GiB of
# address space up front, which made every command segfault below ~17 GB
# (the failed map, then mdb_env_info on it).
#
# The limit is set above what the process already uses before it opens
# the index, measured on a cairn blocked reading its Dockerfile from a
# FIFO. That makes one test for both builds: a Release cairn starts at a
# few tens of MB, an ASan one at some 20 TB of reserved shadow memory
# (which a plain `ulimit -v 2G` would refuse at exec).
. "$(dirname "$0")/lib.sh"

ctx="$T/ctx"
mkdir -p "$ctx"
echo hello > "$ctx/f.txt"
printf 'FROM scratch\nENV A=1\nCOPY f.txt /f.txt\n' > "$ctx/Dockerfile"

# The address space of a cairn that has not opened the index yet.
mkfifo "$T/df"
"$CAIRN" keys -f "$T/df" "$ctx" > /dev/null 2>&1 &
pid=$!
base=""
for _ in $(seq 100); do
    # Blocked in open(2) on the FIFO: nothing more will be mapped.
    if [ "$(cat "/proc/$pid/wchan" 2> /dev/null)" = fifo_open ] ||
        grep -q '^State:.*S (sleeping)' "/proc/$pid/status" 2> /dev/null &&
        [ "$(readlink "/proc/$pid/exe")" = "$(readlink -f "$CAIRN")" ]; then
        sleep 0.2
        base=$(awk '/^VmPeak:/ {print $2}' "/proc/$pid/status")
        break
    fi
    sleep 0.1
done
cat "$ctx/Dockerfile" > "$T/df"
wait "$pid" || true
[ -n "$base" ] || fail "could not measure the address space of cairn"
echo "address space before the index: $base kB"

# run_limited EXTRA_MB CMD...: CMD under ulimit -v base + EXTRA_MB.
run_limited() {
    local extra=$1
    shift
    (ulimit -v $((base + extra * 1024)) && exec "$@")
}

# 1. 2 GiB more than that: every command works (a 16 GiB map did not).
rc=0
run_limited 2048 "$CAIRN" keys "$ctx" > "$T/keys.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "keys under ulimit -v (rc $rc): $(cat "$T/keys.out")"
rc=0
run_limited 2048 "$CAIRN" build -t ulimit:1 "$ctx" > "$T/build.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "build under ulimit -v (rc $rc): $(cat "$T/build.out")"
rc=0
run_limited 2048 "$CAIRN" images > "$T/images.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "images under ulimit -v (rc $rc): $(cat "$T/images.out")"
grep -q '^ulimit ' "$T/images.out" || fail "image not listed: $(cat "$T/images.out")"
rc=0
run_limited 2048 "$CAIRN" inspect ulimit:1 > /dev/null 2> "$T/inspect.err" || rc=$?
[ "$rc" = 0 ] || fail "inspect under ulimit -v (rc $rc): $(cat "$T/inspect.err")"

# 2. Less than the initial 64 MiB map: a clear error, no crash.
rc=0
run_limited 48 "$CAIRN" images > "$T/small.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] ||
    fail "images with no room for the map: rc $rc: $(cat "$T/small.out")"
grep -q 'cannot map the index.*out of address space' "$T/small.out" ||
    fail "unclear error: $(cat "$T/small.out")"
echo PASS
