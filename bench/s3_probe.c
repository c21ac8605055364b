/* s3_probe: drives cairnd's S3 client (server/s3/s3.h) from the shell, for
 * tests/integration/test_s3_client.sh and bench/s3. Each command makes one
 * client call; on failure it prints "error <rc> (<cairn_strerror>): <msg>"
 * to stderr and exits 1 (100 for a usage or local error).
 *
 *   s3_probe [--url s3://B[/P]] [--endpoint URL] [--region R]
 *            [--creds-file F] [--profile P] [--part-size BYTES]
 *            [--parallel N] [--timeout S] [--threads N] [--time] CMD ARGS...
 *
 * --threads N runs the command in N threads at once on one client (the way
 * cairnd's threads share it); their output lines interleave, and the exit
 * code is the first failure's (each failure is printed).
 * Defaults come from S3_URL, S3_ENDPOINT and S3_REGION; credentials the
 * AWS way (cd_s3_creds_load). --time prints "<cmd> <ms> ms <MiB/s>" to
 * stdout after a successful transfer. */
#include "cachekey/digest.h"
#include "common/error.h"
#include "server/s3/s3.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_LOCAL 100

static bool timing;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report_time(const char *what, double t0, uint64_t bytes)
{
    if (!timing)
        return;
    double dt = now_s() - t0;
    printf("%s %.1f ms %.1f MiB/s\n", what, dt * 1e3,
           dt > 0 ? (double)bytes / (1 << 20) / dt : 0.0);
}

static uint64_t parse_u64(const char *s)
{
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-') {
        fprintf(stderr, "not a number: %s\n", s);
        exit(EXIT_LOCAL);
    }
    return v;
}

static int fail(int rc, const struct cairn_err *err)
{
    fprintf(stderr, "error %d (%s): %s\n", rc, cairn_strerror(rc),
            err->msg[0] ? err->msg : "");
    return 1;
}

