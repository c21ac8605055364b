#include "cachekey/exclude.h"

#include "cachekey/dockerignore.h"
#include "cachekey/field.h"
#include "common/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ck_exclude {
    struct ck_ignore *ig;
};

int ck_exclude_new(char *const *patterns, size_t n, struct ck_exclude **out,
                   struct cairn_err *err)
{
    struct ck_exclude *x = calloc(1, sizeof *x);
    if (x == NULL)
        return CAIRN_E_NOMEM;
    struct cairn_buf b;
    cairn_buf_init(&b, CK_IGNORE_MAX_SIZE);
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++)
        rc = cairn_buf_printf(&b, "%s\n", patterns[i]);
    if (rc) {
        cairn_err_set(err, rc, "--exclude patterns: %s", cairn_strerror(rc));
        goto out;
    }
    rc = ck_ignore_parse(b.data ? b.data : "", b.len, &x->ig, err);
    if (rc)
        cairn_err_prefix(err, "--exclude");
out:
    cairn_buf_free(&b);
    if (rc) {
        ck_exclude_free(x);
        return rc;
    }
    *out = x;
    return 0;
}

void ck_exclude_free(struct ck_exclude *x)
{
    if (x == NULL)
        return;
    ck_ignore_free(x->ig);
    free(x);
}

bool ck_exclude_entry(const struct ck_exclude *x,
                      const struct ck_context_entry *e)
{
    if (x == NULL || ck_ignore_count(x->ig) == 0)
        return false;
    if (e->match_is_dir)
        return strcmp(e->rel, ".") != 0 && ck_ignore_excluded(x->ig, e->rel);
    const char *base = strrchr(e->match, '/');
    return ck_ignore_excluded(x->ig, base ? base + 1 : e->match);
}

struct digest_job {
    const struct ck_exclude *x;
    struct ck_sha256 *h;
    char *last_match;
};

static int digest_entry(void *arg, const struct ck_context_entry *e)
{
    struct digest_job *j = arg;
    if (ck_exclude_entry(j->x, e))
        return 0;
    int rc = 0;
    if (j->last_match == NULL || strcmp(j->last_match, e->match) != 0) {
        free(j->last_match);
        if ((j->last_match = strdup(e->match)) == NULL)
            return CAIRN_E_NOMEM;
        rc = ck_field_hash_str(j->h, "match");
        if (!rc)
            rc = ck_field_hash_str(j->h, e->match);
    }
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", e->mode & 07777);
    if (!rc)
        rc = ck_field_hash_str(j->h, e->rel);
    if (!rc)
        rc = ck_field_hash_str(j->h, e->type == 'f'   ? "f"
                                     : e->type == 'd' ? "d"
                                                      : "l");
    if (!rc)
        rc = ck_field_hash_str(j->h, mode);
    if (!rc)
        rc = ck_field_hash_str(
            j->h, e->type == 'l' && e->link_target ? e->link_target : "");
    if (!rc)
        rc = ck_field_hash(j->h, e->digest,
                           e->type == 'f' && e->digest ? CK_SHA256_LEN : 0);
    return rc;
}

int ck_exclude_digest(struct ck_context *ctx, const char *src,
                      const struct ck_exclude *x, uint8_t out[CK_SHA256_LEN],
                      struct cairn_err *err)
{
    struct digest_job j = {x, NULL, NULL};
    int rc = ck_sha256_new(&j.h);
    if (rc)
        return rc;
    rc = ck_context_source_each(ctx, src, digest_entry, &j, err);
    if (!rc)
        rc = ck_sha256_final(j.h, out);
    ck_sha256_free(j.h);
    free(j.last_match);
    return rc;
}
