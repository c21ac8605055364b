#include "server/config.h"

#include "common/units.h"
#include "server/store/store.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The decimal number s starts with (no sign, no space), and where it
 * ends. CAIRN_E_INVAL when s does not start with a digit or overflows. */
static int parse_digits(const char *s, unsigned long long *v, const char **end)
{
    if (s == NULL || *s < '0' || *s > '9')
        return CAIRN_E_INVAL;
    errno = 0;
    char *e = NULL;
    unsigned long long n = strtoull(s, &e, 10);
    if (errno != 0)
        return CAIRN_E_INVAL;
    *v = n;
    *end = e;
    return 0;
}

int cd_size_parse(const char *s, uint64_t *out)
{
    return cairn_units_size_parse(s, 0, UINT64_MAX, out);
}

int cd_duration_parse(const char *s, unsigned *out)
{
    unsigned long long v;
    const char *end;
    if (parse_digits(s, &v, &end) != 0)
        return CAIRN_E_INVAL;
    static const struct {
        char suffix;
        unsigned seconds;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    unsigned mul = 1;
    if (*end != '\0') {
        size_t i = 0;
        while (i < sizeof units / sizeof *units && units[i].suffix != *end)
            i++;
        if (i == sizeof units / sizeof *units || end[1] != '\0')
            return CAIRN_E_INVAL;
        mul = units[i].seconds;
    }
    if (v > UINT_MAX / mul)
        return CAIRN_E_INVAL;
    *out = (unsigned)(v * mul);
    return 0;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    unsigned long long v;
    const char *end;
    if (parse_digits(s, &v, &end) != 0 || *end != '\0' || v < min || v > max)
        return CAIRN_E_INVAL;
    *out = (unsigned)v;
    return 0;
}

enum opt_kind { OPT_STRING, OPT_SIZE, OPT_UINT, OPT_DURATION, OPT_FLAG };


static const struct opt {
    const char *name;
    enum opt_kind kind;
    size_t offset;
    uint64_t min, max; /* bounds of OPT_UINT, OPT_DURATION (seconds) and
                        * OPT_SIZE (bytes, a multiple of min, which is
                        * 1 KiB or 1 MiB; 0, 0: any size) */
    const char *help;  /* NULL: hidden (testing) option */
} opts[] = {
    {"--listen", OPT_STRING, offsetof(struct cd_config, listen), 0, 0,
     "ADDR:PORT to serve on (port 0 picks a free port and prints it)"},
    {"--dir", OPT_STRING, offsetof(struct cd_config, dir), 0, 0, "PATH of the LMDB store"},
    {"--max-size", OPT_SIZE, offsetof(struct cd_config, max_size), 0, 0,
     "SIZE of blob data kept (e.g. 10G, 512M); LRU eviction above"},
    {"--tokens", OPT_STRING, offsetof(struct cd_config, tokens), 0, 0,
     "FILE of bearer tokens: 'token read|write instance-glob' per line"},
    {"--tls-cert", OPT_STRING, offsetof(struct cd_config, tls_cert), 0, 0,
     "FILE server certificate chain (PEM); enables TLS"},
    {"--tls-key", OPT_STRING, offsetof(struct cd_config, tls_key), 0, 0, "FILE server key (PEM)"},
    {"--tls-client-ca", OPT_STRING, offsetof(struct cd_config, tls_client_ca), 0, 0,
     "FILE CA (PEM) that client certificates must chain to (mutual TLS)"},
    {"--threads", OPT_UINT, offsetof(struct cd_config, threads), 1, 1024,
     "N worker threads (default: number of cores)"},
    {"--log-level", OPT_STRING, offsetof(struct cd_config, log_level), 0, 0,
     "error|warn|info|debug (default info)"},
    {"--log-format", OPT_STRING, offsetof(struct cd_config, log_format), 0, 0,
     "text|json: lines as text (default) or one JSON object each"},
    {"--metrics-listen", OPT_STRING, offsetof(struct cd_config, metrics_listen), 0, 0,
     "ADDR:PORT to serve Prometheus /metrics on (*:PORT: every address;\n"
     "                         port 0 picks a free port and prints it)"},
    {"--health-listen", OPT_STRING, offsetof(struct cd_config, health_listen), 0, 0,
     "ADDR:PORT of a plaintext listener that answers only\n"
     "                         grpc.health.v1.Health/Check (Kubernetes gRPC probes)"},
    {"--metrics-token-file", OPT_STRING, offsetof(struct cd_config, metrics_token_file), 0, 0,
     "FILE holding a token /metrics requires as 'Authorization: Bearer'"},
    {"--upload-idle-timeout", OPT_DURATION, offsetof(struct cd_config, upload_ttl_s), 1, 7 * 86400,
     "DURATION an unfinished upload is kept without calls (default 1h);\n"
     "                         a Write stream silent for half of it is cancelled"},
    {"--stage-batch", OPT_SIZE, offsetof(struct cd_config, stage_batch), CD_STORE_CHUNK,
     CD_STORE_STAGE_BATCH_MAX,
     "SIZE of upload data per synced staging transaction,\n"
     "                         whole MiB from 1M to 64M (default 8M)"},
    {"--stats-interval", OPT_DURATION, offsetof(struct cd_config, stats_interval_s), 1, 86400,
     "DURATION between summary log lines (default 60s)"},
    {"--drain-timeout", OPT_DURATION, offsetof(struct cd_config, drain_timeout_s), 0, 3600,
     "DURATION calls in flight may take to finish after SIGTERM (default 5s)"},
    {"--shutdown-delay", OPT_DURATION, offsetof(struct cd_config, shutdown_delay_s), 0, 3600,
     "DURATION after SIGTERM that health answers NOT_SERVING while\n"
     "                         everything is still served; then the drain (default 0)"},
    {"--reverify-after", OPT_DURATION, offsetof(struct cd_config, reverify_s), 0, 7 * 86400,
     "DURATION a blob that hashed to its digest (on its upload, a read)\n"
     "                         is served without hashing again (default 10m; 0: every read)"},
    {"--no-read-verify", OPT_FLAG, offsetof(struct cd_config, no_read_verify), 0, 0,
     "serve blobs without hashing them (clients still check digests)"},
    {"--no-claims", OPT_FLAG, offsetof(struct cd_config, no_claims), 0, 0,
     "do not offer step claims (cairn.claim.v1): concurrent builders\n"
     "                         that miss the same step each run it"},
    {"--max-header-size", OPT_SIZE, offsetof(struct cd_config, max_header_size), 1024, 1u << 20,
     "SIZE of the request headers (metadata) of a call, 1K to 1M\n"
     "                         (default 8K, gRPC's); larger is refused"},
    {"--max-streams", OPT_UINT, offsetof(struct cd_config, max_streams), 1, 100000,
     "N concurrent calls per connection (default 100; more wait)"},
    {"--handshake-timeout", OPT_DURATION, offsetof(struct cd_config, handshake_timeout_s), 1, 600,
     "DURATION a new connection has to finish TLS and send its HTTP/2\n"
     "                         settings (default 10s)"},
    {"--max-connection-idle", OPT_DURATION, offsetof(struct cd_config, conn_idle_s), 0, 7 * 86400,
     "DURATION a connection without calls is kept (default 10m; 0: forever)"},
    {"--max-connection-age", OPT_DURATION, offsetof(struct cd_config, conn_age_s), 0, 30 * 86400,
     "DURATION after which a connection is asked to go away (default 2h;\n"
     "                         0: never); clients reconnect"},
    {"--max-connection-age-grace", OPT_DURATION, offsetof(struct cd_config, conn_grace_s), 1,
     7 * 86400,
     "DURATION calls may still run on a connection past its age,\n"
     "                         then they are cut (default 30m)"},
    {"--max-connections", OPT_UINT, offsetof(struct cd_config, max_conns), 1, 100000,
     "N open connections in total (default 1024); more are closed at once"},
    {"--max-connections-per-ip", OPT_UINT, offsetof(struct cd_config, max_conns_per_ip), 1,
     100000, "N open connections from one client address (default 128)"},
    {"--no-connection-limits", OPT_FLAG, offsetof(struct cd_config, no_conn_limits), 0, 0, NULL},
    {"--no-gate", OPT_FLAG, offsetof(struct cd_config, no_gate), 0, 0, NULL},
    {"--backend", OPT_STRING, offsetof(struct cd_config, backend), 0, 0,
     "s3://BUCKET[/PREFIX]: every blob and action result is also kept in\n"
     "                         this bucket, written through; --dir is the local hot tier"},
    {"--s3-endpoint", OPT_STRING, offsetof(struct cd_config, s3_endpoint), 0, 0,
     "URL of the S3 service, e.g. https://s3.eu-west-1.amazonaws.com"},
    {"--s3-region", OPT_STRING, offsetof(struct cd_config, s3_region), 0, 0,
     "R the bucket's region, for signing (default us-east-1)"},
    {"--s3-path-style", OPT_FLAG, offsetof(struct cd_config, s3_path_style), 0, 0,
     "address the bucket as URL/BUCKET/key (MinIO, Ceph, Swift)"},
    {"--s3-credentials-file", OPT_STRING, offsetof(struct cd_config, s3_credentials_file), 0, 0,
     "FILE in AWS shared-credentials format (default: AWS_ACCESS_KEY_ID\n"
     "                         etc., then ~/.aws/credentials at AWS_PROFILE)"},
    {"--verify", OPT_FLAG, offsetof(struct cd_config, verify), 0, 0,
     "check every blob in --dir, remove corrupt ones, print a summary\n"
     "                         and exit (1 if any was corrupt); only --dir is needed"},
    {"--help", OPT_FLAG, offsetof(struct cd_config, help), 0, 0, "this text"},
};

void cd_config_usage(void)
{
    printf("usage: cairnd --listen ADDR:PORT --dir PATH --max-size SIZE [options]\n");
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        if (opts[i].help != NULL)
            printf("  %-22s %s\n", opts[i].name, opts[i].help);
    }
    printf("SIZE: bytes, or with K, M, G, T (powers of 1024), e.g. 512M.\n"
           "DURATION: seconds, or with s, m, h, d, e.g. 90s, 10m, 1h.\n");
}

