/* OCI image config and manifest <-> JSON.
 *
 * Writing builds a jansson tree and dumps it with JSON_SORT_KEYS |
 * JSON_COMPACT: sorted keys and no whitespace make the bytes a function of
 * the struct alone, which is what keeps image IDs (the config digest)
 * stable across machines and runs.
 *
 * Reading follows what Docker and the OCI image spec write: Docker adds
 * many fields we do not model (container_config, Hostname, AttachStdin...),
 * which are skipped; null stands for "absent" wherever Go's encoder writes
 * it for a nil slice or map. A field of the wrong type is an error naming
 * the field, because guessing would silently change what the image runs.
 */
#include "client/store/image.h"
#include "client/store/json.h"

#include "cachekey/digest.h"
#include "common/strvec.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* small helpers                                                      */

bool cairn_image_digest_valid(const char *digest)
{
    /* Only sha256, lowercase, exactly 64 digits: digests become file
     * names under blobs/sha256/, so anything looser would let a crafted
     * archive or manifest name a path outside the store. */
    if (digest == NULL || strncmp(digest, "sha256:", 7) != 0)
        return false;
    const char *h = digest + 7;
    for (size_t i = 0; i < CK_SHA256_HEX_LEN; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return false;
    return h[CK_SHA256_HEX_LEN] == '\0';
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil). timegm() would do, but it depends
 * on the C library's range for time_t and tm_year; this is exact for
 * every year we can parse. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool read_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

int cairn_image_time_parse(const char *s, int64_t *out)
{
    /* RFC 3339: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm). The
     * fraction is dropped: the struct keeps whole seconds. */
    const char *p = s;
    int y, mo, d, h, mi, sec;
    if (!read_digits(&p, 4, &y) || *p++ != '-' || !read_digits(&p, 2, &mo) ||
        *p++ != '-' || !read_digits(&p, 2, &d) ||
        (*p != 'T' && *p != 't' && *p != ' '))
        return CAIRN_E_PARSE;
    p++;
    if (!read_digits(&p, 2, &h) || *p++ != ':' || !read_digits(&p, 2, &mi) ||
        *p++ != ':' || !read_digits(&p, 2, &sec))
        return CAIRN_E_PARSE;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return CAIRN_E_PARSE;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return CAIRN_E_PARSE;
        while (isdigit((unsigned char)*p))
            p++;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (!read_digits(&p, 2, &oh) || *p++ != ':' ||
            !read_digits(&p, 2, &om) || oh > 23 || om > 59)
            return CAIRN_E_PARSE;
        off = sign * (int64_t)(oh * 3600 + om * 60);
    } else {
        return CAIRN_E_PARSE;
    }
    if (*p != '\0')
        return CAIRN_E_PARSE;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return 0;
}

