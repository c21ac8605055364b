/* cairn build: builds a Dockerfile into an image in the local store. */
#include "client/cmd/commands.h"
#include "client/cmd/cli.h"

#include "client/engine/build.h"
#include "client/remote/cache.h"
#include "client/remote/config.h"
#include "client/store/index.h"
#include "client/store/store.h"
#include "common/strvec.h"

#include <errno.h>
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
            "      --progress auto|plain|tty\n"
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

static bool parse_epoch(const char *s, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < 0)
        return false;
    *out = v;
    return true;
}

int cairn_cmd_build(int argc, char **argv)
{
    struct cairn_build_opts o;
    memset(&o, 0, sizeof o);
    o.source_date_epoch = -1;
    o.compression = CAIRN_COMPRESS_GZIP;
    o.out = stdout;
    struct cairn_strvec tags, args, insecure;
    cairn_strvec_init(&tags);
    cairn_strvec_init(&args);
    cairn_strvec_init(&insecure);
    const char *progress = "auto";
    int status = 2;
    struct cairn_store *st = NULL;
    struct cairn_cache *cache = NULL;
    struct cairn_config cfg;
    cairn_config_init(&cfg);
    bool cache_flag = false;
    struct cairn_build_secret secrets[64];
    size_t nsecrets = 0;
    struct cairn_err cerr;
    cairn_err_clear(&cerr);
    if (cairn_config_load(&cfg, &cerr) != 0) {
        fprintf(stderr, "cairn build: %s\n", cerr.msg);
        goto out;
    }

    const char *env_epoch = getenv("SOURCE_DATE_EPOCH");
    if (env_epoch && env_epoch[0] && !parse_epoch(env_epoch, &o.source_date_epoch)) {
        fprintf(stderr, "cairn build: invalid SOURCE_DATE_EPOCH \"%s\"\n", env_epoch);
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        bool missing = false;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            build_usage(stdout);
            status = 0;
            goto out;
        } else if (strcmp(a, "--no-cache") == 0) {
            o.no_cache = true;
        } else if (strcmp(a, "--pull") == 0 || strcmp(a, "--pull=always") == 0 ||
                   strcmp(a, "--pull=true") == 0) {
            o.pull = CAIRN_BUILD_PULL_ALWAYS;
        } else if (strcmp(a, "--pull=missing") == 0 ||
                   strcmp(a, "--pull=false") == 0) {
            o.pull = CAIRN_BUILD_PULL_MISSING;
        } else if (strcmp(a, "--pull=never") == 0) {
            o.pull = CAIRN_BUILD_PULL_NEVER;
        } else if ((v = opt_value(argc, argv, &i, "--insecure-registry", NULL,
                                  &missing))) {
            if (cairn_strvec_push(&insecure, v))
                goto out;
        } else if (strcmp(a, "--explain") == 0) {
            o.explain = true;
        } else if ((v = opt_value(argc, argv, &i, "--file", "-f", &missing))) {
            o.dockerfile = v;
        } else if ((v = opt_value(argc, argv, &i, "--tag", "-t", &missing))) {
            if (cairn_strvec_push(&tags, v))
                goto out;
        } else if ((v = opt_value(argc, argv, &i, "--build-arg", NULL, &missing))) {
            if (cairn_strvec_push(&args, v))
                goto out;
        } else if ((v = opt_value(argc, argv, &i, "--target", NULL, &missing))) {
            o.target = v;
        } else if ((v = opt_value(argc, argv, &i, "--network", NULL, &missing))) {
            if (strcmp(v, "default") == 0)
                o.network = CAIRN_RUN_NET_DEFAULT;
            else if (strcmp(v, "host") == 0)
                o.network = CAIRN_RUN_NET_HOST;
            else if (strcmp(v, "none") == 0)
                o.network = CAIRN_RUN_NET_NONE;
            else {
                fprintf(stderr, "cairn build: --network must be default, "
                                "host or none\n");
                goto out;
            }
        } else if ((v = opt_value(argc, argv, &i, "--secret", NULL, &missing))) {
            if (nsecrets == sizeof secrets / sizeof secrets[0]) {
                fprintf(stderr, "cairn build: at most %zu --secret values\n",
                        sizeof secrets / sizeof secrets[0]);
                goto out;
            }
            char *sid = NULL, *sdata = NULL;
            size_t slen = 0;
            if (cairn_secret_parse(v, &sid, &sdata, &slen, &cerr) != 0) {
                fprintf(stderr, "cairn build: %s\n", cerr.msg);
                goto out;
            }
            secrets[nsecrets++] = (struct cairn_build_secret){sid, sdata, slen};
        } else if ((v = opt_value(argc, argv, &i, "--compression", NULL, &missing))) {
            if (strcmp(v, "gzip") == 0)
                o.compression = CAIRN_COMPRESS_GZIP;
            else if (strcmp(v, "zstd") == 0)
                o.compression = CAIRN_COMPRESS_ZSTD;
            else if (strcmp(v, "none") == 0)
                o.compression = CAIRN_COMPRESS_NONE;
            else {
                fprintf(stderr, "cairn build: --compression must be gzip, zstd or none\n");
                goto out;
            }
        } else if ((v = opt_value(argc, argv, &i, "--source-date-epoch", NULL, &missing))) {
            if (!parse_epoch(v, &o.source_date_epoch)) {
                fprintf(stderr, "cairn build: invalid --source-date-epoch \"%s\"\n", v);
                goto out;
            }
        } else if ((v = opt_value(argc, argv, &i, "--progress", NULL, &missing))) {
            progress = v;
        } else if ((v = opt_value(argc, argv, &i, "--cache", NULL, &missing))) {
            /* Flags replace the configured endpoints. */
            if (!cache_flag && cairn_config_set(&cfg, "cache", "", NULL) != 0)
                goto out;
            cache_flag = true;
            if (cairn_config_set(&cfg, "cache", v, &cerr) != 0)
                goto out;
        } else if ((v = opt_value(argc, argv, &i, "--cache-mode", NULL, &missing)) ||
                   (v = opt_value(argc, argv, &i, "--cache-token", NULL, &missing)) ||
                   (v = opt_value(argc, argv, &i, "--cache-ca", NULL, &missing)) ||
                   (v = opt_value(argc, argv, &i, "--cache-timeout", NULL, &missing)) ||
                   (v = opt_value(argc, argv, &i, "--cache-max-layer", NULL, &missing)) ||
                   (v = opt_value(argc, argv, &i, "--cache-min-rate", NULL, &missing))) {
            char key[32];
            snprintf(key, sizeof key, "%.*s", (int)strcspn(a + 2, "="), a + 2);
            if (cairn_config_set(&cfg, key, v, &cerr) != 0) {
                fprintf(stderr, "cairn build: %s\n", cerr.msg);
                goto out;
            }
        } else if (missing) {
            fprintf(stderr, "cairn build: %s needs a value\n", a);
            goto out;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "cairn build: unknown option %s\n", a);
            goto out;
        } else if (o.context == NULL) {
            o.context = a;
        } else {
            fprintf(stderr, "cairn build: only one CONTEXT may be given\n");
            goto out;
        }
    }
    if (o.context == NULL) {
        fprintf(stderr, "cairn build: missing CONTEXT\n");
        build_usage(stderr);
        goto out;
    }
    o.tty = strcmp(progress, "tty") == 0 ||
            (strcmp(progress, "auto") == 0 && isatty(STDOUT_FILENO));
    o.tags = (const char *const *)tags.v;
    o.ntags = tags.n;
    o.build_args = (const char *const *)args.v;
    o.nbuild_args = args.n;
    o.secrets = secrets;
    o.nsecrets = nsecrets;

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
        fprintf(stderr, "cairn build: %s\n", err.msg[0] ? err.msg : cairn_strerror(rc));
        goto out;
    }
    if (cfg.urls.n > 0) {
        rc = cairn_cache_open(&cfg, &cache, &err);
        if (rc) {
            fprintf(stderr, "cairn build: %s\n", err.msg);
            goto out;
        }
        o.cache = cache;
    }
    if (cairn_cli_insecure_env(&insecure))
        goto out;
    o.insecure_registries = (const char *const *)insecure.v;
    o.ninsecure_registries = insecure.n;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char id[CAIRN_DIGEST_STR_LEN];
    struct cairn_build_stats stats;
    rc = cairn_build_run(st, &o, id, &stats, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fflush(stdout);
    if (rc) {
        fprintf(stderr, "cairn build: %s\n", err.msg[0] ? err.msg : cairn_strerror(rc));
        goto out;
    }
    printf("Successfully built %.12s\n", id + 7);
    for (size_t i = 0; i < tags.n; i++) {
        const char *t = tags.v[i];
        bool has_tag = strchr(strrchr(t, '/') ? strrchr(t, '/') : t, ':') != NULL;
        printf("Successfully tagged %s%s\n", t, has_tag ? "" : ":latest");
    }
    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (cache)
        printf("cairn: %u steps, %u local hits, %u remote hits, %u run, "
               "%llu bytes down, %llu bytes up, %.2fs\n",
               stats.steps, stats.cached, stats.remote, stats.run,
               (unsigned long long)stats.bytes_down,
               (unsigned long long)stats.bytes_up, secs);
    else
        printf("cairn: %u steps, %u layers from cache, %u run, %.2fs\n",
               stats.steps, stats.cached, stats.run, secs);
    status = 0;
out:
    cairn_cache_close(cache);
    cairn_config_clear(&cfg);
    cairn_store_close(st);
    cairn_strvec_free(&tags);
    cairn_strvec_free(&args);
    cairn_strvec_free(&insecure);
    for (size_t i = 0; i < nsecrets; i++) {
        free((char *)secrets[i].id);
        /* The secret's bytes do not outlive the build in our memory. */
        explicit_bzero((char *)secrets[i].data, secrets[i].len);
        free((char *)secrets[i].data);
    }
    return status;
}
