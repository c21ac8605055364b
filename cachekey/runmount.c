#include "cachekey/runmount.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const type_names[] = {
    [CK_MOUNT_BIND] = "bind",   [CK_MOUNT_CACHE] = "cache",
    [CK_MOUNT_TMPFS] = "tmpfs", [CK_MOUNT_SECRET] = "secret",
    [CK_MOUNT_SSH] = "ssh",
};

static const char *const sharing_names[] = {
    [CK_SHARING_SHARED] = "shared",
    [CK_SHARING_PRIVATE] = "private",
    [CK_SHARING_LOCKED] = "locked",
};

const char *ck_mount_type_name(enum ck_mount_type type)
{
    return (size_t)type < sizeof type_names / sizeof type_names[0]
               ? type_names[type]
               : "?";
}

void ck_mount_clear(struct ck_mount *m)
{
    if (m == NULL)
        return;
    free(m->target);
    free(m->source);
    free(m->from);
    free(m->id);
    memset(m, 0, sizeof *m);
}

int ck_mount_parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        int shift;
    } units[] = {
        {"", 0},   {"b", 0},   {"k", 10}, {"kb", 10}, {"m", 20}, {"mb", 20},
        {"g", 30}, {"gb", 30}, {"t", 40}, {"tb", 40}, {"p", 50}, {"pb", 50},
    };
    size_t n = strspn(s, "0123456789.");
    if (n == 0 || strspn(s, ".") == n || strchr(s + n, '.') != NULL)
        return CAIRN_E_PARSE;
    char num[64];
    if (n >= sizeof num)
        return CAIRN_E_PARSE;
    memcpy(num, s, n);
    num[n] = '\0';
    char *end = NULL;
    errno = 0;
    double v = strtod(num, &end);
    if (errno || *end != '\0' || !isfinite(v) || v < 0)
        return CAIRN_E_PARSE;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(s + n, units[i].suffix) != 0)
            continue;
        double bytes = v * (double)((uint64_t)1 << units[i].shift);
        if (bytes >= 18446744073709551615.0)
            return CAIRN_E_PARSE;
        *out = (uint64_t)bytes;
        return 0;
    }
    return CAIRN_E_PARSE;
}

/* Go's strconv.ParseBool. */
static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return CAIRN_E_PARSE;
}

static int parse_u32(const char *s, int base, uint32_t *out)
{
    if (s[0] == '\0' || s[0] == '-' || s[0] == '+' ||
        isspace((unsigned char)s[0]))
        return CAIRN_E_PARSE;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end != '\0' || v > UINT32_MAX)
        return CAIRN_E_PARSE;
    *out = (uint32_t)v;
    return 0;
}

/* Splits one CSV record (Go's encoding/csv rules for one line) into
 * NUL-terminated fields written over buf; returns the count or -1 on a
 * bare or unterminated quote. */
static int csv_split(char *buf, char **fields, int max)
{
    int n = 0;
    char *r = buf, *w = buf;
    for (;;) {
        if (n == max)
            return -1;
        fields[n++] = w;
        if (*r == '"') {
            r++;
            for (;;) {
                if (*r == '\0')
                    return -1;
                if (*r == '"' && r[1] == '"') {
                    *w++ = '"';
                    r += 2;
                } else if (*r == '"') {
                    r++;
                    break;
                } else {
                    *w++ = *r++;
                }
            }
            if (*r != ',' && *r != '\0')
                return -1;
        } else {
            while (*r != ',' && *r != '\0') {
                if (*r == '"')
                    return -1;
                *w++ = *r++;
            }
        }
        bool more = *r == ',';
        *w++ = '\0';
        if (!more)
            return n;
        r++;
    }
}

#define MOUNT_MAX_FIELDS 64