int cairn_image_time_format(int64_t t, char buf[CAIRN_IMAGE_TIME_LEN])
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (t < 0 || gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999)
        return CAIRN_E_INVAL;
    if (strftime(buf, CAIRN_IMAGE_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return CAIRN_E_INVAL;
    return 0;
}

/* Sets key to value, taking the reference; a NULL value (allocation
 * failed) makes the call fail. */
static int set_new(json_t *obj, const char *key, json_t *value)
{
    if (value == NULL || json_object_set_new(obj, key, value) != 0)
        return CAIRN_E_NOMEM;
    return 0;
}

static int set_str(json_t *obj, const char *key, const char *s)
{
    return s ? set_new(obj, key, cairn_json_string(s)) : 0;
}

static json_t *jstr_array(char *const *v, size_t n)
{
    json_t *a = json_array();
    if (a == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *s = cairn_json_string(v[i] ? v[i] : "");
        if (s == NULL || json_array_append_new(a, s) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* {"k": {}} for each key: how Docker writes sets (ExposedPorts,
 * Volumes). */
static json_t *jset(char *const *v, size_t n)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *k = cairn_json_string(v[i]);
        if (k == NULL || set_new(o, json_string_value(k), json_object())) {
            json_decref(k);
            json_decref(o);
            return NULL;
        }
        json_decref(k);
    }
    return o;
}

static int dump(json_t *root, char **json, size_t *len)
{
    char *s = json_dumps(root, JSON_SORT_KEYS | JSON_COMPACT);
    if (s == NULL)
        return CAIRN_E_NOMEM;
    *json = s;
    if (len)
        *len = strlen(s);
    return 0;
}

/* ------------------------------------------------------------------ */
/* config: writing                                                    */

static json_t *healthcheck_to_json(const struct cairn_healthcheck *h)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    int rc = 0;
    /* Docker's HealthConfig marks every field omitempty; zero means
     * "inherit / default" there, so it is left out here too. */
    if (h->ntest > 0)
        rc |= set_new(o, "Test", jstr_array(h->test, h->ntest));
    if (h->interval_ns)
        rc |= set_new(o, "Interval", json_integer(h->interval_ns));
    if (h->timeout_ns)
        rc |= set_new(o, "Timeout", json_integer(h->timeout_ns));
    if (h->start_period_ns)
        rc |= set_new(o, "StartPeriod", json_integer(h->start_period_ns));
    if (h->start_interval_ns)
        rc |= set_new(o, "StartInterval", json_integer(h->start_interval_ns));
    if (h->retries)
        rc |= set_new(o, "Retries", json_integer(h->retries));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *container_config_to_json(const struct cairn_image_config *c)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    int rc = 0;
    rc |= set_str(o, "User", c->user);
    if (c->nenv > 0)
        rc |= set_new(o, "Env", jstr_array(c->env, c->nenv));
    if (c->has_entrypoint)
        rc |=
            set_new(o, "Entrypoint", jstr_array(c->entrypoint, c->nentrypoint));
    if (c->has_cmd)
        rc |= set_new(o, "Cmd", jstr_array(c->cmd, c->ncmd));
    rc |= set_str(o, "WorkingDir", c->workdir);
    if (c->nlabels >= 2) {
        json_t *l = json_object();
        rc |= set_new(o, "Labels", l);
        for (size_t i = 0; l && i + 1 < c->nlabels; i += 2) {
            json_t *k = cairn_json_string(c->labels[i]);
            if (k == NULL) {
                rc = CAIRN_E_NOMEM;
                break;
            }
            rc |= set_new(l, json_string_value(k),
                          cairn_json_string(c->labels[i + 1] ? c->labels[i + 1] : ""));
            json_decref(k);
        }
    }
    if (c->nexposed_ports > 0)
        rc |= set_new(o, "ExposedPorts",
                      jset(c->exposed_ports, c->nexposed_ports));
    if (c->nvolumes > 0)
        rc |= set_new(o, "Volumes", jset(c->volumes, c->nvolumes));
    rc |= set_str(o, "StopSignal", c->stop_signal);
    if (c->nonbuild > 0)
        rc |= set_new(o, "OnBuild", jstr_array(c->onbuild, c->nonbuild));
    if (c->nshell > 0)
        rc |= set_new(o, "Shell", jstr_array(c->shell, c->nshell));
    if (c->healthcheck)
        rc |= set_new(o, "Healthcheck", healthcheck_to_json(c->healthcheck));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *time_json(int64_t t)
{
    char buf[CAIRN_IMAGE_TIME_LEN];
    if (cairn_image_time_format(t, buf) != 0)
        return NULL;
    return json_string(buf);
}

static json_t *history_to_json(const struct cairn_history *h)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    int rc = 0;
    if (h->created >= 0)
        rc |= set_new(o, "created", time_json(h->created));
    rc |= set_str(o, "created_by", h->created_by);
    rc |= set_str(o, "comment", h->comment);
    /* omitempty in Docker and in the OCI spec's Go types. */
    if (h->empty_layer)
        rc |= set_new(o, "empty_layer", json_true());
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int cairn_image_config_to_json(const struct cairn_image_config *c, char **json,
                               size_t *len)
{
    json_t *root = json_object();
    if (root == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    if (c->created >= 0) {
        json_t *t = time_json(c->created);
        if (t == NULL) {
            rc = CAIRN_E_INVAL;
            goto out;
        }
        rc |= set_new(root, "created", t);
    }
    rc |= set_str(root, "architecture", c->architecture);
    rc |= set_str(root, "os", c->os);
    rc |= set_str(root, "variant", c->variant);
    rc |= set_str(root, "author", c->author);
    /* "config" is always written, even empty: some readers (older
     * docker, image scanners) expect the object to exist. */
    rc |= set_new(root, "config", container_config_to_json(c));

    json_t *rootfs = json_object();
    rc |= set_new(root, "rootfs", rootfs);
    if (rootfs) {
        rc |= set_new(rootfs, "type", json_string("layers"));
        rc |=
            set_new(rootfs, "diff_ids", jstr_array(c->diff_ids, c->ndiff_ids));
    }
    if (c->nhistory > 0) {
        json_t *h = json_array();
        rc |= set_new(root, "history", h);
        for (size_t i = 0; h && i < c->nhistory; i++) {
            json_t *e = history_to_json(&c->history[i]);
            if (e == NULL || json_array_append_new(h, e) != 0) {
                rc = CAIRN_E_NOMEM;
                break;
            }
        }
    }
    if (rc) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }
    rc = dump(root, json, len);
out:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------ */
/* config: reading                                                    */

static json_t *load(const char *json, size_t len, const char *what,
                    struct cairn_err *err, int *rc)
{
    if (len > CAIRN_IMAGE_MAX_JSON) {
        *rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                            "%s is %zu bytes, more than the limit of %u", what,
                            len, CAIRN_IMAGE_MAX_JSON);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    if (root == NULL) {
        *rc =
            cairn_err_set(err, CAIRN_E_PARSE, "%s: invalid JSON: %s (line %d)",
                          what, jerr.text, jerr.line);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *rc = cairn_err_set(err, CAIRN_E_PARSE, "%s: not a JSON object", what);
        return NULL;
    }
    return root;
}

/* Reads an optional string field; null or missing leaves *out NULL. */
static int get_str(json_t *o, const char *key, const char *ctx, char **out,
                   struct cairn_err *err)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return cairn_err_set(err, CAIRN_E_PARSE, "%s%s: expected a string", ctx,
                             key);
    if ((*out = strdup(json_string_value(v))) == NULL)
        return CAIRN_E_NOMEM;
    return 0;
}

/* Reads an optional array of strings; *present tells null/missing apart
 * from [] (an explicit empty Cmd clears the parent's). */
static int get_strv(json_t *o, const char *key, const char *ctx, char ***out,
                    size_t *n, bool *present, struct cairn_err *err)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "%s%s: expected an array of strings", ctx, key);
    struct cairn_strvec sv;
    cairn_strvec_init(&sv);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e)) {
            cairn_strvec_free(&sv);
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "%s%s[%zu]: expected a string", ctx, key, i);
        }
        if (cairn_strvec_push(&sv, json_string_value(e)) != 0) {
            cairn_strvec_free(&sv);
            return CAIRN_E_NOMEM;
        }
    }
    char **arr = cairn_strvec_take(&sv, n);
    if (arr == NULL)
        return CAIRN_E_NOMEM;
    *out = arr;
    if (present)
        *present = true;
    return 0;
}

