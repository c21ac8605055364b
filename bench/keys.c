/* bench_keys: times one tree digest of a build context, for bench/keys.
 *
 *   bench_keys [-t THREADS] [-c CACHE_DIR] [-n RUNS] CONTEXT_DIR [SRC]
 *
 * With -c, a stat cache is kept in an LMDB environment in CACHE_DIR (which
 * must exist; the script passes a fresh temp dir for a cold cache and
 * reuses it for a warm one). Each run opens the context, digests SRC
 * (default "."), closes it (flushing the cache), and prints one line:
 *   seconds=S bytes_read=N bytes=N files=N digest=HEX
 */
#include "cachekey/context.h"
#include "cachekey/statcache.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 0 || v > 1024)
        return -1;
    *out = (int)v;
    return 0;
}

static int one_run(const char *dir, const char *src, int threads,
                   MDB_env *env)
{
    struct cairn_err err = {0};
    struct ck_statcache *sc = NULL;
    int rc = 0;
    double t0 = now_s();
    if (env != NULL && (rc = ck_statcache_open(env, &sc, &err)) != 0)
        goto out;
    struct ck_context_opts o = {.cache = sc, .threads = threads};
    struct ck_context *ctx = NULL;
    if ((rc = ck_context_open(dir, &o, &ctx, &err)) != 0)
        goto out;
    uint8_t d[CK_SHA256_LEN];
    struct ck_source_stats st;
    rc = ck_context_source_digest(ctx, src, d, &st, &err);
    ck_context_close(ctx);
    ck_statcache_close(sc);
    sc = NULL;
    double t1 = now_s();
    if (rc == 0) {
        char hex[CK_SHA256_HEX_LEN + 1];
        ck_hex_encode(d, hex);
        printf("seconds=%.6f bytes_read=%llu bytes=%llu files=%llu "
               "digest=%s\n",
               t1 - t0, (unsigned long long)st.bytes_read,
               (unsigned long long)st.bytes, (unsigned long long)st.files,
               hex);
    }
out:
    ck_statcache_close(sc);
    if (rc != 0)
        fprintf(stderr, "bench_keys: %s\n",
                err.msg[0] ? err.msg : cairn_strerror(rc));
    return rc;
}

int main(int argc, char **argv)
{
    int threads = 0, runs = 1, opt;
    const char *cache_dir = NULL;
    while ((opt = getopt(argc, argv, "t:c:n:")) != -1) {
        if (opt == 't' && parse_int(optarg, &threads) == 0)
            continue;
        if (opt == 'n' && parse_int(optarg, &runs) == 0 && runs > 0)
            continue;
        if (opt == 'c') {
            cache_dir = optarg;
            continue;
        }
        fprintf(stderr, "usage: bench_keys [-t THREADS] [-c CACHE_DIR] "
                        "[-n RUNS] CONTEXT_DIR [SRC]\n");
        return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "bench_keys: missing CONTEXT_DIR\n");
        return 2;
    }
    const char *dir = argv[optind];
    const char *src = optind + 1 < argc ? argv[optind + 1] : ".";

    MDB_env *env = NULL;
    if (cache_dir != NULL) {
        int mrc = mdb_env_create(&env);
        if (mrc == 0)
            mrc = mdb_env_set_maxdbs(env, 4);
        if (mrc == 0)
            mrc = mdb_env_set_mapsize(env, (size_t)1 << 30);
        if (mrc == 0)
            mrc = mdb_env_open(env, cache_dir, MDB_NOTLS, 0600);
        if (mrc != 0) {
            fprintf(stderr, "bench_keys: lmdb %s: %s\n", cache_dir,
                    mdb_strerror(mrc));
            if (env != NULL)
                mdb_env_close(env);
            return 1;
        }
    }
    int rc = 0;
    for (int i = 0; i < runs && rc == 0; i++)
        rc = one_run(dir, src, threads, env);
    if (env != NULL)
        mdb_env_close(env);
    return rc == 0 ? 0 : 1;
}