static int set_str(char **dst, const char *v)
{
    char *c = strdup(v);
    if (c == NULL)
        return CAIRN_E_NOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

/* Checks what BuildKit's validateMount checks. */
static int validate(struct ck_mount *m, bool ro_auto, struct cairn_err *err)
{
    const char *t = ck_mount_type_name(m->type);
    bool file_info = m->type == CK_MOUNT_SECRET || m->type == CK_MOUNT_SSH ||
                     m->type == CK_MOUNT_CACHE;
    if (!file_info && m->has_mode)
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "mode not allowed for \"%s\" type mounts", t);
    if (!file_info && m->has_uid)
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "uid not allowed for \"%s\" type mounts", t);
    if (!file_info && m->has_gid)
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "gid not allowed for \"%s\" type mounts", t);
    if (ro_auto)
        m->readonly = !(m->type == CK_MOUNT_CACHE || m->type == CK_MOUNT_TMPFS);
    if (m->type == CK_MOUNT_SECRET) {
        if (m->from)
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "secret mount should not have a from");
        if (m->sharing_set)
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "secret mount should not define sharing");
        if (!m->source && !m->target && !m->id)
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "invalid secret mount. one of source, "
                                 "target required");
        if (m->source && m->id)
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "both source and id can't be set");
    }
    if (m->sharing_set && m->type != CK_MOUNT_CACHE)
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "invalid cache sharing set for %s mount", t);
    if (m->from && m->type != CK_MOUNT_BIND && m->type != CK_MOUNT_CACHE)
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "from is not allowed for \"%s\" type mounts", t);
    return 0;
}

static int apply_field(struct ck_mount *m, const char *field, const char *key,
                       const char *value, bool *ro_auto, struct cairn_err *err)
{
    const char *t = ck_mount_type_name(m->type);
    int rc = 0;
    if (strcmp(key, "type") == 0) {
        size_t i;
        for (i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
            if (strcasecmp(value, type_names[i]) == 0)
                break;
        if (i == sizeof type_names / sizeof type_names[0])
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "unsupported mount type \"%s\" (bind, cache, "
                                 "tmpfs, secret or ssh)",
                                 value);
        m->type = (enum ck_mount_type)i;
    } else if (strcmp(key, "from") == 0) {
        rc = set_str(&m->from, value);
    } else if (strcmp(key, "source") == 0 || strcmp(key, "src") == 0) {
        rc = set_str(&m->source, value);
    } else if (strcmp(key, "target") == 0 || strcmp(key, "dst") == 0 ||
               strcmp(key, "destination") == 0) {
        rc = set_str(&m->target, value);
    } else if (strcmp(key, "readonly") == 0 || strcmp(key, "ro") == 0 ||
               strcmp(key, "readwrite") == 0 || strcmp(key, "rw") == 0) {
        bool v;
        if (parse_bool(value, &v))
            return cairn_err_set(err, CAIRN_E_PARSE, "invalid value for %s: %s",
                                 key, value);
        bool ro_key = strcmp(key, "readonly") == 0 || strcmp(key, "ro") == 0;
        m->readonly = ro_key ? v : !v;
        *ro_auto = false;
    } else if (strcmp(key, "required") == 0) {
        if (m->type != CK_MOUNT_SECRET && m->type != CK_MOUNT_SSH)
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "unexpected key '%s' for mount type '%s'", key,
                                 t);
        if (parse_bool(value, &m->required))
            return cairn_err_set(err, CAIRN_E_PARSE, "invalid value for %s: %s",
                                 key, value);
    } else if (strcmp(key, "size") == 0) {
        if (m->type != CK_MOUNT_TMPFS)
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "unexpected key '%s' for mount type '%s'", key,
                                 t);
        if (ck_mount_parse_size(value, &m->size))
            return cairn_err_set(err, CAIRN_E_PARSE, "invalid value for %s: %s",
                                 key, value);
    } else if (strcmp(key, "id") == 0) {
        rc = set_str(&m->id, value);
    } else if (strcmp(key, "sharing") == 0) {
        size_t i;
        for (i = 0; i < 3; i++)
            if (strcasecmp(value, sharing_names[i]) == 0)
                break;
        if (i == 3)
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "unsupported sharing value \"%s\" (shared, "
                                 "private or locked)",
                                 value);
        m->sharing = (enum ck_mount_sharing)i;
        m->sharing_set = true;
    } else if (strcmp(key, "mode") == 0) {
        if (parse_u32(value, 8, &m->mode) || m->mode > 07777)
            return cairn_err_set(err, CAIRN_E_PARSE,
                                 "invalid value %s for mode", value);
        m->has_mode = true;
    } else if (strcmp(key, "uid") == 0) {
        if (parse_u32(value, 10, &m->uid))
            return cairn_err_set(err, CAIRN_E_PARSE, "invalid value %s for uid",
                                 value);
        m->has_uid = true;
    } else if (strcmp(key, "gid") == 0) {
        if (parse_u32(value, 10, &m->gid))
            return cairn_err_set(err, CAIRN_E_PARSE, "invalid value %s for gid",
                                 value);
        m->has_gid = true;
    } else {
        return cairn_err_set(err, CAIRN_E_PARSE, "unexpected key '%s' in '%s'",
                             key, field);
    }
    return rc ? cairn_err_set(err, rc, "out of memory") : 0;
}

