# Shared helpers for integration tests (sourced). Each test runs in its own
# temporary directory, removed on exit; CAIRN_ROOT points inside it so tests
# never touch a real store.
set -euo pipefail

: "${CAIRN:?CAIRN must point at the cairn binary}"
T=$(mktemp -d /tmp/cairn-it.XXXXXX)
export CAIRN_ROOT="$T/root"
trap 'rm -rf "$T"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# assert_eq ACTUAL EXPECTED WHAT
assert_eq() {
    [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"
}

# keys_of CONTEXT [cairn keys args...]: prints only the key column.
keys_of() {
    "$CAIRN" keys --json "$@" | jq -r '.[].key'
}