/* Keys of an object of {} (ExposedPorts, Volumes), in the order written. */
static int get_set(json_t *o, const char *key, const char *ctx, char ***out,
                   size_t *n, struct cairn_err *err)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return cairn_err_set(err, CAIRN_E_PARSE, "%s%s: expected an object",
                             ctx, key);
    struct cairn_strvec sv;
    cairn_strvec_init(&sv);
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e)
    {
        if (cairn_strvec_push(&sv, k) != 0) {
            cairn_strvec_free(&sv);
            return CAIRN_E_NOMEM;
        }
    }
    /* Sorted so that a parsed config compares equal regardless of the
     * writer's key order. */
    cairn_strvec_sort(&sv);
    if ((*out = cairn_strvec_take(&sv, n)) == NULL)
        return CAIRN_E_NOMEM;
    return 0;
}

static int get_int(json_t *o, const char *key, const char *ctx, int64_t *out,
                   struct cairn_err *err)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return cairn_err_set(err, CAIRN_E_PARSE, "%s%s: expected an integer",
                             ctx, key);
    *out = json_integer_value(v);
    return 0;
}

static int get_time(json_t *o, const char *key, const char *ctx, int64_t *out,
                    struct cairn_err *err)
{
    json_t *v = json_object_get(o, key);
    *out = -1;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v) ||
        cairn_image_time_parse(json_string_value(v), out) != 0)
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "%s%s: expected an RFC 3339 time", ctx, key);
    /* Go's zero time (year 1) means "not set"; it lands below 0 here. */
    if (*out < 0)
        *out = -1;
    return 0;
}

static int parse_healthcheck(json_t *v, struct cairn_healthcheck **out,
                             struct cairn_err *err)
{
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "config.Healthcheck: expected an object");
    struct cairn_healthcheck *h = calloc(1, sizeof *h);
    if (h == NULL)
        return CAIRN_E_NOMEM;
    const char *ctx = "config.Healthcheck.";
    int64_t retries = 0;
    int rc;
    if ((rc = get_strv(v, "Test", ctx, &h->test, &h->ntest, NULL, err)) ||
        (rc = get_int(v, "Interval", ctx, &h->interval_ns, err)) ||
        (rc = get_int(v, "Timeout", ctx, &h->timeout_ns, err)) ||
        (rc = get_int(v, "StartPeriod", ctx, &h->start_period_ns, err)) ||
        (rc = get_int(v, "StartInterval", ctx, &h->start_interval_ns, err)) ||
        (rc = get_int(v, "Retries", ctx, &retries, err)))
        goto fail;
    if (retries < 0 || retries > 1000000) {
        rc = cairn_err_set(err, CAIRN_E_PARSE,
                           "config.Healthcheck.Retries: out of range");
        goto fail;
    }
    h->retries = (int)retries;
    *out = h;
    return 0;
fail:
    cairn_strv_free(h->test, h->ntest);
    free(h);
    return rc;
}

static int parse_labels(json_t *o, struct cairn_image_config *c,
                        struct cairn_err *err)
{
    json_t *v = json_object_get(o, "Labels");
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "config.Labels: expected an object");
    struct cairn_strvec sv;
    cairn_strvec_init(&sv);
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e)
    {
        if (!json_is_string(e)) {
            cairn_strvec_free(&sv);
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "config.Labels.%s: expected a string", k);
        }
        if (cairn_strvec_push(&sv, k) ||
            cairn_strvec_push(&sv, json_string_value(e))) {
            cairn_strvec_free(&sv);
            return CAIRN_E_NOMEM;
        }
    }
    if ((c->labels = cairn_strvec_take(&sv, &c->nlabels)) == NULL)
        return CAIRN_E_NOMEM;
    return 0;
}

