/* cairn build: builds a Dockerfile into an image in the local store. */
#include "client/cmd/commands.h"
#include "client/cmd/build_report.h"
#include "client/cmd/cli.h"

#include "client/engine/build.h"
#include "client/remote/cache.h"
#include "client/remote/config.h"
#include "client/store/index.h"
#include "client/store/store.h"
#include "common/strvec.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void build_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn build [OPTIONS] CONTEXT\n\n"
            "Builds an image from a Dockerfile into the local store.\n\n"
            "Options:\n"
            "  -f, --file PATH              Dockerfile (default "
            "CONTEXT/Dockerfile)\n"
            "  -t, --tag NAME[:TAG]         name the image (repeatable)\n"
            "      --build-arg K=V          set a build-time variable "
            "(repeatable)\n"
            "      --target STAGE           build this stage\n"
            "      --no-cache               run every step\n"
            "      --pull[=always|missing|never]  FROM images: re-resolve "
            "every tag in\n"
            "                               its registry, pull only missing "
            "ones\n"
            "                               (the default) or use the store "
            "only\n"
            "      --insecure-registry HOST[:PORT]  no TLS checks for HOST "
            "(repeatable)\n"
            "      --push                   push every -t to its registry "
            "after the build\n"
            "                               (zstd layers only with "
            "--compression zstd)\n"
            "      --explain                say why each step missed the "
            "cache\n"
            "                               (compared with the last build "
            "of the first -t)\n"
            "      --network default|host|none   network of RUN steps "
            "without\n"
            "                               RUN --network (default: a "
            "private one\n"
            "                               through pasta, no host "
            "loopback)\n"
            "      --compression gzip|zstd|none   layer compression "
            "(default gzip)\n"
            "      --source-date-epoch N    clamp times (or "
            "SOURCE_DATE_EPOCH)\n"
            "      --progress auto|plain|tty|json   json: one JSON line per "
            "step and\n"
            "                               the totals on stdout (the log "
            "goes to stderr)\n"
            "      --metadata-file FILE     write a JSON report of the "
            "build's steps\n"
            "                               and totals (docs/build.md)\n"
            "      --secret id=ID[,src=PATH|env=VAR]   a secret for RUN "
            "--mount=type=secret\n"
            "                               (repeatable; never stored)\n"
            "      --cache URL              shared cache, grpc://host:port"
            "[/instance]\n"
            "                               or grpcs://... (repeatable; or "
            "CAIRN_CACHE)\n"
            "      --cache-mode read|readwrite   (default readwrite)\n"
            "      --cache-token TOKEN      bearer token (or "
            "CAIRN_CACHE_TOKEN)\n"
            "      --cache-ca FILE          CA certificates for grpcs://\n"
            "      --cache-timeout DUR      per-call deadline (default 30s)\n"
            "      --cache-max-layer SIZE   largest layer blob fetched "
            "(default 10G;\n"
            "                               4x that uncompressed)\n"
            "      --cache-min-rate RATE    slowest blob stream kept, over "
            "a\n"
            "                               --cache-timeout window "
            "(default 256k/s)\n"
            "      --sign-key PATH          sign uploaded entries with this "
            "key\n"
            "                               (`cairn key generate`; or "
            "CAIRN_SIGN_KEY)\n"
            "      --trust 'SCOPE KEY'      from the caches SCOPE names (a "
            "URL, an\n"
            "                               instance or *), use only "
            "entries KEY signed\n"
            "                               (repeatable; or CAIRN_TRUST)\n"
            "      --cache-verify PERCENT   also run this share (0-100) of "
            "the remote\n"
            "                               hits locally and compare "
            "their layers\n"
            "                               (the same steps each time; "
            "100: all)\n"
            "Settings also come from $XDG_CONFIG_HOME/cairn/config "
            "(docs/remote.md).\n");
}

/* Matches "--name VALUE", "--name=VALUE" and the short form. */
static const char *opt_value(int argc, char **argv, int *i, const char *lng,
                             const char *shrt, bool *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(lng);
    if (strncmp(a, lng, n) == 0 && a[n] == '=')
        return a + n + 1;
    if (strcmp(a, lng) == 0 || (shrt && strcmp(a, shrt) == 0)) {
        if (*i + 1 >= argc) {
            *missing = true;
            return NULL;
        }
        return argv[++*i];
    }
    return NULL;
}

