/* bench_tier_read: lookups and reads of a warm node (cairnd --backend
 * s3://..., its LMDB holding the data) beside an LMDB-only cairnd holding
 * the same data, in one run (driven by bench/s3_tier --warm).
 *
 *   bench_tier_read seed ADDR DIGESTS
 *   bench_tier_read ROUNDS BASE_ADDR WARM_ADDR DIGESTS BIG [BASE_PID WARM_PID]
 *
 * DIGESTS: a file of "hash/size" lines, blobs both servers hold (1,000 of
 * 1 KiB in bench/s3_tier); BIG: "hash/size" of a big blob both hold.
 * "seed" stores one action result per blob on the server (each
 * referencing that blob and the next three, instance "bench"; run it on
 * both first). The timed form runs one unmeasured round on each server,
 * then ROUNDS rounds, each timing on both (which goes first alternates):
 *   fmb    10 FindMissingBlobs of every digest (each must answer none missing)
 *   ac     one GetActionResult of every action (each must be OK)
 *   batch  BatchReadBlobs of every digest, in calls of up to 1,000
 *   bsread one ByteStream Read of every digest
 *   big    one ByteStream Read of BIG
 * Prints one line per round and server, then per measure the medians, the
 * ratio warm/base, and the noise: the base server's rounds over their own
 * median (lowest .. highest). A ratio inside that band is "within noise".
 * "paired" is the median of each round's own warm/base (the two ran side
 * by side, so load that drifts between rounds cancels more). With the
 * servers' pids, the same again for the CPU time each server spent on the
 * measure (its threads' run time from /proc/PID/task/∗/schedstat): what
 * a server does per call, much less moved by the neighbours' load than
 * wall time.
 * TIER_READ_ONLY=NAME in the environment runs that measure alone (the
 * others print 0), e.g. to count one measure's instructions with perf.
 * Exits 1 if any call failed or answered wrong. */
#include "reapi_client.h"

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "cachekey/digest.h"
#include "google/bytestream/bytestream.pb-c.h"

#include <dirent.h>
#include <time.h>

#define REAPI "/build.bazel.remote.execution.v2."
#define INSTANCE "bench"
#define MAX_DIGESTS 100000
#define BATCH 1000
#define REFS 4
#define ROUNDS_MAX 99

typedef Build__Bazel__Remote__Execution__V2__Digest Digest;

enum { M_FMB, M_AC, M_BATCH, M_BSREAD, M_BIG, M_N };
static const char *measure_names[M_N] = {"fmb", "ac", "batch", "bsread", "big"};

static Digest *digests;
static Digest **dptrs;
static char (*hashes)[CK_SHA256_HEX_LEN + 1];
static size_t n_digests;
static Digest actions[MAX_DIGESTS];
static char action_hex[MAX_DIGESTS][CK_SHA256_HEX_LEN + 1];
static Digest big;
static char big_hex[CK_SHA256_HEX_LEN + 1];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_tier_read: %s\n", what);
    exit(1);
}

static bool parse_digest(const char *s, Digest *d, char *hex)
{
    long long size;
    char tail;
    build__bazel__remote__execution__v2__digest__init(d);
    if (strlen(s) < CK_SHA256_HEX_LEN + 2 || s[CK_SHA256_HEX_LEN] != '/' ||
        sscanf(s + CK_SHA256_HEX_LEN + 1, "%lld%c", &size, &tail) != 1 || size < 0)
        return false;
    memcpy(hex, s, CK_SHA256_HEX_LEN);
    hex[CK_SHA256_HEX_LEN] = '\0';
    d->hash = hex;
    d->size_bytes = size;
    return true;
}

static void load_digests(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("cannot open the digest list");
    digests = calloc(MAX_DIGESTS, sizeof *digests);
    dptrs = calloc(MAX_DIGESTS, sizeof *dptrs);
    hashes = calloc(MAX_DIGESTS, sizeof *hashes);
    char line[256];
    while (fgets(line, sizeof line, f) != NULL && n_digests < MAX_DIGESTS) {
        line[strcspn(line, "\n")] = '\0';
        if (!parse_digest(line, &digests[n_digests], hashes[n_digests]))
            die("a digest line is not hash/size");
        dptrs[n_digests] = &digests[n_digests];
        n_digests++;
    }
    fclose(f);
    if (n_digests < REFS)
        die("too few digests");
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len + 1);
    protobuf_c_message_pack(m, buf);
    return buf;
}