static int parse_container_config(json_t *o, struct cairn_image_config *c,
                                  struct cairn_err *err)
{
    if (o == NULL || json_is_null(o))
        return 0;
    if (!json_is_object(o))
        return cairn_err_set(err, CAIRN_E_PARSE, "config: expected an object");
    const char *ctx = "config.";
    int rc;
    if ((rc = get_str(o, "User", ctx, &c->user, err)) ||
        (rc = get_strv(o, "Env", ctx, &c->env, &c->nenv, NULL, err)) ||
        (rc = get_strv(o, "Entrypoint", ctx, &c->entrypoint, &c->nentrypoint,
                       &c->has_entrypoint, err)) ||
        (rc = get_strv(o, "Cmd", ctx, &c->cmd, &c->ncmd, &c->has_cmd, err)) ||
        (rc = get_str(o, "WorkingDir", ctx, &c->workdir, err)) ||
        (rc = parse_labels(o, c, err)) ||
        (rc = get_set(o, "ExposedPorts", ctx, &c->exposed_ports,
                      &c->nexposed_ports, err)) ||
        (rc = get_set(o, "Volumes", ctx, &c->volumes, &c->nvolumes, err)) ||
        (rc = get_str(o, "StopSignal", ctx, &c->stop_signal, err)) ||
        (rc = get_strv(o, "OnBuild", ctx, &c->onbuild, &c->nonbuild, NULL,
                       err)) ||
        (rc = get_strv(o, "Shell", ctx, &c->shell, &c->nshell, NULL, err)) ||
        (rc = parse_healthcheck(json_object_get(o, "Healthcheck"),
                                &c->healthcheck, err)))
        return rc;
    /* Docker writes "" for unset strings in its own configs; the struct
     * says NULL for absent, so a config read from Docker and written
     * back does not grow empty fields. */
    char **strs[] = {&c->user, &c->workdir, &c->stop_signal};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (*strs[i] && **strs[i] == '\0') {
            free(*strs[i]);
            *strs[i] = NULL;
        }
    }
    return 0;
}

static int parse_history(json_t *v, struct cairn_image_config *c,
                         struct cairn_err *err)
{
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return cairn_err_set(err, CAIRN_E_PARSE, "history: expected an array");
    size_t n = json_array_size(v);
    if (n == 0)
        return 0;
    c->history = calloc(n, sizeof *c->history);
    if (c->history == NULL)
        return CAIRN_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(v, i);
        struct cairn_history *h = &c->history[i];
        c->nhistory = i + 1; /* so clear() frees a half-filled entry */
        h->created = -1;
        if (!json_is_object(e))
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "history[%zu]: expected an object", i);
        char ctx[32];
        snprintf(ctx, sizeof ctx, "history[%zu].", i);
        int rc;
        if ((rc = get_time(e, "created", ctx, &h->created, err)) ||
            (rc = get_str(e, "created_by", ctx, &h->created_by, err)) ||
            (rc = get_str(e, "comment", ctx, &h->comment, err)))
            return rc;
        json_t *el = json_object_get(e, "empty_layer");
        if (el != NULL && !json_is_null(el) && !json_is_boolean(el))
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "%sempty_layer: expected a boolean", ctx);
        h->empty_layer = json_is_true(el);
    }
    return 0;
}

int cairn_image_config_parse(const char *json, size_t len,
                             struct cairn_image_config *out,
                             struct cairn_err *err)
{
    int rc = 0;
    json_t *root = load(json, len, "image config", err, &rc);
    if (root == NULL)
        return rc;
    struct cairn_image_config c;
    memset(&c, 0, sizeof c);
    c.created = -1;
    if ((rc = get_str(root, "architecture", "", &c.architecture, err)) ||
        (rc = get_str(root, "os", "", &c.os, err)) ||
        (rc = get_str(root, "variant", "", &c.variant, err)) ||
        (rc = get_str(root, "author", "", &c.author, err)) ||
        (rc = get_time(root, "created", "", &c.created, err)) ||
        (rc = parse_container_config(json_object_get(root, "config"), &c,
                                     err)) ||
        (rc = parse_history(json_object_get(root, "history"), &c, err)))
        goto fail;

