/* Explaining cache misses: the remembered last build of a tag (its record
 * format, made from a plan, stored per tag) — see explain.h and
 * docs/explain.md. The diff of two steps is in explain_diff.c.
 */
#include "client/engine/explain.h"
#include "client/engine/material.h"

#include "cachekey/field.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECORD_MAGIC "cairn-lastbuild-1"

/* ---- lifetimes ---------------------------------------------------------- */

static void source_clear(struct cairn_explain_source *src)
{
    for (size_t i = 0; i < src->nfiles; i++)
        free(src->files[i].path);
    free(src->files);
    free(src->src);
    memset(src, 0, sizeof *src);
}

void cairn_explain_step_clear(struct cairn_explain_step *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nsources; i++)
        source_clear(&s->sources[i]);
    free(s->sources);
    cairn_buf_free(&s->material);
    cairn_strvec_free(&s->args);
    memset(s, 0, sizeof *s);
}

void cairn_explain_build_clear(struct cairn_explain_build *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->nsteps; i++)
        cairn_explain_step_clear(&b->steps[i]);
    free(b->steps);
    memset(b, 0, sizeof *b);
}

/* ---- the record ------------------------------------------------------------ */

static int put_u64(struct cairn_buf *b, uint64_t v)
{
    char t[24];
    snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    return ck_field_append_str(b, t);
}

static int encode_step(const struct cairn_explain_step *s, bool listings,
                       struct cairn_buf *b)
{
    int rc = put_u64(b, s->stage);
    if (!rc)
        rc = put_u64(b, (uint64_t)(s->number < 0 ? 0 : s->number));
    if (!rc)
        rc = ck_field_append_str(b, s->key);
    if (!rc)
        rc = ck_field_append(b, s->material.data ? s->material.data : "",
                             s->material.len);
    if (!rc)
        rc = put_u64(b, s->args.n);
    for (size_t i = 0; !rc && i < s->args.n; i++)
        rc = ck_field_append_str(b, s->args.v[i]);
    if (!rc)
        rc = put_u64(b, s->nsources);
    for (size_t i = 0; !rc && i < s->nsources; i++) {
        const struct cairn_explain_source *src = &s->sources[i];
        bool listed = listings && src->listed;
        rc = ck_field_append_str(b, src->src);
        if (!rc)
            rc = ck_field_append_str(b, listed ? "1" : "0");
        if (!rc)
            rc = put_u64(b, listed ? src->nfiles : 0);
        for (size_t j = 0; !rc && listed && j < src->nfiles; j++) {
            const struct cairn_explain_file *f = &src->files[j];
            char meta[16];
            snprintf(meta, sizeof meta, "%c%04o", f->type, f->mode & 07777u);
            rc = ck_field_append_str(b, f->path);
            if (!rc)
                rc = ck_field_append_str(b, meta);
            if (!rc)
                rc = ck_field_append(b, f->digest,
                                     f->has_digest ? sizeof f->digest : 0);
        }
    }
    return rc;
}

int cairn_explain_build_encode(const struct cairn_explain_build *b,
                               bool with_listings, struct cairn_buf *out)
{
    int rc = ck_field_append_str(out, RECORD_MAGIC);
    if (!rc)
        rc = put_u64(out, b->nsteps);
    for (size_t i = 0; !rc && i < b->nsteps; i++)
        rc = encode_step(&b->steps[i], with_listings, out);
    return rc;
}

struct reader {
    const char *data;
    size_t len, pos;
};

static int get_field(struct reader *r, const char **p, size_t *n)
{
    const void *v;
    int rc = ck_field_next(r->data, r->len, &r->pos, &v, n);
    if (!rc)
        *p = v;
    return rc;
}

/* A string field (no NUL inside), malloc'd. */
static int get_str(struct reader *r, char **out)
{
    const char *p;
    size_t n;
    int rc = get_field(r, &p, &n);
    if (rc)
        return rc;
    if (memchr(p, '\0', n))
        return CAIRN_E_CORRUPT;
    *out = strndup(p, n);
    return *out ? 0 : CAIRN_E_NOMEM;
}

/* A count; each counted item takes at least one 8-byte field header, so
 * a count over what is left is corrupt (and never allocated). */