/* One unary call; the response (malloc'd) on OK, else NULL. */
static uint8_t *unary(struct rc_conn *c, const char *method, const ProtobufCMessage *m, size_t *rlen)
{
    size_t len;
    uint8_t *req = pack(m, &len), *resp = NULL;
    struct rc_status st;
    *rlen = 0;
    if (rc_unary(c, method, req, len, &resp, rlen, &st) != GRPC_STATUS_OK) {
        fprintf(stderr, "%s: %d %s\n", method, (int)st.code, st.msg);
        free(resp);
        resp = NULL;
    } else if (resp == NULL) {
        resp = malloc(1); /* an empty message */
    }
    free(req);
    return resp;
}

/* Action i: a made-up action digest, its result the blobs i .. i+REFS-1. */
static void name_actions(void)
{
    for (size_t i = 0; i < n_digests; i++) {
        char name[64];
        uint8_t h[CK_SHA256_LEN];
        int n = snprintf(name, sizeof name, "bench_tier_read action %zu", i);
        ck_sha256(name, (size_t)n, h);
        ck_hex_encode(h, action_hex[i]);
        build__bazel__remote__execution__v2__digest__init(&actions[i]);
        actions[i].hash = action_hex[i];
        actions[i].size_bytes = n;
    }
}

static void seed_actions(struct rc_conn *c)
{
    for (size_t i = 0; i < n_digests; i++) {
        Build__Bazel__Remote__Execution__V2__OutputFile of[REFS], *ofp[REFS];
        char paths[REFS][32];
        for (size_t j = 0; j < REFS; j++) {
            build__bazel__remote__execution__v2__output_file__init(&of[j]);
            snprintf(paths[j], sizeof paths[j], "out/%zu", j);
            of[j].path = paths[j];
            of[j].digest = &digests[(i + j) % n_digests];
            ofp[j] = &of[j];
        }
        Build__Bazel__Remote__Execution__V2__ActionResult ar =
            BUILD__BAZEL__REMOTE__EXECUTION__V2__ACTION_RESULT__INIT;
        ar.n_output_files = REFS;
        ar.output_files = ofp;
        Build__Bazel__Remote__Execution__V2__UpdateActionResultRequest up =
            BUILD__BAZEL__REMOTE__EXECUTION__V2__UPDATE_ACTION_RESULT_REQUEST__INIT;
        up.instance_name = INSTANCE;
        up.action_digest = &actions[i];
        up.action_result = &ar;
        size_t rlen;
        uint8_t *resp = unary(c, REAPI "ActionCache/UpdateActionResult", &up.base, &rlen);
        if (resp == NULL)
            die("UpdateActionResult failed");
        free(resp);
    }
}

static bool run_fmb(struct rc_conn *c)
{
    Build__Bazel__Remote__Execution__V2__FindMissingBlobsRequest rq =
        BUILD__BAZEL__REMOTE__EXECUTION__V2__FIND_MISSING_BLOBS_REQUEST__INIT;
    rq.instance_name = INSTANCE;
    rq.n_blob_digests = n_digests;
    rq.blob_digests = dptrs;
    for (int k = 0; k < 10; k++) {
        size_t rlen;
        uint8_t *resp = unary(c, REAPI "ContentAddressableStorage/FindMissingBlobs", &rq.base, &rlen);
        if (resp == NULL)
            return false;
        Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse *r =
            build__bazel__remote__execution__v2__find_missing_blobs_response__unpack(NULL, rlen, resp);
        bool ok = r != NULL && r->n_missing_blob_digests == 0;
        build__bazel__remote__execution__v2__find_missing_blobs_response__free_unpacked(r, NULL);
        free(resp);
        if (!ok)
            return false;
    }
    return true;
}