    json_t *rootfs = json_object_get(root, "rootfs");
    if (rootfs != NULL && !json_is_null(rootfs)) {
        if (!json_is_object(rootfs)) {
            rc =
                cairn_err_set(err, CAIRN_E_PARSE, "rootfs: expected an object");
            goto fail;
        }
        json_t *type = json_object_get(rootfs, "type");
        if (type != NULL && (!json_is_string(type) ||
                             strcmp(json_string_value(type), "layers") != 0)) {
            rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                               "rootfs.type: only \"layers\" is supported");
            goto fail;
        }
        if ((rc = get_strv(rootfs, "diff_ids", "rootfs.", &c.diff_ids,
                           &c.ndiff_ids, NULL, err)))
            goto fail;
        for (size_t i = 0; i < c.ndiff_ids; i++) {
            if (!cairn_image_digest_valid(c.diff_ids[i])) {
                rc = cairn_err_set(err, CAIRN_E_PARSE,
                                   "rootfs.diff_ids[%zu]: not a sha256 digest",
                                   i);
                goto fail;
            }
        }
    }
    json_decref(root);
    *out = c;
    return 0;
fail:
    json_decref(root);
    cairn_image_config_clear(&c);
    return rc;
}

/* ------------------------------------------------------------------ */
/* config: lifetime and edits                                         */

void cairn_image_config_init(struct cairn_image_config *c)
{
    memset(c, 0, sizeof *c);
    c->created = -1;
}

static void healthcheck_free(struct cairn_healthcheck *h)
{
    if (h == NULL)
        return;
    cairn_strv_free(h->test, h->ntest);
    free(h);
}

static void config_index_free(struct cairn_config_index *x);

void cairn_image_config_clear(struct cairn_image_config *c)
{
    if (c == NULL)
        return;
    free(c->architecture);
    free(c->os);
    free(c->variant);
    free(c->author);
    free(c->user);
    cairn_strv_free(c->env, c->nenv);
    cairn_strv_free(c->entrypoint, c->nentrypoint);
    cairn_strv_free(c->cmd, c->ncmd);
    free(c->workdir);
    cairn_strv_free(c->labels, c->nlabels);
    cairn_strv_free(c->exposed_ports, c->nexposed_ports);
    cairn_strv_free(c->volumes, c->nvolumes);
    free(c->stop_signal);
    cairn_strv_free(c->onbuild, c->nonbuild);
    cairn_strv_free(c->shell, c->nshell);
    healthcheck_free(c->healthcheck);
    cairn_strv_free(c->diff_ids, c->ndiff_ids);
    for (size_t i = 0; i < c->nhistory; i++) {
        free(c->history[i].created_by);
        free(c->history[i].comment);
    }
    free(c->history);
    config_index_free(c->index);
    cairn_image_config_init(c);
}

/* Copies an optional array: NULL stays NULL (absent). */
static int dup_strv(char ***dst, char *const *src, size_t n)
{
    if (src == NULL)
        return 0;
    return (*dst = cairn_strv_dup(src, n)) ? 0 : CAIRN_E_NOMEM;
}

static int dup_str(char **dst, const char *src)
{
    if (src == NULL)
        return 0;
    return (*dst = strdup(src)) ? 0 : CAIRN_E_NOMEM;
}

int cairn_image_config_copy(struct cairn_image_config *dst,
                            const struct cairn_image_config *src)
{
    struct cairn_image_config c;
    /* Scalars and counts first; then every pointer is replaced by its
     * copy, and on failure the not-yet-copied pointers are NULLed so
     * clear() frees only what is ours. */
    c = *src;
    c.architecture = c.os = c.variant = c.author = c.user = c.workdir =
        c.stop_signal = NULL;
    c.env = c.entrypoint = c.cmd = c.labels = c.exposed_ports = c.volumes =
        c.onbuild = c.shell = c.diff_ids = NULL;
    c.healthcheck = NULL;
    c.index = NULL;
    c.history = NULL;
    c.nhistory = 0;
    int rc = 0;
    rc |= dup_str(&c.architecture, src->architecture);
    rc |= dup_str(&c.os, src->os);
    rc |= dup_str(&c.variant, src->variant);
    rc |= dup_str(&c.author, src->author);
    rc |= dup_str(&c.user, src->user);
    rc |= dup_str(&c.workdir, src->workdir);
    rc |= dup_str(&c.stop_signal, src->stop_signal);
    rc |= dup_strv(&c.env, src->env, src->nenv);
    rc |= dup_strv(&c.entrypoint, src->entrypoint, src->nentrypoint);
    rc |= dup_strv(&c.cmd, src->cmd, src->ncmd);
    rc |= dup_strv(&c.labels, src->labels, src->nlabels);
    rc |= dup_strv(&c.exposed_ports, src->exposed_ports, src->nexposed_ports);
    rc |= dup_strv(&c.volumes, src->volumes, src->nvolumes);
    rc |= dup_strv(&c.onbuild, src->onbuild, src->nonbuild);
    rc |= dup_strv(&c.shell, src->shell, src->nshell);
    rc |= dup_strv(&c.diff_ids, src->diff_ids, src->ndiff_ids);
    if (src->healthcheck) {
        c.healthcheck = calloc(1, sizeof *c.healthcheck);
        if (c.healthcheck == NULL) {
            rc = CAIRN_E_NOMEM;
        } else {
            *c.healthcheck = *src->healthcheck;
            c.healthcheck->test = NULL;
            rc |= dup_strv(&c.healthcheck->test, src->healthcheck->test,
                           src->healthcheck->ntest);
            if (c.healthcheck->test == NULL)
                c.healthcheck->ntest = 0;
        }
    }
    if (src->nhistory > 0) {
        c.history = calloc(src->nhistory, sizeof *c.history);
        if (c.history == NULL) {
            rc = CAIRN_E_NOMEM;
        } else {
            c.nhistory = src->nhistory;
            for (size_t i = 0; i < src->nhistory; i++) {
                c.history[i].created = src->history[i].created;
                c.history[i].empty_layer = src->history[i].empty_layer;
                rc |= dup_str(&c.history[i].created_by,
                              src->history[i].created_by);
                rc |= dup_str(&c.history[i].comment, src->history[i].comment);
            }
        }
    }
    if (rc) {
        /* A failed dup left its pointer NULL while the count says n:
         * cairn_strv_free(NULL, n) is a no-op, so clearing is safe. */
        cairn_image_config_clear(&c);
        return CAIRN_E_NOMEM;
    }
    *dst = c;
    return 0;
}