static int get_count(struct reader *r, size_t *out)
{
    const char *p;
    size_t n;
    int rc = get_field(r, &p, &n);
    if (rc)
        return rc;
    if (n == 0 || n > 20)
        return CAIRN_E_CORRUPT;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return CAIRN_E_CORRUPT;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (v > (r->len - r->pos) / 8)
        return CAIRN_E_CORRUPT;
    *out = (size_t)v;
    return 0;
}

static int decode_source(struct reader *r, struct cairn_explain_source *s)
{
    int rc = get_str(r, &s->src);
    const char *p;
    size_t n, nf = 0;
    if (!rc)
        rc = get_field(r, &p, &n);
    if (!rc && (n != 1 || (p[0] != '0' && p[0] != '1')))
        rc = CAIRN_E_CORRUPT;
    if (!rc)
        s->listed = p[0] == '1';
    if (!rc)
        rc = get_count(r, &nf);
    if (!rc && nf > 0) {
        s->files = calloc(nf, sizeof *s->files);
        if (s->files == NULL)
            rc = CAIRN_E_NOMEM;
    }
    for (size_t i = 0; !rc && i < nf; i++) {
        struct cairn_explain_file *f = &s->files[i];
        rc = get_str(r, &f->path);
        if (rc)
            break;
        s->nfiles++;
        rc = get_field(r, &p, &n);
        if (!rc && (n != 5 || strchr("fdl", p[0]) == NULL || p[0] == '\0'))
            rc = CAIRN_E_CORRUPT;
        unsigned mode = 0;
        for (size_t k = 1; !rc && k < 5; k++) {
            if (p[k] < '0' || p[k] > '7')
                rc = CAIRN_E_CORRUPT;
            mode = mode * 8 + (unsigned)(p[k] - '0');
        }
        if (!rc) {
            f->type = p[0];
            f->mode = mode;
            rc = get_field(r, &p, &n);
        }
        if (!rc && n != 0 && n != sizeof f->digest)
            rc = CAIRN_E_CORRUPT;
        if (!rc && n) {
            f->has_digest = true;
            memcpy(f->digest, p, n);
        }
    }
    return rc;
}

static int decode_step(struct reader *r, struct cairn_explain_step *s)
{
    size_t v = 0, n = 0;
    const char *p;
    cairn_buf_init(&s->material, CK_KEY_MAX_MATERIAL);
    cairn_strvec_init(&s->args);
    int rc = get_count(r, &v);
    s->stage = v;
    if (!rc)
        rc = get_count(r, &v);
    if (!rc && v > 1000000)
        rc = CAIRN_E_CORRUPT;
    s->number = (int)v;
    if (!rc)
        rc = get_field(r, &p, &n);
    if (!rc && n != CK_SHA256_HEX_LEN)
        rc = CAIRN_E_CORRUPT;
    if (!rc) {
        memcpy(s->key, p, n);
        s->key[n] = '\0';
        rc = get_field(r, &p, &n);
    }
    if (!rc)
        rc = cairn_buf_append(&s->material, p, n);
    if (!rc)
        rc = get_count(r, &n);
    for (size_t i = 0; !rc && i < n; i++) {
        char *a = NULL;
        rc = get_str(r, &a);
        if (!rc)
            rc = cairn_strvec_push_take(&s->args, a);
    }
    if (!rc)
        rc = get_count(r, &n);
    if (!rc && n > 0) {
        s->sources = calloc(n, sizeof *s->sources);
        if (s->sources == NULL)
            rc = CAIRN_E_NOMEM;
    }
    for (size_t i = 0; !rc && i < n; i++) {
        s->nsources++;
        rc = decode_source(r, &s->sources[i]);
    }
    return rc;
}

int cairn_explain_build_decode(const void *data, size_t len,
                               struct cairn_explain_build *out)
{
    struct reader r = {data, len, 0};
    struct cairn_explain_build b = {0};
    const char *p;
    size_t n = 0;
    int rc = get_field(&r, &p, &n);
    if (!rc && (n != strlen(RECORD_MAGIC) || memcmp(p, RECORD_MAGIC, n) != 0))
        rc = CAIRN_E_CORRUPT;
    if (!rc)
        rc = get_count(&r, &n);
    if (!rc && n > 0) {
        b.steps = calloc(n, sizeof *b.steps);
        if (b.steps == NULL)
            rc = CAIRN_E_NOMEM;
    }
    for (size_t i = 0; !rc && i < n; i++) {
        b.nsteps++;
        rc = decode_step(&r, &b.steps[i]);
    }
    if (!rc && r.pos != r.len)
        rc = CAIRN_E_CORRUPT;
    if (rc) {
        cairn_explain_build_clear(&b);
        return rc;
    }
    *out = b;
    return 0;
}