static bool run_ac(struct rc_conn *c)
{
    for (size_t i = 0; i < n_digests; i++) {
        Build__Bazel__Remote__Execution__V2__GetActionResultRequest rq =
            BUILD__BAZEL__REMOTE__EXECUTION__V2__GET_ACTION_RESULT_REQUEST__INIT;
        rq.instance_name = INSTANCE;
        rq.action_digest = &actions[i];
        size_t rlen;
        uint8_t *resp = unary(c, REAPI "ActionCache/GetActionResult", &rq.base, &rlen);
        if (resp == NULL)
            return false;
        free(resp);
    }
    return true;
}

static bool run_batch(struct rc_conn *c)
{
    for (size_t at = 0; at < n_digests; at += BATCH) {
        Build__Bazel__Remote__Execution__V2__BatchReadBlobsRequest rq =
            BUILD__BAZEL__REMOTE__EXECUTION__V2__BATCH_READ_BLOBS_REQUEST__INIT;
        rq.instance_name = INSTANCE;
        rq.n_digests = n_digests - at < BATCH ? n_digests - at : BATCH;
        rq.digests = dptrs + at;
        size_t rlen;
        uint8_t *resp = unary(c, REAPI "ContentAddressableStorage/BatchReadBlobs", &rq.base, &rlen);
        if (resp == NULL)
            return false;
        Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse *r =
            build__bazel__remote__execution__v2__batch_read_blobs_response__unpack(NULL, rlen, resp);
        bool ok = r != NULL && r->n_responses == rq.n_digests;
        for (size_t i = 0; ok && i < r->n_responses; i++)
            ok = (r->responses[i]->status == NULL || r->responses[i]->status->code == 0) &&
                 (int64_t)r->responses[i]->data.len == dptrs[at + i]->size_bytes;
        build__bazel__remote__execution__v2__batch_read_blobs_response__free_unpacked(r, NULL);
        free(resp);
        if (!ok)
            return false;
    }
    return true;
}

static bool read_one(struct rc_conn *c, const Digest *d)
{
    char res[256];
    snprintf(res, sizeof res, INSTANCE "/blobs/%s/%lld", d->hash, (long long)d->size_bytes);
    /* Framing adds a few bytes per message: at least the blob's size. */
    return rc_bs_read(c, res) >= d->size_bytes;
}

static bool run_bsread(struct rc_conn *c)
{
    for (size_t i = 0; i < n_digests; i++)
        if (!read_one(c, &digests[i]))
            return false;
    return true;
}

static bool run_big(struct rc_conn *c) { return read_one(c, &big); }

static bool (*const measures[M_N])(struct rc_conn *) = {run_fmb, run_ac, run_batch, run_bsread, run_big};

/* Seconds on a CPU of every thread of pid so far; 0 if unknown. */
static double cpu_s(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *d = pid > 0 ? opendir(path) : NULL;
    if (d == NULL)
        return 0;
    double total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char f[320];
        unsigned long long ns = 0;
        snprintf(f, sizeof f, "/proc/%ld/task/%s/schedstat", pid, e->d_name);
        FILE *fp = fopen(f, "r");
        if (fp != NULL && fscanf(fp, "%llu", &ns) == 1)
            total += (double)ns / 1e9;
        if (fp != NULL)
            fclose(fp);
    }
    closedir(d);
    return total;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
    double s[ROUNDS_MAX];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* One round on one server (pid: 0 unknown): every measure once; wall
 * times into t[M_N], the server's CPU times into cpu[M_N]. */
static void round_on(struct rc_conn *c, long pid, const char *who, int round, double *t, double *cpu)
{
    printf("round %d %-4s", round, who);
    const char *only = getenv("TIER_READ_ONLY");
    for (int m = 0; m < M_N; m++) {
        if (only != NULL && strcmp(only, measure_names[m]) != 0) {
            t[m] = cpu[m] = 1;
            continue;
        }
        double c0 = cpu_s(pid), t0 = now();
        if (!measures[m](c)) {
            fprintf(stderr, "%s on %s failed\n", measure_names[m], who);
            exit(1);
        }
        t[m] = now() - t0;
        cpu[m] = cpu_s(pid) - c0;
        printf(" %s=%.4f/%.4f", measure_names[m], t[m], cpu[m]);
    }
    printf("\n");
    fflush(stdout);
}

