#include "client/remote/config.h"

#include "client/remote/sign.h"
#include "common/units.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_LINE 4096

void cairn_config_init(struct cairn_config *c)
{
    memset(c, 0, sizeof *c);
    cairn_strvec_init(&c->urls);
    cairn_strvec_init(&c->insecure);
    cairn_strvec_init(&c->trust);
}

void cairn_config_clear(struct cairn_config *c)
{
    if (c == NULL)
        return;
    cairn_strvec_free(&c->urls);
    cairn_strvec_free(&c->insecure);
    cairn_strvec_free(&c->trust);
    free(c->sign_key);
    free(c->token);
    free(c->ca_file);
    memset(c, 0, sizeof *c);
}

int cairn_config_duration_ms(const char *s, int64_t *ms)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0 || v > 1e7)
        return CAIRN_E_INVAL;
    double mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else
        return CAIRN_E_INVAL;
    *ms = (int64_t)(v * mult);
    return *ms > 0 ? 0 : CAIRN_E_INVAL;
}

int cairn_config_size(const char *s, bool per_second, int64_t *out)
{
    /* 2^50 (1 PiB): far beyond any layer, and no overflow when a cap
     * is multiplied (the uncompressed cap is 4 times the blob's). */
    uint64_t v;
    unsigned flags = CAIRN_UNITS_FRACTION |
                     (per_second ? CAIRN_UNITS_PER_SECOND : 0u);
    if (cairn_units_size_parse(s, flags, 1ull << 50, &v) != 0 || v < 1)
        return CAIRN_E_INVAL;
    *out = (int64_t)v;
    return 0;
}

static int set_str(char **dst, const char *v)
{
    char *d = strdup(v);
    if (d == NULL)
        return CAIRN_E_NOMEM;
    free(*dst);
    *dst = d;
    return 0;
}

int cairn_config_set(struct cairn_config *c, const char *key,
                     const char *value, struct cairn_err *err)
{
    if (strcmp(key, "cache") == 0) {
        if (value[0] == '\0') {
            cairn_strvec_free(&c->urls);
            cairn_strvec_init(&c->urls);
            return 0;
        }
        return cairn_strvec_push(&c->urls, value);
    }
    if (strcmp(key, "insecure-registry") == 0) {
        if (value[0] == '\0') {
            cairn_strvec_free(&c->insecure);
            cairn_strvec_init(&c->insecure);
            return 0;
        }
        return cairn_strvec_push(&c->insecure, value);
    }
    if (strcmp(key, "trust") == 0) {
        if (value[0] == '\0') {
            cairn_strvec_free(&c->trust);
            cairn_strvec_init(&c->trust);
            return 0;
        }
        /* Checked now, so a typo is an error where it was written. */
        char scope[512];
        struct cairn_sign_pub pub;
        int rc = cairn_sign_trust_parse(value, scope, sizeof scope, &pub, err);
        return rc ? rc : cairn_strvec_push(&c->trust, value);
    }
    if (strcmp(key, "sign-key") == 0)
        return set_str(&c->sign_key, value);
    if (strcmp(key, "cache-mode") == 0) {
        if (strcmp(value, "read") == 0)
            c->read_only = true;
        else if (strcmp(value, "readwrite") == 0)
            c->read_only = false;
        else
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "cache-mode must be read or readwrite, not "
                                 "\"%s\"",
                                 value);
        return 0;
    }
    if (strcmp(key, "cache-token") == 0)
        return set_str(&c->token, value);
    if (strcmp(key, "cache-ca") == 0)
        return set_str(&c->ca_file, value);
    if (strcmp(key, "cache-timeout") == 0) {
        if (cairn_config_duration_ms(value, &c->timeout_ms) != 0)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "cache-timeout: bad duration \"%s\"", value);
        return 0;
    }
    if (strcmp(key, "cache-max-layer") == 0) {
        if (cairn_config_size(value, false, &c->max_layer) != 0)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "cache-max-layer: bad size \"%s\" (e.g. "
                                 "10G, 512M)",
                                 value);
        return 0;
    }
    if (strcmp(key, "cache-min-rate") == 0) {
        if (cairn_config_size(value, true, &c->min_rate) != 0)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "cache-min-rate: bad rate \"%s\" (e.g. "
                                 "256k, 1M/s)",
                                 value);
        return 0;
    }
    if (strcmp(key, "cache-claim-ttl") == 0) {
        /* "off": never claim steps (client/remote/claim.h). */
        if (strcmp(value, "off") == 0) {
            c->claim_ttl_ms = -1;
            return 0;
        }
        if (cairn_config_duration_ms(value, &c->claim_ttl_ms) != 0 ||
            c->claim_ttl_ms > CAIRN_CONFIG_MAX_CLAIM_TTL)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "cache-claim-ttl: bad duration \"%s\" "
                                 "(e.g. 30s, 1500ms, up to 10m; or off)",
                                 value);
        return 0;
    }
    return cairn_err_set(err, CAIRN_E_INVAL, "unknown setting \"%s\"", key);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int load_file(struct cairn_config *c, const char *path,
                     struct cairn_err *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? 0
                               : cairn_err_set(err, -errno, "%s: %s", path,
                                               strerror(errno));
    char line[CONFIG_MAX_LINE];
    int rc = 0, lineno = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG, "%s:%d: line too long",
                               path, lineno);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (*s == '\0')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            rc = cairn_err_set(err, CAIRN_E_PARSE,
                               "%s:%d: expected \"key = value\"", path,
                               lineno);
            break;
        }
        *eq = '\0';
        rc = cairn_config_set(c, trim(s), trim(eq + 1), err);
        if (rc)
            cairn_err_prefix(err, "%s:%d", path, lineno);
    }
    fclose(f);
    return rc;
}