/* --cache-verify: a whole percentage, digits only. */
static bool parse_percent(const char *s, unsigned *out)
{
    unsigned v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 3)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 100)
        return false;
    *out = v;
    return true;
}

/* What the command line and the settings ask of one build. */
struct build_cli {
    struct cairn_build_opts o;
    struct cairn_strvec tags, args, insecure;
    const char *progress;
    const char *metadata_file; /* --metadata-file */
    bool push; /* --push: every -t after the build */
    struct cairn_config cfg;
    bool cache_flag; /* a --cache replaced the configured endpoints */
    struct cairn_build_secret secrets[64];
    size_t nsecrets;
    struct cairn_err cerr;
};

/* The options without a value. Returns 1 when a is one of them, 0 when
 * not, 2 after --help. */
static int build_flag(struct build_cli *c, const char *a)
{
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        build_usage(stdout);
        return 2;
    } else if (strcmp(a, "--push") == 0) {
        c->push = true;
    } else if (strcmp(a, "--no-cache") == 0) {
        c->o.no_cache = true;
    } else if (strcmp(a, "--pull") == 0 || strcmp(a, "--pull=always") == 0 ||
               strcmp(a, "--pull=true") == 0) {
        c->o.pull = CAIRN_BUILD_PULL_ALWAYS;
    } else if (strcmp(a, "--pull=missing") == 0 ||
               strcmp(a, "--pull=false") == 0) {
        c->o.pull = CAIRN_BUILD_PULL_MISSING;
    } else if (strcmp(a, "--pull=never") == 0) {
        c->o.pull = CAIRN_BUILD_PULL_NEVER;
    } else if (strcmp(a, "--explain") == 0) {
        c->o.explain = true;
    } else {
        return 0;
    }
    return 1;
}

/* The shared cache's options. Returns 1 when argv[*i] is one of them
 * (v its value), 0 when not, -1 after an error (said). */
static int build_cache_opt(struct build_cli *c, int argc, char **argv, int *i,
                           bool *missing)
{
    const char *a = argv[*i], *v;
    if ((v = opt_value(argc, argv, i, "--cache", NULL, missing))) {
        /* Flags replace the configured endpoints. */
        if (!c->cache_flag && cairn_config_set(&c->cfg, "cache", "", NULL) != 0)
            return -1;
        c->cache_flag = true;
        return cairn_config_set(&c->cfg, "cache", v, &c->cerr) != 0 ? -1 : 1;
    }
    if ((v = opt_value(argc, argv, i, "--cache-mode", NULL, missing)) ||
        (v = opt_value(argc, argv, i, "--cache-token", NULL, missing)) ||
        (v = opt_value(argc, argv, i, "--cache-ca", NULL, missing)) ||
        (v = opt_value(argc, argv, i, "--cache-timeout", NULL, missing)) ||
        (v = opt_value(argc, argv, i, "--cache-max-layer", NULL, missing)) ||
        (v = opt_value(argc, argv, i, "--cache-min-rate", NULL, missing)) ||
        (v = opt_value(argc, argv, i, "--sign-key", NULL, missing)) ||
        (v = opt_value(argc, argv, i, "--trust", NULL, missing))) {
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)strcspn(a + 2, "="), a + 2);
        if (cairn_config_set(&c->cfg, key, v, &c->cerr) != 0) {
            fprintf(stderr, "cairn build: %s\n", c->cerr.msg);
            return -1;
        }
        return 1;
    }
    return 0;
}

/* One --secret value. Returns 0 or -1 after an error (said). */
static int build_secret_add(struct build_cli *c, const char *v)
{
    if (c->nsecrets == sizeof c->secrets / sizeof c->secrets[0]) {
        fprintf(stderr, "cairn build: at most %zu --secret values\n",
                sizeof c->secrets / sizeof c->secrets[0]);
        return -1;
    }
    char *sid = NULL, *sdata = NULL;
    size_t slen = 0;
    if (cairn_secret_parse(v, &sid, &sdata, &slen, &c->cerr) != 0) {
        fprintf(stderr, "cairn build: %s\n", c->cerr.msg);
        return -1;
    }
    c->secrets[c->nsecrets++] = (struct cairn_build_secret){sid, sdata, slen};
    return 0;
}

/* The options with a value, but the cache's. Returns 1 when argv[*i] is
 * one of them, 0 when not, -1 after an error (said). */