/* Stores value v of option o in field; the error names the option, the
 * value and what would have been accepted. */
static int opt_set(const struct opt *o, const char *v, void *field, struct cairn_err *err)
{
    uint64_t size;
    unsigned n;
    switch (o->kind) {
    case OPT_STRING:
        *(const char **)field = v;
        return 0;
    case OPT_SIZE:
        if (cd_size_parse(v, &size) != 0)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "%s: '%s' is not a size (bytes, or a number with K, M, G or T, "
                                 "e.g. 512M)", o->name, v);
        if (o->max != 0 && (size < o->min || size > o->max || size % o->min != 0)) {
            /* min is the unit: 1 MiB (--stage-batch) or 1 KiB. */
            unsigned shift = o->min % (1u << 20) == 0 ? 20 : 10;
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "%s: %s is not a whole number of %s from %llu%c to %llu%c",
                                 o->name, v, shift == 20 ? "MiB" : "KiB",
                                 (unsigned long long)(o->min >> shift), shift == 20 ? 'M' : 'K',
                                 (unsigned long long)(o->max >> shift), shift == 20 ? 'M' : 'K');
        }
        *(uint64_t *)field = size;
        return 0;
    case OPT_UINT:
        if (parse_uint(v, (unsigned)o->min, (unsigned)o->max, &n) != 0)
            return cairn_err_set(err, CAIRN_E_INVAL, "%s: '%s' is not a number from %llu to %llu",
                                 o->name, v, (unsigned long long)o->min,
                                 (unsigned long long)o->max);
        *(unsigned *)field = n;
        return 0;
    case OPT_DURATION:
        if (cd_duration_parse(v, &n) != 0)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "%s: '%s' is not a duration (seconds, or a number with s, m, h "
                                 "or d, e.g. 90s, 10m, 1h)", o->name, v);
        if (n < o->min || n > o->max)
            return cairn_err_set(err, CAIRN_E_INVAL, "%s: %s is outside %llus to %llus", o->name,
                                 v, (unsigned long long)o->min, (unsigned long long)o->max);
        *(unsigned *)field = n;
        return 0;
    case OPT_FLAG:
        break;
    }
    return 0;
}