static int open_size(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        exit(EXIT_LOCAL);
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

static int cmd_check(struct cd_s3 *s3, char **argv, struct cairn_err *err)
{
    (void)argv;
    int rc = cd_s3_check(s3, err);
    return rc ? fail(rc, err) : 0;
}

static int cmd_put(struct cd_s3 *s3, char **argv, struct cairn_err *err)
{
    uint64_t size;
    int fd = open_size(argv[1], &size);
    char *buf = malloc(size ? size : 1);
    ssize_t n = buf ? read(fd, buf, size) : -1;
    close(fd);
    if (n < 0 || (uint64_t)n != size) {
        fprintf(stderr, "%s: short read\n", argv[1]);
        exit(EXIT_LOCAL);
    }
    double t0 = now_s();
    int rc = cd_s3_put(s3, argv[0], buf, size, err);
    free(buf);
    if (rc)
        return fail(rc, err);
    report_time("put", t0, size);
    return 0;
}

static int cmd_put_fd(struct cd_s3 *s3, char **argv, struct cairn_err *err)
{
    uint64_t size;
    int fd = open_size(argv[1], &size);
    double t0 = now_s();
    int rc = cd_s3_put_fd(s3, argv[0], fd, size, err);
    close(fd);
    if (rc)
        return fail(rc, err);
    report_time("put-fd", t0, size);
    return 0;
}

static int cmd_head(struct cd_s3 *s3, char **argv, struct cairn_err *err)
{
    uint64_t size = 0;
    int rc = cd_s3_head(s3, argv[0], &size, err);
    if (rc)
        return fail(rc, err);
    printf("%" PRIu64 "\n", size);
    return 0;
}

struct sink {
    int fd;              /* -1: hash only */
    struct ck_sha256 *h; /* NULL: no hash */
    uint64_t n;
};

static int to_sink(void *ctx, const void *data, size_t n)
{
    struct sink *s = ctx;
    if (s->fd >= 0) {
        const char *p = data;
        size_t left = n;
        while (left > 0) {
            ssize_t w = write(s->fd, p, left);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return -errno;
            p += w;
            left -= (size_t)w;
        }
    }
    if (s->h && ck_sha256_update(s->h, data, n) != 0)
        return CAIRN_E_CRYPTO;
    s->n += n;
    return 0;
}

/* get KEY OUT|- [OFFSET LEN]: OUT "-" prints the sha256 instead. */
static int cmd_get(struct cd_s3 *s3, char **argv, struct cairn_err *err)
{
    uint64_t off = 0, len = 0;
    int rc;
    if (argv[2] != NULL) {
        if (argv[3] == NULL) {
            fprintf(stderr, "get KEY OUT [OFFSET LEN]\n");
            return EXIT_LOCAL;
        }
        off = parse_u64(argv[2]);
        len = parse_u64(argv[3]);
    } else {
        rc = cd_s3_head(s3, argv[0], &len, err);
        if (rc)
            return fail(rc, err);
    }
    struct sink s = {.fd = -1};
    bool hash = strcmp(argv[1], "-") == 0;
    if (hash && ck_sha256_new(&s.h) != 0)
        return EXIT_LOCAL;
    if (!hash) {
        s.fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (s.fd < 0) {
            fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
            return EXIT_LOCAL;
        }
    }
    double t0 = now_s();
    rc = cd_s3_get(s3, argv[0], off, len, to_sink, &s, err);
    if (s.fd >= 0)
        close(s.fd);
    if (rc == 0 && hash) {
        uint8_t bin[CK_SHA256_LEN];
        char hex[CK_SHA256_HEX_LEN + 1];
        ck_sha256_final(s.h, bin);
        ck_hex_encode(bin, hex);
        printf("%s\n", hex);
    }
    ck_sha256_free(s.h);
    if (rc)
        return fail(rc, err);
    if (s.n != len) {
        fprintf(stderr, "got %" PRIu64 " bytes of %" PRIu64 "\n", s.n, len);
        return 1;
    }
    report_time("get", t0, len);
    return 0;
}

/* head-many FILE: keys one per line; prints 1 or 0 per key, in order. */
static int cmd_head_many(struct cd_s3 *s3, char **argv, struct cairn_err *err)
{
    FILE *f = fopen(argv[0], "r");
    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", argv[0], strerror(errno));
        return EXIT_LOCAL;
    }
    char **keys = NULL, line[CD_S3_MAX_KEY + 2];
    size_t n = 0, cap = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            keys = realloc(keys, cap * sizeof *keys);
            if (keys == NULL)
                exit(EXIT_LOCAL);
        }
        keys[n++] = strdup(line);
    }
    fclose(f);
    bool *present = calloc(n ? n : 1, sizeof *present);
    double t0 = now_s();
    int rc = cd_s3_head_many(s3, (const char *const *)keys, n, present, err);
    if (rc == 0) {
        report_time("head-many", t0, 0);
        if (!timing)
            for (size_t i = 0; i < n; i++)
                printf("%d\n", present[i] ? 1 : 0);
    }
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    free(present);
    return rc ? fail(rc, err) : 0;
}

static int cmd_delete(struct cd_s3 *s3, char **argv, struct cairn_err *err)
{
    int rc = cd_s3_delete(s3, argv[0], err);
    return rc ? fail(rc, err) : 0;
}

static const struct {
    const char *name;
    int nargs;
    int (*fn)(struct cd_s3 *, char **, struct cairn_err *);
    const char *help;
} cmds[] = {
    {"check", 0, cmd_check, "HEAD on the bucket"},
    {"put", 2, cmd_put, "KEY FILE: PUT from memory (signed sha256)"},
    {"put-fd", 2, cmd_put_fd, "KEY FILE: PUT or multipart from the file"},
    {"head", 1, cmd_head, "KEY: prints the size"},
    {"get", 2, cmd_get, "KEY OUT|- [OFFSET LEN]: ranged parallel GET"},
    {"head-many", 1, cmd_head_many, "FILE: HEAD each key, prints 1/0"},
    {"delete", 1, cmd_delete, "KEY"},
};