/* ---- from a plan ------------------------------------------------------------ */

struct lister {
    struct cairn_explain_source *s;
    size_t cap;
    bool over;
};

static int list_cb(void *arg, const char *relpath, char type, unsigned mode,
                   const uint8_t *digest)
{
    struct lister *l = arg;
    struct cairn_explain_source *s = l->s;
    if (s->nfiles == CAIRN_EXPLAIN_MAX_FILES) {
        /* Too many to remember: stop walking, keep no listing. */
        l->over = true;
        return 1;
    }
    if (s->nfiles == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        struct cairn_explain_file *nf = realloc(s->files, nc * sizeof *nf);
        if (nf == NULL)
            return CAIRN_E_NOMEM;
        s->files = nf;
        l->cap = nc;
    }
    struct cairn_explain_file *f = &s->files[s->nfiles];
    memset(f, 0, sizeof *f);
    f->path = strdup(relpath);
    if (f->path == NULL)
        return CAIRN_E_NOMEM;
    f->type = type;
    f->mode = mode & 07777u;
    if (digest) {
        f->has_digest = true;
        memcpy(f->digest, digest, sizeof f->digest);
    }
    s->nfiles++;
    return 0;
}

int cairn_explain_step_list(struct cairn_explain_step *s,
                            struct ck_context *ctx, struct cairn_err *err)
{
    struct cairn_material_fields fs;
    int rc = cairn_material_parse(&s->material, &fs);
    if (rc)
        return rc;
    size_t n = 0;
    for (size_t i = 0; i + 1 < fs.n; i++)
        if (cairn_material_label_is(&fs.v[i], "src") && cairn_material_label_is(&fs.v[i + 1], "src-tree"))
            n++;
    if (n > 0) {
        s->sources = calloc(n, sizeof *s->sources);
        if (s->sources == NULL)
            rc = CAIRN_E_NOMEM;
    }
    for (size_t i = 0; !rc && i + 1 < fs.n; i++) {
        if (!cairn_material_label_is(&fs.v[i], "src") || !cairn_material_label_is(&fs.v[i + 1], "src-tree"))
            continue;
        struct cairn_explain_source *src = &s->sources[s->nsources++];
        src->src = strndup(fs.v[i].value, fs.v[i].vn);
        if (src->src == NULL) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        struct lister l = {src, 0, false};
        rc = ck_context_source_walk(ctx, src->src, list_cb, &l, err);
        if (rc == 1 && l.over) {
            rc = 0;
            for (size_t k = 0; k < src->nfiles; k++)
                free(src->files[k].path);
            free(src->files);
            src->files = NULL;
            src->nfiles = 0;
        } else if (rc == 0) {
            src->listed = true;
        }
    }
    free(fs.v);
    return rc;
}

int cairn_explain_step_from_plan(const struct ck_plan *plan,
                                 const struct ck_keys *keys, size_t i,
                                 struct ck_context *ctx,
                                 struct cairn_explain_step *out,
                                 struct cairn_err *err)
{
    const struct ck_step *ps = &plan->steps[i];
    const struct ck_step_key *k = &keys->keys[i];
    memset(out, 0, sizeof *out);
    cairn_buf_init(&out->material, CK_KEY_MAX_MATERIAL);
    cairn_strvec_init(&out->args);
    out->stage = ps->stage;
    out->number = ps->number;
    snprintf(out->key, sizeof out->key, "%s", k->hex);
    int rc = cairn_buf_append(&out->material, k->material.data ? k->material.data : "",
                              k->material.len);
    for (size_t a = 0; !rc && a < ps->nargs_in_scope; a++)
        rc = cairn_strvec_push(&out->args, ps->args_in_scope[a]);
    if (!rc && ctx != NULL && (ps->instr->kind == CK_INSTR_COPY ||
                               ps->instr->kind == CK_INSTR_ADD))
        rc = cairn_explain_step_list(out, ctx, err);
    if (rc)
        cairn_explain_step_clear(out);
    return rc;
}