static int seed_main(const char *addr, const char *list)
{
    load_digests(list);
    name_actions();
    grpc_init();
    struct rc_conn c;
    if (rc_connect(&c, addr, NULL, NULL, NULL, NULL, NULL) != 0)
        die("cannot connect");
    c.timeout_s = 600;
    seed_actions(&c);
    rc_close(&c);
    grpc_shutdown();
    return 0;
}

/* Per measure: medians, warm/base, paired ratio, and the base's noise band. */
static void summary(double (*b)[M_N], double (*w)[M_N], int rounds)
{
    for (int m = 0; m < M_N; m++) {
        double vb[ROUNDS_MAX], vw[ROUNDS_MAX], vp[ROUNDS_MAX], lo = 1e300, hi = 0;
        for (int r = 0; r < rounds; r++) {
            vb[r] = b[r][m];
            vw[r] = w[r][m];
            vp[r] = w[r][m] / b[r][m];
        }
        double mb = median(vb, rounds), mw = median(vw, rounds);
        double paired = median(vp, rounds);
        for (int r = 0; r < rounds; r++) {
            lo = vb[r] / mb < lo ? vb[r] / mb : lo;
            hi = vb[r] / mb > hi ? vb[r] / mb : hi;
        }
        double ratio = mw / mb;
        printf("%-6s base %.4f s  warm %.4f s  warm/base %.3f (paired %.3f)  noise %.3f..%.3f  %s\n",
               measure_names[m], mb, mw, ratio, paired, lo, hi,
               ratio >= lo && ratio <= hi ? "within noise" : ratio > hi ? "SLOWER than noise" : "faster");
    }
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "seed") == 0)
        return seed_main(argv[2], argv[3]);
    if (argc != 6 && argc != 8)
        die("usage: bench_tier_read seed ADDR DIGESTS | ROUNDS BASE_ADDR WARM_ADDR DIGESTS BIG [BASE_PID WARM_PID]");
    long base_pid = argc == 8 ? strtol(argv[6], NULL, 10) : 0;
    long warm_pid = argc == 8 ? strtol(argv[7], NULL, 10) : 0;
    char *end = NULL;
    long rounds = strtol(argv[1], &end, 10);
    if (*end != '\0')
        rounds = 0;
    if (rounds < 1 || rounds > ROUNDS_MAX)
        die("ROUNDS must be 1..99");
    load_digests(argv[4]);
    name_actions();
    if (!parse_digest(argv[5], &big, big_hex))
        die("BIG is not hash/size");
    grpc_init();
    struct rc_conn base, warm;
    if (rc_connect(&base, argv[2], NULL, NULL, NULL, NULL, NULL) != 0 ||
        rc_connect(&warm, argv[3], NULL, NULL, NULL, NULL, NULL) != 0)
        die("cannot connect");
    base.timeout_s = warm.timeout_s = 600;
    double tb[ROUNDS_MAX][M_N], tw[ROUNDS_MAX][M_N], cb[ROUNDS_MAX][M_N], cw[ROUNDS_MAX][M_N], s1[M_N], s2[M_N];
    round_on(&base, base_pid, "base", 0, s1, s2);
    round_on(&warm, warm_pid, "warm", 0, s1, s2);
    for (long r = 0; r < rounds; r++) {
        if (r % 2 == 0) {
            round_on(&base, base_pid, "base", (int)r + 1, tb[r], cb[r]);
            round_on(&warm, warm_pid, "warm", (int)r + 1, tw[r], cw[r]);
        } else {
            round_on(&warm, warm_pid, "warm", (int)r + 1, tw[r], cw[r]);
            round_on(&base, base_pid, "base", (int)r + 1, tb[r], cb[r]);
        }
    }
    printf("wall time:\n");
    summary(tb, tw, (int)rounds);
    if (base_pid > 0 && warm_pid > 0) {
        printf("server CPU time:\n");
        summary(cb, cw, (int)rounds);
    }
    rc_close(&base);
    rc_close(&warm);
    grpc_shutdown();
    return 0;
}