static int usage(void)
{
    fprintf(stderr, "usage: s3_probe [--url s3://B[/P]] [--endpoint URL] "
                    "[--region R] [--creds-file F] [--profile P] "
                    "[--part-size N] [--parallel N] [--timeout S] [--time] "
                    "CMD ARGS\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(stderr, "  %-10s %s\n", cmds[i].name, cmds[i].help);
    return EXIT_LOCAL;
}

struct job {
    struct cd_s3 *s3;
    int (*fn)(struct cd_s3 *, char **, struct cairn_err *);
    char **argv;
    int rc;
    struct cairn_err err;
};

static void *job_run(void *arg)
{
    struct job *j = arg;
    j->rc = j->fn(j->s3, j->argv, &j->err);
    return NULL;
}

/* Runs fn in n threads at once on the same client. */
static int run_threads(struct cd_s3 *s3,
                       int (*fn)(struct cd_s3 *, char **, struct cairn_err *),
                       char **argv, unsigned n)
{
    struct job *jobs = calloc(n, sizeof *jobs);
    pthread_t *tids = calloc(n, sizeof *tids);
    if (jobs == NULL || tids == NULL)
        exit(EXIT_LOCAL);
    fflush(stdout);
    for (unsigned t = 0; t < n; t++) {
        jobs[t] = (struct job){.s3 = s3, .fn = fn, .argv = argv};
        if (pthread_create(&tids[t], NULL, job_run, &jobs[t]) != 0)
            exit(EXIT_LOCAL);
    }
    int rc = 0;
    for (unsigned t = 0; t < n; t++) {
        pthread_join(tids[t], NULL);
        if (jobs[t].rc && rc == 0)
            rc = jobs[t].rc;
    }
    free(jobs);
    free(tids);
    return rc;
}

int main(int argc, char **argv)
{
    struct cd_s3_opts o = {.url = getenv("S3_URL"),
                           .endpoint = getenv("S3_ENDPOINT"),
                           .region = getenv("S3_REGION"),
                           .path_style = true};
    const char *creds_file = NULL, *profile = NULL;
    unsigned threads = 1;
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--time") == 0) {
            timing = true;
            i--;
        } else if (strcmp(k, "--url") == 0) {
            o.url = v;
        } else if (strcmp(k, "--endpoint") == 0) {
            o.endpoint = v;
        } else if (strcmp(k, "--region") == 0) {
            o.region = v;
        } else if (strcmp(k, "--creds-file") == 0) {
            creds_file = v;
        } else if (strcmp(k, "--profile") == 0) {
            profile = v;
        } else if (strcmp(k, "--part-size") == 0) {
            o.part_size = (size_t)parse_u64(v);
        } else if (strcmp(k, "--parallel") == 0) {
            o.parallel = (unsigned)parse_u64(v);
        } else if (strcmp(k, "--threads") == 0) {
            threads = (unsigned)parse_u64(v);
            if (threads == 0 || threads > 64)
                return usage();
        } else if (strcmp(k, "--timeout") == 0) {
            o.timeout_s = (unsigned)parse_u64(v);
        } else {
            return usage();
        }
    }
    if (i >= argc)
        return usage();
    struct cairn_err err = {0};
    struct cd_s3_creds creds;
    int rc = cd_s3_creds_load(creds_file, profile, &creds, &err);
    if (rc)
        return fail(rc, &err);
    o.creds = &creds;
    for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
        if (strcmp(argv[i], cmds[c].name) != 0)
            continue;
        if (argc - i - 1 < cmds[c].nargs)
            return usage();
        struct cd_s3 *s3 = NULL;
        rc = cd_s3_open(&o, &s3, &err);
        if (rc)
            return fail(rc, &err);
        if (threads > 1)
            rc = run_threads(s3, cmds[c].fn, argv + i + 1, threads);
        else
            rc = cmds[c].fn(s3, argv + i + 1, &err);
        cd_s3_close(s3);
        return rc;
    }
    return usage();
}
