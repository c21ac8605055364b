# Several cairnd nodes on one bucket (docs/storage.md "Two tiers"), for
# tests/integration/test_s3_*.sh. Source it; it starts the bucket (a real
# Swift with s3api, s3_lib.sh) and no node.
#
#   node_start N [cairnd options...]  node N on the bucket, local tier in
#                                     $T/node$N (NODE_DIR overrides); sets
#                                     NP[N] (port), NPID[N], NL[N] (log)
#   node_stop N                       SIGTERM; exit 0 and a clean log required
#   node_kill N                       kill -9
#   at N PROBE-ARGS...                bench_reapi_probe against node N
#   bucket_key cas|ac INSTANCE FILE   the object name cairnd gives FILE
#   bucket_stat OUT                   the last "bucket (exit)" counters of log OUT
. "$(dirname "${BASH_SOURCE[0]}")/remote_lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/s3_lib.sh"

declare -a NP NPID NL
_nodes_cleanup() {
    local p
    for p in "${NPID[@]}"; do
        [ -n "$p" ] && kill -KILL "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    cd_cleanup
}
trap _nodes_cleanup EXIT
s3_start

node_start() {
    local n=$1; shift
    CD_DIR=${NODE_DIR:-$T/node$n} cd_start --backend "$S3_URL" --s3-endpoint "$S3_ENDPOINT" \
        --s3-path-style "$@"
    NP[$n]=$CD_PORT NPID[$n]=$CD_PID NL[$n]=$CD_LOG
}
node_stop() {
    CD_PID=${NPID[$1]} CD_LOG=${NL[$1]} cd_stop
    NPID[$1]=
}
node_kill() {
    kill -KILL "${NPID[$1]}" 2>/dev/null
    wait "${NPID[$1]}" 2>/dev/null
    NPID[$1]=
}
at() { local n=$1; shift; "$PROBE" --addr "127.0.0.1:${NP[$n]}" "$@"; }
bucket_key() { echo "$1/$2/$(sha "$3")-$(size "$3")"; }
bucket_stat() { grep 'bucket (exit)' "$1" | tail -1; }