static int build_opt(struct build_cli *c, int argc, char **argv, int *i,
                     bool *missing)
{
    const char *v;
    if ((v = opt_value(argc, argv, i, "--insecure-registry", NULL, missing))) {
        return cairn_strvec_push(&c->insecure, v) ? -1 : 1;
    } else if ((v = opt_value(argc, argv, i, "--file", "-f", missing))) {
        c->o.dockerfile = v;
    } else if ((v = opt_value(argc, argv, i, "--tag", "-t", missing))) {
        return cairn_strvec_push(&c->tags, v) ? -1 : 1;
    } else if ((v = opt_value(argc, argv, i, "--build-arg", NULL, missing))) {
        return cairn_strvec_push(&c->args, v) ? -1 : 1;
    } else if ((v = opt_value(argc, argv, i, "--target", NULL, missing))) {
        c->o.target = v;
    } else if ((v = opt_value(argc, argv, i, "--network", NULL, missing))) {
        if (strcmp(v, "default") == 0)
            c->o.network = CAIRN_RUN_NET_DEFAULT;
        else if (strcmp(v, "host") == 0)
            c->o.network = CAIRN_RUN_NET_HOST;
        else if (strcmp(v, "none") == 0)
            c->o.network = CAIRN_RUN_NET_NONE;
        else {
            fprintf(stderr, "cairn build: --network must be default, "
                            "host or none\n");
            return -1;
        }
    } else if ((v = opt_value(argc, argv, i, "--secret", NULL, missing))) {
        return build_secret_add(c, v) ? -1 : 1;
    } else if ((v = opt_value(argc, argv, i, "--compression", NULL, missing))) {
        if (strcmp(v, "gzip") == 0)
            c->o.compression = CAIRN_COMPRESS_GZIP;
        else if (strcmp(v, "zstd") == 0)
            c->o.compression = CAIRN_COMPRESS_ZSTD;
        else if (strcmp(v, "none") == 0)
            c->o.compression = CAIRN_COMPRESS_NONE;
        else {
            fprintf(stderr, "cairn build: --compression must be gzip, zstd "
                            "or none\n");
            return -1;
        }
    } else if ((v = opt_value(argc, argv, i, "--source-date-epoch", NULL,
                              missing))) {
        if (!cairn_cli_epoch_parse(v, &c->o.source_date_epoch)) {
            fprintf(stderr,
                    "cairn build: invalid --source-date-epoch \"%s\"\n", v);
            return -1;
        }
    } else if ((v = opt_value(argc, argv, i, "--cache-verify", NULL,
                              missing))) {
        if (!parse_percent(v, &c->o.cache_verify)) {
            fprintf(stderr,
                    "cairn build: --cache-verify wants a percentage from 0 "
                    "to 100, not \"%s\"\n",
                    v);
            return -1;
        }
    } else if ((v = opt_value(argc, argv, i, "--progress", NULL, missing))) {
        c->progress = v;
    } else if ((v = opt_value(argc, argv, i, "--metadata-file", NULL,
                              missing))) {
        c->metadata_file = v;
    } else {
        return build_cache_opt(c, argc, argv, i, missing);
    }
    return 1;
}

/* Reads the command line into c. Returns -1 to go on, else the exit
 * status (0 after --help, 2 for bad usage). */
static int build_args_parse(struct build_cli *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool missing = false;
        int r = build_flag(c, a);
        if (r == 2)
            return 0;
        if (r == 0)
            r = build_opt(c, argc, argv, &i, &missing);
        if (r < 0)
            return 2;
        if (r > 0)
            continue;
        if (missing) {
            fprintf(stderr, "cairn build: %s needs a value\n", a);
            return 2;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "cairn build: unknown option %s\n", a);
            return 2;
        } else if (c->o.context == NULL) {
            c->o.context = a;
        } else {
            fprintf(stderr, "cairn build: only one CONTEXT may be given\n");
            return 2;
        }
    }
    if (c->o.context == NULL) {
        fprintf(stderr, "cairn build: missing CONTEXT\n");
        build_usage(stderr);
        return 2;
    }
    return -1;
}

