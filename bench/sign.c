/* bench_sign: the cost of signed cache entries per step, for bench/sign.
 *
 *   bench_sign [-n ROUNDS]
 *
 * Times, each ROUNDS times (default 10,000) and one call per timing, what
 * a writer adds to an upload (cairn_sign_result on a layer step's result:
 * the canonical message, an Ed25519 signature, the two properties) and
 * what a trusting reader adds to a lookup (cairn_sign_result_verify with
 * three trusted keys: finding the key, the message, the check). Prints
 * one line per operation: "OP median_us=M p99_us=P min_us=L".
 */
#include "client/remote/cache.h"
#include "client/remote/sign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *op, double *t, size_t n)
{
    qsort(t, n, sizeof *t, cmp_double);
    printf("%s median_us=%.1f p99_us=%.1f min_us=%.1f\n", op, t[n / 2],
           t[n * 99 / 100], t[0]);
}

int main(int argc, char **argv)
{
    long rounds = 10000;
    if (argc == 3 && strcmp(argv[1], "-n") == 0) {
        char *end;
        errno = 0;
        rounds = strtol(argv[2], &end, 10);
        if (errno || *end || rounds < 1 || rounds > 10000000)
            rounds = -1;
    } else if (argc != 1) {
        rounds = -1;
    }
    if (rounds < 0) {
        fprintf(stderr, "usage: bench_sign [-n ROUNDS]\n");
        return 2;
    }
    struct cairn_sign_key *keys[3] = {NULL, NULL, NULL};
    struct cairn_sign_pub pubs[3];
    for (int i = 0; i < 3; i++) {
        if (cairn_sign_key_generate(&keys[i], NULL) != 0) {
            fprintf(stderr, "bench_sign: cannot make a key\n");
            return 1;
        }
        cairn_sign_key_public(keys[i], &pubs[i]);
    }
    struct cairn_layer_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.layer.media_type = CAIRN_MEDIA_LAYER_GZIP;
    snprintf(rec.layer.digest, sizeof rec.layer.digest, "sha256:%064d", 1);
    snprintf(rec.layer.diff_id, sizeof rec.layer.diff_id, "sha256:%064d", 2);
    rec.layer.size = 123456789;
    struct cairn_remote_digest action;
    snprintf(action.hash, sizeof action.hash, "%064d", 3);
    action.size = 1500;
    double *ts = calloc((size_t)rounds, sizeof *ts),
           *tv = calloc((size_t)rounds, sizeof *tv);
    struct cairn_remote_result *res = calloc(1, sizeof *res);
    if (ts == NULL || tv == NULL || res == NULL)
        return 1;
    int rc = 0;
    for (long i = 0; !rc && i < rounds; i++) {
        /* Each round signs for another action, as each step would. */
        snprintf(action.hash, sizeof action.hash, "%064ld", i);
        cairn_cache_result_make(&rec, res);
        double t0 = now_us();
        rc = cairn_sign_result(keys[2], "main", &action, res, NULL);
        double t1 = now_us();
        rc = rc ? rc
                : cairn_sign_result_verify(pubs, 3, "main", &action, res,
                                           NULL);
        double t2 = now_us();
        ts[i] = t1 - t0;
        tv[i] = t2 - t1;
    }
    if (rc) {
        fprintf(stderr, "bench_sign: %s\n", cairn_strerror(rc));
        return 1;
    }
    printf("rounds=%ld\n", rounds);
    report("sign", ts, (size_t)rounds);
    report("verify", tv, (size_t)rounds);
    for (int i = 0; i < 3; i++)
        cairn_sign_key_free(keys[i]);
    free(ts);
    free(tv);
    free(res);
    return 0;
}
