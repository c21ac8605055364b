#include "server/config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cd_size_parse(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return CAIRN_E_INVAL;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return CAIRN_E_INVAL;
    static const struct {
        char suffix;
        unsigned shift;
    } units[] = {{'K', 10}, {'M', 20}, {'G', 30}, {'T', 40}};
    unsigned shift = 0;
    if (*end != '\0') {
        size_t i = 0;
        while (i < sizeof units / sizeof *units && units[i].suffix != (*end & ~0x20))
            i++;
        if (i < sizeof units / sizeof *units) {
            shift = units[i].shift;
            end++;
            if (*end == 'i')
                end++;
        }
        if (*end == 'B' || *end == 'b')
            end++;
        if (*end != '\0')
            return CAIRN_E_INVAL;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return CAIRN_E_INVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return CAIRN_E_INVAL;
    errno = 0;
    char *end = NULL;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return CAIRN_E_INVAL;
    *out = (unsigned)v;
    return 0;
}

enum opt_kind { OPT_STRING, OPT_SIZE, OPT_UINT, OPT_FLAG };

static const struct opt {
    const char *name;
    enum opt_kind kind;
    size_t offset;
    unsigned min, max; /* OPT_UINT bounds */
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
    {"--upload-ttl", OPT_UINT, offsetof(struct cd_config, upload_ttl_s), 1, 7 * 86400, NULL},
    {"--stats-interval", OPT_UINT, offsetof(struct cd_config, stats_interval_s), 1, 86400, NULL},
    {"--drain-timeout", OPT_UINT, offsetof(struct cd_config, drain_timeout_s), 0, 3600, NULL},
    {"--help", OPT_FLAG, offsetof(struct cd_config, help), 0, 0, "this text"},
};

void cd_config_usage(void)
{
    printf("usage: cairnd --listen ADDR:PORT --dir PATH --max-size SIZE [options]\n");
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        if (opts[i].help != NULL)
            printf("  %-16s %s\n", opts[i].name, opts[i].help);
    }
}

int cd_config_parse(int argc, char **argv, struct cd_config *cfg, struct cairn_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = ncpu > 0 ? (unsigned)ncpu : 1;
    cfg->log_level = "info";
    cfg->upload_ttl_s = 3600;
    cfg->stats_interval_s = 60;
    cfg->drain_timeout_s = 5;
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
        int rc = 0;
        switch (o->kind) {
        case OPT_STRING:
            *(const char **)field = v;
            break;
        case OPT_SIZE:
            rc = cd_size_parse(v, (uint64_t *)field);
            break;
        case OPT_UINT:
            rc = parse_uint(v, o->min, o->max, (unsigned *)field);
            break;
        case OPT_FLAG:
            break;
        }
        if (rc != 0)
            return cairn_err_set(err, CAIRN_E_INVAL, "%s: invalid value '%s'", o->name, v);
    }
    if (cfg->help)
        return 0;
    if (cfg->listen == NULL || cfg->dir == NULL || cfg->max_size == 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "--listen, --dir and --max-size are required");
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
        return cairn_err_set(err, CAIRN_E_INVAL, "--tls-cert and --tls-key go together");
    if (cfg->tls_client_ca != NULL && cfg->tls_cert == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "--tls-client-ca needs --tls-cert and --tls-key");
    return 0;
}