int cairn_explain_build_from_plan(const struct ck_plan *plan,
                                  const struct ck_keys *keys,
                                  struct ck_context *ctx,
                                  struct cairn_explain_build *out,
                                  struct cairn_err *err)
{
    struct cairn_explain_build b = {0};
    b.steps = calloc(plan->nsteps + 1, sizeof *b.steps);
    if (b.steps == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    for (size_t i = 0; !rc && i < plan->nsteps; i++) {
        if (!keys->keys[i].computed || keys->keys[i].unresolved)
            continue;
        rc = cairn_explain_step_from_plan(plan, keys, i, ctx,
                                          &b.steps[b.nsteps], err);
        if (!rc)
            b.nsteps++;
    }
    if (rc) {
        cairn_explain_build_clear(&b);
        return rc;
    }
    *out = b;
    return 0;
}

/* ---- matching, remembering, loading ----------------------------------------- */

static bool same_field(const struct cairn_explain_step *a,
                       const struct cairn_explain_step *b, const char *label)
{
    struct cairn_material_fields fa, fb;
    if (cairn_material_parse(&a->material, &fa))
        return false;
    if (cairn_material_parse(&b->material, &fb)) {
        free(fa.v);
        return false;
    }
    bool eq = cairn_material_single_eq(cairn_material_get(&fa, label), cairn_material_get(&fb, label));
    free(fa.v);
    free(fb.v);
    return eq;
}

const struct cairn_explain_step *
cairn_explain_build_match(const struct cairn_explain_build *b,
                          const struct cairn_explain_step *step)
{
    const struct cairn_explain_step *pos = NULL;
    for (size_t i = 0; i < b->nsteps; i++) {
        const struct cairn_explain_step *o = &b->steps[i];
        if (o->stage == step->stage && o->number == step->number) {
            if (same_field(o, step, "op"))
                return o;
            pos = o;
        }
    }
    for (size_t i = 0; i < b->nsteps; i++) {
        const struct cairn_explain_step *o = &b->steps[i];
        if (o->stage == step->stage && same_field(o, step, "op") &&
            same_field(o, step, "instruction"))
            return o;
    }
    return pos;
}

int cairn_explain_record(const struct cairn_explain_build *b,
                         struct cairn_buf *rec)
{
    cairn_buf_init(rec, CAIRN_STORE_LASTBUILD_MAX);
    int rc = cairn_explain_build_encode(b, true, rec);
    if (rc == CAIRN_E_TOOBIG) {
        /* Listings are the bulk; without them a change is still found,
         * only not named by file. */
        cairn_buf_reset(rec);
        rc = cairn_explain_build_encode(b, false, rec);
    }
    return rc;
}

int cairn_explain_remember(struct cairn_store *st, const char *const *tags,
                           size_t ntags, const struct cairn_explain_build *b,
                           struct cairn_err *err)
{
    if (ntags == 0)
        return 0;
    struct cairn_buf rec;
    int rc = cairn_explain_record(b, &rec);
    for (size_t i = 0; !rc && i < ntags; i++)
        rc = cairn_store_lastbuild_put(st, tags[i], rec.data, rec.len, err);
    if (rc == CAIRN_E_TOOBIG) {
        for (size_t i = 0; i < ntags; i++)
            (void)cairn_store_lastbuild_remove(st, tags[i], NULL);
        rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                           "key materials over %u bytes: not remembered",
                           CAIRN_STORE_LASTBUILD_MAX);
    }
    cairn_buf_free(&rec);
    return rc;
}

int cairn_explain_load(struct cairn_store *st, const char *tag,
                       struct cairn_explain_build *out, struct cairn_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = cairn_store_lastbuild_get(st, tag, &data, &len, err);
    if (rc)
        return rc;
    rc = cairn_explain_build_decode(data, len, out);
    free(data);
    if (rc == CAIRN_E_CORRUPT)
        return cairn_err_set(err, CAIRN_E_NOTFOUND,
                             "the last build of %s is unreadable", tag);
    return rc;
}