int cairn_config_load(struct cairn_config *c, struct cairn_err *err)
{
    char path[4096];
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    int n = -1;
    if (xdg && xdg[0])
        n = snprintf(path, sizeof path, "%s/cairn/config", xdg);
    else if (home && home[0])
        n = snprintf(path, sizeof path, "%s/.config/cairn/config", home);
    int rc = 0;
    if (n > 0 && (size_t)n < sizeof path)
        rc = load_file(c, path, err);
    if (rc)
        return rc;
    const char *urls = getenv("CAIRN_CACHE");
    if (urls && urls[0]) {
        /* The environment replaces the file's list, as a flag would. */
        cairn_strvec_free(&c->urls);
        cairn_strvec_init(&c->urls);
        char *copy = strdup(urls), *save = NULL;
        if (copy == NULL)
            return CAIRN_E_NOMEM;
        for (char *t = strtok_r(copy, " ,\t", &save); !rc && t;
             t = strtok_r(NULL, " ,\t", &save))
            rc = cairn_strvec_push(&c->urls, t);
        free(copy);
    }
    const char *trust = getenv("CAIRN_TRUST");
    if (!rc && trust && trust[0]) {
        /* Replaces the file's entries, as CAIRN_CACHE does its URLs. */
        cairn_strvec_free(&c->trust);
        cairn_strvec_init(&c->trust);
        char *copy = strdup(trust), *save = NULL;
        if (copy == NULL)
            return CAIRN_E_NOMEM;
        for (char *t = strtok_r(copy, ";\n", &save); !rc && t;
             t = strtok_r(NULL, ";\n", &save)) {
            t = trim(t);
            if (*t == '\0')
                continue;
            rc = cairn_config_set(c, "trust", t, err);
            if (rc)
                cairn_err_prefix(err, "CAIRN_TRUST");
        }
        free(copy);
    }
    static const struct {
        const char *env, *key;
    } envs[] = {
        {"CAIRN_CACHE_MODE", "cache-mode"},
        {"CAIRN_CACHE_TOKEN", "cache-token"},
        {"CAIRN_CACHE_CA", "cache-ca"},
        {"CAIRN_CACHE_TIMEOUT", "cache-timeout"},
        {"CAIRN_CACHE_MAX_LAYER", "cache-max-layer"},
        {"CAIRN_CACHE_MIN_RATE", "cache-min-rate"},
        {"CAIRN_CACHE_CLAIM_TTL", "cache-claim-ttl"},
        {"CAIRN_SIGN_KEY", "sign-key"},
    };
    for (size_t i = 0; !rc && i < sizeof envs / sizeof envs[0]; i++) {
        const char *v = getenv(envs[i].env);
        if (v && v[0]) {
            rc = cairn_config_set(c, envs[i].key, v, err);
            if (rc)
                cairn_err_prefix(err, "%s", envs[i].env);
        }
    }
    return rc;
}