/* --backend and the --s3-* options that go with it. */
static int config_backend_check(const struct cd_config *cfg, struct cairn_err *err)
{
    bool s3_opt = cfg->s3_endpoint != NULL || cfg->s3_region != NULL || cfg->s3_path_style ||
                  cfg->s3_credentials_file != NULL;
    if (cfg->backend == NULL)
        return s3_opt ? cairn_err_set(err, CAIRN_E_INVAL, "--s3-* options need --backend s3://...")
                      : 0;
    if (strncmp(cfg->backend, "s3://", 5) != 0 || cfg->backend[5] == '\0' ||
        cfg->backend[5] == '/')
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "--backend: '%s' is not s3://BUCKET[/PREFIX]", cfg->backend);
    if (cfg->s3_endpoint == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "--backend %s needs --s3-endpoint URL",
                             cfg->backend);
    return 0;
}

int cd_config_parse(int argc, char **argv, struct cd_config *cfg, struct cairn_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = ncpu > 0 ? (unsigned)ncpu : 1;
    cfg->log_level = "info";
    cfg->log_format = "text";
    cfg->upload_ttl_s = 3600;
    cfg->stage_batch = CD_STORE_STAGE_BATCH_DEFAULT;
    cfg->stats_interval_s = 60;
    cfg->drain_timeout_s = 5;
    cfg->reverify_s = 600;
    cfg->max_header_size = 8u << 10;
    cfg->max_streams = 100;
    cfg->handshake_timeout_s = 10;
    cfg->conn_idle_s = 600;
    cfg->conn_age_s = 7200;
    cfg->conn_grace_s = 1800;
    cfg->max_conns = 1024;
    cfg->max_conns_per_ip = 128;
    int rc;
    for (int i = 1; i < argc; i++) {
        size_t k = 0;
        while (k < sizeof opts / sizeof *opts && strcmp(opts[k].name, argv[i]) != 0)
            k++;
        if (k == sizeof opts / sizeof *opts)
            return cairn_err_set(err, CAIRN_E_INVAL, "unknown option '%s' (see --help)", argv[i]);
        const struct opt *o = &opts[k];
        void *field = (char *)cfg + o->offset;
        if (o->kind == OPT_FLAG) {
            *(bool *)field = true;
            continue;
        }
        if (i + 1 >= argc)
            return cairn_err_set(err, CAIRN_E_INVAL, "%s needs a value", o->name);
        const char *v = argv[++i];
        if ((rc = opt_set(o, v, field, err)) != 0)
            return rc;
    }
    if (cfg->help)
        return 0;
    if (cfg->verify)
        return cfg->dir != NULL ? 0 : cairn_err_set(err, CAIRN_E_INVAL, "--verify needs --dir");
    if (cfg->listen == NULL || cfg->dir == NULL || cfg->max_size == 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "--listen, --dir and --max-size are required");
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
        return cairn_err_set(err, CAIRN_E_INVAL, "--tls-cert and --tls-key go together");
    if (cfg->metrics_token_file != NULL && cfg->metrics_listen == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "--metrics-token-file needs --metrics-listen");
    /* The health listener is a relay (server/grpc/relay.h) in front of a
     * health-only gRPC server: without the gate there is no relay. */
    if (cfg->health_listen != NULL && (cfg->no_gate || cfg->no_conn_limits))
        return cairn_err_set(err, CAIRN_E_INVAL, "--health-listen needs the HTTP/2 gate");
    if (cfg->tls_client_ca != NULL && cfg->tls_cert == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "--tls-client-ca needs --tls-cert and --tls-key");
    return config_backend_check(cfg, err);
}