/* Docker's closing lines, then cairn's summary of the build's work. */
static void build_summary(FILE *out, const struct build_cli *c, const char *id,
                          const struct cairn_build_stats *stats, bool cache,
                          double secs)
{
    fprintf(out, "Successfully built %.12s\n", id + 7);
    for (size_t i = 0; i < c->tags.n; i++) {
        const char *t = c->tags.v[i];
        bool has_tag =
            strchr(strrchr(t, '/') ? strrchr(t, '/') : t, ':') != NULL;
        fprintf(out, "Successfully tagged %s%s\n", t, has_tag ? "" : ":latest");
    }
    if (cache) {
        fprintf(out,
                "cairn: %u steps, %u local hits, %u remote hits, %u run, "
                "%llu bytes down, %llu bytes up, %.2fs\n",
                stats->steps, stats->cached, stats->remote, stats->run,
                (unsigned long long)stats->bytes_down,
                (unsigned long long)stats->bytes_up, secs);
        /* A line of its own: the one above keeps its shape for scripts. */
        if (stats->waited > 0)
            fprintf(out, "cairn: waited for another builder on %u step%s\n",
                    stats->waited, stats->waited == 1 ? "" : "s");
    } else {
        fprintf(out, "cairn: %u steps, %u layers from cache, %u run, %.2fs\n",
                stats->steps, stats->cached, stats->run, secs);
    }
}

/* Ends the build's report: the totals line of --progress json and the
 * --metadata-file. berr is the build's error (NULL: it succeeded, id is
 * its image). Returns 0, or -1 when the file could not be written (said). */