int ck_mount_parse(const char *text, ck_mount_expand_fn expand, void *arg,
                   struct ck_mount *out, struct cairn_err *err)
{
    size_t len = strlen(text);
    if (len > CK_MOUNT_MAX_TEXT)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "--mount value longer than %d bytes",
                             CK_MOUNT_MAX_TEXT);
    char *buf = strdup(text);
    if (buf == NULL)
        return CAIRN_E_NOMEM;
    struct ck_mount m;
    memset(&m, 0, sizeof m);
    char *fields[MOUNT_MAX_FIELDS];
    bool ro_auto = true;
    int rc = 0;
    int n = csv_split(buf, fields, MOUNT_MAX_FIELDS);
    if (n < 0) {
        rc = cairn_err_set(err, CAIRN_E_PARSE,
                           "failed to parse csv mounts: bad quoting or more "
                           "than %d fields",
                           MOUNT_MAX_FIELDS);
        goto out;
    }
    for (int i = 0; !rc && i < n; i++) {
        char *field = fields[i];
        char *eq = strchr(field, '=');
        char key[32];
        size_t kl = eq ? (size_t)(eq - field) : strlen(field);
        if (kl >= sizeof key) {
            rc = cairn_err_set(err, CAIRN_E_PARSE,
                               "unexpected key '%.40s' in '%.200s'", field,
                               field);
            break;
        }
        for (size_t k = 0; k < kl; k++)
            key[k] = (char)tolower((unsigned char)field[k]);
        key[kl] = '\0';
        if (eq == NULL) {
            /* Only the booleans may stand alone. */
            if (strcmp(key, "readonly") == 0 || strcmp(key, "ro") == 0 ||
                strcmp(key, "readwrite") == 0 || strcmp(key, "rw") == 0 ||
                strcmp(key, "required") == 0)
                rc = apply_field(&m, field, key, "true", &ro_auto, err);
            else
                rc = cairn_err_set(err, CAIRN_E_PARSE,
                                   "invalid field '%s' must be a key=value "
                                   "pair",
                                   field);
            continue;
        }
        const char *value = eq + 1;
        char *expanded = NULL;
        if (strcmp(key, "from") == 0) {
            if (strchr(value, '$') != NULL && value[strcspn(value, "$") + 1]) {
                rc = cairn_err_set(err, CAIRN_E_PARSE,
                                   "'from' doesn't support variable "
                                   "expansion, define alias stage instead");
                continue;
            }
        } else if (expand != NULL) {
            rc = expand(arg, value, &expanded, err);
            if (rc)
                continue;
            if (strlen(expanded) > CK_MOUNT_MAX_TEXT) {
                free(expanded);
                rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                                   "--mount %s longer than %d bytes after "
                                   "expansion",
                                   key, CK_MOUNT_MAX_TEXT);
                continue;
            }
            value = expanded;
        }
        rc = apply_field(&m, field, key, value, &ro_auto, err);
        free(expanded);
    }
    if (!rc)
        rc = validate(&m, ro_auto, err);
out:
    free(buf);
    if (rc) {
        ck_mount_clear(&m);
        return rc;
    }
    *out = m;
    return 0;
}