int cairn_image_config_add_history(struct cairn_image_config *c,
                                   int64_t created, const char *created_by,
                                   bool empty_layer)
{
    struct cairn_history h = {.created = created, .empty_layer = empty_layer};
    if (created_by && (h.created_by = strdup(created_by)) == NULL)
        return CAIRN_E_NOMEM;
    struct cairn_history *nh =
        realloc(c->history, (c->nhistory + 1) * sizeof *nh);
    if (nh == NULL) {
        free(h.created_by);
        return CAIRN_E_NOMEM;
    }
    c->history = nh;
    c->history[c->nhistory++] = h;
    return 0;
}

/* Replaces the value at v[i] (taking s) or appends strings; v is an array
 * of n owned strings, kept NULL-terminated as strvec makes them. */
static int strv_append(char ***v, size_t *n, char *const *add, size_t nadd)
{
    char **nv = realloc(*v, (*n + nadd + 1) * sizeof *nv);
    if (nv == NULL)
        return CAIRN_E_NOMEM;
    *v = nv;
    size_t i;
    for (i = 0; i < nadd; i++) {
        if ((nv[*n + i] = strdup(add[i])) == NULL) {
            while (i-- > 0)
                free(nv[*n + i]);
            nv[*n] = NULL;
            return CAIRN_E_NOMEM;
        }
    }
    *n += nadd;
    nv[*n] = NULL;
    return 0;
}

/* A hash index over the names of env ("K=V", stride 1) or the keys of
 * labels (k1, v1, ..., stride 2), so that N ENV or LABEL lines set one by
 * one cost O(N), not the O(N^2) of scanning the array each time. It
 * remembers the array and count it was built for and is rebuilt when they
 * differ (the arrays change only through this module: parse and copy
 * start without an index, set_env and set_label keep it current). */
struct key_index {
    size_t *slot; /* element index plus 1; 0 is free */
    size_t nslot; /* a power of two, at least twice the count */
    char **arr;
    size_t n;
};

struct cairn_config_index {
    struct key_index env, labels;
};

static size_t key_len(const char *s, size_t stride)
{
    return stride == 1 ? strcspn(s, "=") : strlen(s);
}

static size_t key_hash(const char *k, size_t len)
{
    size_t h = 14695981039346656037u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211u;
    return h;
}

static void key_index_put(struct key_index *ix, char **arr, size_t stride,
                          size_t i)
{
    size_t mask = ix->nslot - 1;
    size_t j = key_hash(arr[i], key_len(arr[i], stride)) & mask;
    while (ix->slot[j] != 0)
        j = (j + 1) & mask;
    ix->slot[j] = i + 1;
}

/* Makes ix cover arr[0..n) (n strings) with room for one more key. */
static int key_index_sync(struct key_index *ix, char **arr, size_t n,
                          size_t stride)
{
    size_t keys = n / stride;
    if (ix->arr == arr && ix->n == n && keys + 1 <= ix->nslot / 2)
        return 0;
    size_t ns = 32;
    while (ns / 2 < keys + 1)
        ns *= 2;
    size_t *slot = calloc(ns, sizeof *slot);
    if (slot == NULL)
        return CAIRN_E_NOMEM;
    free(ix->slot);
    ix->slot = slot;
    ix->nslot = ns;
    ix->arr = arr;
    ix->n = n;
    for (size_t i = 0; i + stride <= n; i += stride)
        key_index_put(ix, arr, stride, i);
    return 0;
}

/* The element index of key k[0..klen) in arr, or n when absent. */
static size_t key_index_find(const struct key_index *ix, char **arr, size_t n,
                             size_t stride, const char *k, size_t klen)
{
    size_t mask = ix->nslot - 1;
    for (size_t j = key_hash(k, klen) & mask; ix->slot[j] != 0;
         j = (j + 1) & mask) {
        size_t i = ix->slot[j] - 1;
        if (key_len(arr[i], stride) == klen && memcmp(arr[i], k, klen) == 0)
            return i;
    }
    return n;
}