static int build_report_finish(const struct build_cli *c,
                               struct build_report *r,
                               const struct cairn_build_stats *stats,
                               double secs, const char *id,
                               const struct cairn_err *berr, int brc)
{
    const char *msg = NULL;
    if (berr)
        msg = berr->msg[0] ? berr->msg : cairn_strerror(brc);
    struct build_report_end e = {
        .stats = stats,
        .secs = secs,
        .image_id = id,
        .tags = (const char *const *)c->tags.v,
        .ntags = c->tags.n,
        .error = msg,
    };
    build_report_totals_line(r, &e);
    if (c->metadata_file == NULL)
        return 0;
    struct cairn_err err;
    cairn_err_clear(&err);
    if (build_report_write(r, &e, c->metadata_file, &err) != 0) {
        fprintf(stderr, "cairn build: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void *cache_closer(void *arg)
{
    cairn_cache_close(arg);
    return NULL;
}

int cairn_cmd_build(int argc, char **argv)
{
    struct build_cli c;
    memset(&c, 0, sizeof c);
    c.o.source_date_epoch = -1;
    c.o.compression = CAIRN_COMPRESS_GZIP;
    c.o.out = stdout;
    cairn_strvec_init(&c.tags);
    cairn_strvec_init(&c.args);
    cairn_strvec_init(&c.insecure);
    c.progress = "auto";
    int status = 2;
    struct cairn_store *st = NULL;
    struct cairn_cache *cache = NULL;
    struct build_report *report = NULL;
    cairn_config_init(&c.cfg);
    cairn_err_clear(&c.cerr);
    if (cairn_config_load(&c.cfg, &c.cerr) != 0) {
        fprintf(stderr, "cairn build: %s\n", c.cerr.msg);
        goto out;
    }

    const char *env_epoch = getenv("SOURCE_DATE_EPOCH");
    if (env_epoch && env_epoch[0] &&
        !cairn_cli_epoch_parse(env_epoch, &c.o.source_date_epoch)) {
        fprintf(stderr, "cairn build: invalid SOURCE_DATE_EPOCH \"%s\"\n",
                env_epoch);
        goto out;
    }
    int r = build_args_parse(&c, argc, argv);
    if (r >= 0) {
        status = r;
        goto out;
    }
    struct cairn_build_opts *o = &c.o;
    bool json_lines = strcmp(c.progress, "json") == 0;
    if (!json_lines && strcmp(c.progress, "auto") != 0 &&
        strcmp(c.progress, "plain") != 0 && strcmp(c.progress, "tty") != 0) {
        fprintf(stderr, "cairn build: --progress must be auto, plain, tty "
                        "or json\n");
        goto out;
    }
    /* With JSON lines on stdout, the log (steps, RUN output, summary)
     * goes to stderr. */
    FILE *log = json_lines ? stderr : stdout;
    o->out = log;
    o->tty = strcmp(c.progress, "tty") == 0 ||
             (strcmp(c.progress, "auto") == 0 && isatty(STDOUT_FILENO));
    o->tags = (const char *const *)c.tags.v;
    o->ntags = c.tags.n;
    o->build_args = (const char *const *)c.args.v;
    o->nbuild_args = c.args.n;
    o->secrets = c.secrets;
    o->nsecrets = c.nsecrets;

    if (c.push && c.tags.n == 0) {
        fprintf(stderr, "cairn build: --push needs a name to push: -t "
                        "HOST/REPO[:TAG]\n");
        goto out;
    }
    status = 1;
    struct cairn_err err;
    cairn_err_clear(&err);
    char root[4096];
    if (cairn_root_path(root, sizeof root) != 0) {
        fprintf(stderr, "cairn build: store path too long\n");
        goto out;
    }
    int rc = cairn_store_open(root, &st, &err);
    if (rc) {
        fprintf(stderr, "cairn build: %s\n",
                err.msg[0] ? err.msg : cairn_strerror(rc));
        goto out;
    }
    if (c.cfg.urls.n > 0) {
        rc = cairn_cache_open(&c.cfg, &cache, &err);
        if (rc) {
            fprintf(stderr, "cairn build: %s\n", err.msg);
            goto out;
        }
        o->cache = cache;
    }
    if (cairn_cli_insecure_env(&c.insecure))
        goto out;
    for (size_t i = 0; i < c.cfg.insecure.n; i++)
        if (cairn_strvec_push(&c.insecure, c.cfg.insecure.v[i]))
            goto out;
    o->insecure_registries = (const char *const *)c.insecure.v;
    o->ninsecure_registries = c.insecure.n;
    if ((c.metadata_file || json_lines) &&
        build_report_new(c.metadata_file != NULL, json_lines ? stdout : NULL,
                         &report) != 0) {
        fprintf(stderr, "cairn build: out of memory\n");
        goto out;
    }
    if (report) {
        o->on_step = build_report_step;
        o->on_step_arg = report;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char id[CAIRN_DIGEST_STR_LEN];
    struct cairn_build_stats stats;
    rc = cairn_build_run(st, o, id, &stats, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fflush(log);
    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* A failed build is reported too, its last step marked "failed". */
    int wrc = report ? build_report_finish(&c, report, &stats, secs,
                                           rc ? NULL : id, rc ? &err : NULL, rc)
                     : 0;
    if (rc) {
        fprintf(stderr, "cairn build: %s\n",
                err.msg[0] ? err.msg : cairn_strerror(rc));
        goto out;
    }
    if (wrc)
        goto out;
    build_summary(log, &c, id, &stats, cache != NULL, secs);
    fflush(log);
    /* Every -t, as docker build --push does; the first failure ends it
     * (the image stays built and tagged). zstd layers were asked for.
     * Under --progress json only NAME@DIGEST lines follow the totals. */
    for (size_t i = 0; c.push && i < c.tags.n; i++)
        if (cairn_cmd_push_run(st, c.tags.v[i], NULL,
                               (const char *const *)c.insecure.v,
                               c.insecure.n,
                               o->compression == CAIRN_COMPRESS_ZSTD,
                               json_lines) != 0)
            goto out;
    status = 0;
out:
    build_report_free(report);
    /* Uploads read the store: they are over before its close. A build
     * that succeeded is durable and said so; the process exits next, so
     * it leaves gRPC up (cairn_cache_leave: gRPC's shutdown would join its
     * threads and unmap their stacks, milliseconds that four builders
     * started together all wait at once, docs/build.md). Any other end
     * tears down in full, overlapping the store's close. */
    cairn_cache_finish(cache);
    pthread_t closer;
    bool leave = status == 0;
    if (leave)
        cairn_cache_leave(cache);
    bool closing = !leave && cache != NULL &&
                   pthread_create(&closer, NULL, cache_closer, cache) == 0;
    if (!leave && !closing)
        cairn_cache_close(cache);
    cairn_store_close(st);
    if (closing)
        pthread_join(closer, NULL);
    cairn_config_clear(&c.cfg);
    cairn_strvec_free(&c.tags);
    cairn_strvec_free(&c.args);
    cairn_strvec_free(&c.insecure);
    for (size_t i = 0; i < c.nsecrets; i++) {
        free((char *)c.secrets[i].id);
        /* The secret's bytes do not outlive the build in our memory. */
        explicit_bzero((char *)c.secrets[i].data, c.secrets[i].len);
        free((char *)c.secrets[i].data);
    }
    return status;
}
