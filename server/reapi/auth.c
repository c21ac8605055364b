#include "server/reapi/auth.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct grant {
    char *token;
    char *glob;
    enum cd_access role;
};

struct cd_auth {
    struct grant *grants;
    size_t n;
};

static const struct {
    const char *name;
    enum cd_access role;
} role_table[] = {
    {"read", CD_ACCESS_READ},
    {"write", CD_ACCESS_WRITE},
};

void cd_auth_free(struct cd_auth *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->grants[i].token);
        free(a->grants[i].glob);
    }
    free(a->grants);
    free(a);
}

size_t cd_auth_count(const struct cd_auth *a) { return a ? a->n : 0; }

static int parse_line(char *line, unsigned lineno, struct cd_auth *a,
                      size_t *alloc, struct cairn_err *err)
{
    char *hash = strchr(line, '#');
    if (hash != NULL)
        *hash = '\0';
    char *save = NULL;
    char *tok = strtok_r(line, " \t\r\n", &save);
    if (tok == NULL)
        return 0; /* blank or comment-only line */
    char *role = strtok_r(NULL, " \t\r\n", &save);
    char *glob = strtok_r(NULL, " \t\r\n", &save);
    char *extra = strtok_r(NULL, " \t\r\n", &save);
    if (role == NULL || glob == NULL || extra != NULL)
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "line %u: expected 'token role instance-glob'", lineno);
    size_t r = 0;
    while (r < sizeof role_table / sizeof *role_table && strcmp(role_table[r].name, role) != 0)
        r++;
    if (r == sizeof role_table / sizeof *role_table)
        return cairn_err_set(err, CAIRN_E_PARSE,
                             "line %u: role '%s' is not read or write", lineno, role);
    if (a->n == CD_AUTH_MAX_GRANTS)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "more than %d grants", CD_AUTH_MAX_GRANTS);
    if (a->n == *alloc) {
        size_t na = *alloc ? *alloc * 2 : 16;
        struct grant *g = realloc(a->grants, na * sizeof *g);
        if (g == NULL)
            return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        a->grants = g;
        *alloc = na;
    }
    struct grant *g = &a->grants[a->n];
    g->token = strdup(tok);
    g->glob = strdup(glob);
    g->role = role_table[r].role;
    if (g->token == NULL || g->glob == NULL) {
        free(g->token);
        free(g->glob);
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    }
    a->n++;
    return 0;
}

int cd_auth_load(const char *path, struct cd_auth **out, struct cairn_err *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        return cairn_err_set(err, -e, "%s: %s", path, strerror(e));
    }
    struct cd_auth *a = calloc(1, sizeof *a);
    int rc = a ? 0 : cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    size_t alloc = 0;
    char line[CD_AUTH_MAX_LINE + 2];
    unsigned lineno = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (strlen(line) > CD_AUTH_MAX_LINE) {
            rc = cairn_err_set(err, CAIRN_E_TOOBIG, "line %u is longer than %d bytes",
                               lineno, CD_AUTH_MAX_LINE);
            break;
        }
        rc = parse_line(line, lineno, a, &alloc, err);
    }
    if (rc == 0 && ferror(f))
        rc = cairn_err_set(err, CAIRN_E_IO, "cannot read");
    fclose(f);
    if (rc != 0) {
        cairn_err_prefix(err, "%s", path);
        cd_auth_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

/* Compares without stopping at the first difference, so response time
 * does not tell an attacker how much of a guessed token was right. */
static int token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la && i < lb; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

int cd_auth_check(const struct cd_auth *a, const char *authorization,
                  const char *instance, enum cd_access need)
{
    if (a == NULL)
        return 0;
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return CAIRN_E_AUTH;
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    if (*token == '\0')
        return CAIRN_E_AUTH;
    if (instance == NULL)
        instance = "";
    int known = 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct grant *g = &a->grants[i];
        if (!token_equal(g->token, token))
            continue;
        known = 1;
        if (g->role >= need && fnmatch(g->glob, instance, 0) == 0)
            return 0;
    }
    return known ? -EACCES : CAIRN_E_AUTH;
}