static int config_index(struct cairn_image_config *c)
{
    if (c->index == NULL && (c->index = calloc(1, sizeof *c->index)) == NULL)
        return CAIRN_E_NOMEM;
    return 0;
}

static void config_index_free(struct cairn_config_index *x)
{
    if (x == NULL)
        return;
    free(x->env.slot);
    free(x->labels.slot);
    free(x);
}

int cairn_image_config_set_env(struct cairn_image_config *c, const char *k,
                               const char *v)
{
    size_t kl = strlen(k);
    size_t vl = strlen(v);
    char *kv = malloc(kl + vl + 2);
    if (kv == NULL)
        return CAIRN_E_NOMEM;
    memcpy(kv, k, kl);
    kv[kl] = '=';
    memcpy(kv + kl + 1, v, vl + 1);
    /* Docker replaces a variable in place, keeping its position, so
     * `ENV PATH=...` on a base image does not reorder Env. */
    int rc = config_index(c);
    if (!rc)
        rc = key_index_sync(&c->index->env, c->env, c->nenv, 1);
    if (rc) {
        free(kv);
        return rc;
    }
    size_t i = key_index_find(&c->index->env, c->env, c->nenv, 1, k, kl);
    if (i < c->nenv) {
        free(c->env[i]);
        c->env[i] = kv;
        return 0;
    }
    rc = strv_append(&c->env, &c->nenv, &kv, 1);
    free(kv);
    if (!rc) {
        c->index->env.arr = c->env;
        c->index->env.n = c->nenv;
        key_index_put(&c->index->env, c->env, 1, c->nenv - 1);
    }
    return rc;
}

int cairn_image_config_set_label(struct cairn_image_config *c, const char *k,
                                 const char *v)
{
    int rc = config_index(c);
    if (!rc)
        rc = key_index_sync(&c->index->labels, c->labels, c->nlabels, 2);
    if (rc)
        return rc;
    size_t i = key_index_find(&c->index->labels, c->labels, c->nlabels, 2, k,
                              strlen(k));
    if (i < c->nlabels) {
        char *nv = strdup(v);
        if (nv == NULL)
            return CAIRN_E_NOMEM;
        free(c->labels[i + 1]);
        c->labels[i + 1] = nv;
        return 0;
    }
    char *pair[2] = {(char *)k, (char *)v};
    rc = strv_append(&c->labels, &c->nlabels, pair, 2);
    if (!rc) {
        c->index->labels.arr = c->labels;
        c->index->labels.n = c->nlabels;
        key_index_put(&c->index->labels, c->labels, 2, c->nlabels - 2);
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* manifest                                                           */

static const char *const known_layer_media[] = {
    CAIRN_MEDIA_LAYER_GZIP,
    CAIRN_MEDIA_LAYER_ZSTD,
    CAIRN_MEDIA_LAYER_TAR,
    CAIRN_MEDIA_DOCKER_LAYER,
};

const char *cairn_image_layer_media_static(const char *media)
{
    for (size_t i = 0;
         i < sizeof known_layer_media / sizeof known_layer_media[0]; i++)
        if (strcmp(media, known_layer_media[i]) == 0)
            return known_layer_media[i];
    return NULL;
}

static int parse_descriptor(json_t *d, const char *ctx, char **media,
                            char digest[CAIRN_DIGEST_STR_LEN], int64_t *size,
                            struct cairn_err *err)
{
    if (!json_is_object(d))
        return cairn_err_set(err, CAIRN_E_PARSE, "%s: expected an object", ctx);
    json_t *m = json_object_get(d, "mediaType");
    json_t *dg = json_object_get(d, "digest");
    json_t *sz = json_object_get(d, "size");
    if (!json_is_string(m) || !json_is_string(dg) || !json_is_integer(sz))
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "%s: needs mediaType, digest and size", ctx);
    if (!cairn_image_digest_valid(json_string_value(dg)))
        return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                             "%s: digest \"%.80s\" is not sha256:<64 hex>", ctx,
                             json_string_value(dg));
    if (json_integer_value(sz) < 0)
        return cairn_err_set(err, CAIRN_E_PARSE, "%s: negative size", ctx);
    if ((*media = strdup(json_string_value(m))) == NULL)
        return CAIRN_E_NOMEM;
    snprintf(digest, CAIRN_DIGEST_STR_LEN, "%s", json_string_value(dg));
    *size = json_integer_value(sz);
    return 0;
}

int cairn_manifest_parse(const char *json, size_t len,
                         struct cairn_manifest *out, struct cairn_err *err)
{
    int rc = 0;
    json_t *root = load(json, len, "image manifest", err, &rc);
    if (root == NULL)
        return rc;
    struct cairn_manifest m;
    memset(&m, 0, sizeof m);
    char cfg_digest[CAIRN_DIGEST_STR_LEN];

    json_t *sv = json_object_get(root, "schemaVersion");
    if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
        rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                           "image manifest: schemaVersion must be 2");
        goto fail;
    }
    if ((rc = get_str(root, "mediaType", "", &m.media_type, err)))
        goto fail;
    if (m.media_type && strcmp(m.media_type, CAIRN_MEDIA_MANIFEST) != 0 &&
        strcmp(m.media_type, CAIRN_MEDIA_DOCKER_MANIFEST) != 0) {
        rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                           "image manifest: media type \"%.100s\" is not an "
                           "image manifest (an index or manifest list?)",
                           m.media_type);
        goto fail;
    }
    if (json_object_get(root, "manifests") != NULL) {
        rc = cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                           "image manifest: this is an index, not a manifest");
        goto fail;
    }
    if ((rc = parse_descriptor(json_object_get(root, "config"), "config",
                               &m.config_media_type, cfg_digest, &m.config_size,
                               err)))
        goto fail;
    if ((m.config_digest = strdup(cfg_digest)) == NULL) {
        rc = CAIRN_E_NOMEM;
        goto fail;
    }
    /* OCI makes mediaType optional; the config's type tells which kind
     * of manifest this is. */
    if (m.media_type == NULL) {
        const char *t =
            strcmp(m.config_media_type, CAIRN_MEDIA_DOCKER_CONFIG) == 0
                ? CAIRN_MEDIA_DOCKER_MANIFEST
                : CAIRN_MEDIA_MANIFEST;
        if ((m.media_type = strdup(t)) == NULL) {
            rc = CAIRN_E_NOMEM;
            goto fail;
        }
    }

    json_t *layers = json_object_get(root, "layers");
    if (!json_is_array(layers)) {
        rc = cairn_err_set(err, CAIRN_E_PARSE,
                           "image manifest: layers: expected an array");
        goto fail;
    }
    size_t n = json_array_size(layers);
    if (n > 0) {
        m.layers = calloc(n, sizeof *m.layers);
        m.layer_media = calloc(n + 1, sizeof *m.layer_media);
        if (m.layers == NULL || m.layer_media == NULL) {
            rc = CAIRN_E_NOMEM;
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        char ctx[32];
        char *media = NULL;
        snprintf(ctx, sizeof ctx, "layers[%zu]", i);
        m.nlayers = i + 1;
        struct cairn_layer_desc *d = &m.layers[i];
        if ((rc = parse_descriptor(json_array_get(layers, i), ctx, &media,
                                   d->digest, &d->size, err)))
            goto fail;
        const char *known = cairn_image_layer_media_static(media);
        if (known) {
            d->media_type = known;
            free(media);
        } else {
            m.layer_media[i] = media;
            d->media_type = media;
        }
    }
    json_decref(root);
    *out = m;
    return 0;
fail:
    json_decref(root);
    cairn_manifest_clear(&m);
    return rc;
}

static json_t *descriptor_json(const char *media, const char *digest,
                               int64_t size)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    if (set_new(o, "mediaType", json_string(media)) ||
        set_new(o, "digest", json_string(digest)) ||
        set_new(o, "size", json_integer(size))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int cairn_manifest_to_json(const struct cairn_manifest *m, char **json,
                           size_t *len)
{
    if (m->config_digest == NULL)
        return CAIRN_E_INVAL;
    json_t *root = json_object();
    if (root == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    rc |= set_new(root, "schemaVersion", json_integer(2));
    rc |= set_new(root, "mediaType", json_string(CAIRN_MEDIA_MANIFEST));
    rc |= set_new(root, "config",
                  descriptor_json(m->config_media_type ? m->config_media_type
                                                       : CAIRN_MEDIA_CONFIG,
                                  m->config_digest, m->config_size));
    json_t *layers = json_array();
    rc |= set_new(root, "layers", layers);
    for (size_t i = 0; layers && i < m->nlayers; i++) {
        const struct cairn_layer_desc *d = &m->layers[i];
        json_t *e = descriptor_json(d->media_type ? d->media_type
                                                  : CAIRN_MEDIA_LAYER_GZIP,
                                    d->digest, d->size);
        if (e == NULL || json_array_append_new(layers, e) != 0) {
            rc = CAIRN_E_NOMEM;
            break;
        }
    }
    if (rc == 0)
        rc = dump(root, json, len);
    else
        rc = CAIRN_E_NOMEM;
    json_decref(root);
    return rc;
}

void cairn_manifest_clear(struct cairn_manifest *m)
{
    if (m == NULL)
        return;
    free(m->media_type);
    free(m->config_digest);
    free(m->config_media_type);
    if (m->layer_media)
        for (size_t i = 0; i < m->nlayers; i++)
            free(m->layer_media[i]);
    free(m->layer_media);
    free(m->layers);
    memset(m, 0, sizeof *m);
}
