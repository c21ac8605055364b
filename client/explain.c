/* Explaining cache misses: the remembered last build of a tag and the
 * diff of two key materials (see explain.h and docs/explain.md).
 *
 * The diff needs no knowledge of how a material is laid out beyond its
 * labels (docs/cachekey.md): fields are grouped by label and each group is
 * compared as a whole, so a field added by a later key version shows up as
 * "<label> changed" instead of being missed.
 */
#include "client/explain.h"

#include "cachekey/field.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECORD_MAGIC "cairn-lastbuild-1"
/* Longest value quoted in a cause; longer ones are cut with "...". */
#define SHOW_MAX 60

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

/* ---- materials as label groups ------------------------------------------ */

struct field {
    const char *label, *value;
    size_t ln, vn;
};

struct fields {
    struct field *v;
    size_t n;
};

static int fields_parse(const struct cairn_buf *m, struct fields *out)
{
    size_t pos = 0, cap = 0;
    out->v = NULL;
    out->n = 0;
    const char *l, *v;
    size_t ln, vn;
    int rc;
    while ((rc = ck_material_next(m->data, m->len, &pos, &l, &ln, &v, &vn)) ==
           1) {
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            struct field *nv = realloc(out->v, nc * sizeof *nv);
            if (nv == NULL) {
                free(out->v);
                return CAIRN_E_NOMEM;
            }
            out->v = nv;
            cap = nc;
        }
        out->v[out->n++] = (struct field){l, v, ln, vn};
    }
    if (rc != 0) {
        free(out->v);
        out->v = NULL;
        return rc;
    }
    return 0;
}

static bool label_is(const struct field *f, const char *label)
{
    return f->ln == strlen(label) && memcmp(f->label, label, f->ln) == 0;
}

static bool value_eq(const struct field *a, const struct field *b)
{
    return a->vn == b->vn && memcmp(a->value, b->value, a->vn) == 0;
}

/* The first field labelled label, or NULL. */
static const struct field *field_get(const struct fields *fs,
                                     const char *label)
{
    for (size_t i = 0; i < fs->n; i++)
        if (label_is(&fs->v[i], label))
            return &fs->v[i];
    return NULL;
}

/* Whether the values labelled like f (in order) are the same in a and b;
 * two absent groups are equal. */
static bool group_eq(const struct fields *a, const struct fields *b,
                     const struct field *f)
{
    size_t i = 0, j = 0;
    for (;;) {
        while (i < a->n && !(a->v[i].ln == f->ln &&
                             memcmp(a->v[i].label, f->label, f->ln) == 0))
            i++;
        while (j < b->n && !(b->v[j].ln == f->ln &&
                             memcmp(b->v[j].label, f->label, f->ln) == 0))
            j++;
        if (i == a->n || j == b->n)
            return i == a->n && j == b->n;
        if (!value_eq(&a->v[i], &b->v[j]))
            return false;
        i++;
        j++;
    }
}

/* Whether one of the first n fields of fs is labelled like f. */
static bool has_label(const struct fields *fs, size_t n, const struct field *f)
{
    for (size_t k = 0; k < n; k++)
        if (fs->v[k].ln == f->ln && memcmp(fs->v[k].label, f->label, f->ln) == 0)
            return true;
    return false;
}

static bool single_eq(const struct field *a, const struct field *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return value_eq(a, b);
}

/* ---- cause text ---------------------------------------------------------- */

/* A value as a cause shows it: control characters escaped and cut at
 * SHOW_MAX bytes, so one cause is always one short line. */
static int show(struct cairn_buf *b, const char *v, size_t n)
{
    if (v == NULL)
        return cairn_buf_puts(b, "unset");
    int rc = 0;
    size_t shown = n > SHOW_MAX ? SHOW_MAX : n;
    for (size_t i = 0; !rc && i < shown; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '\n')
            rc = cairn_buf_puts(b, "\\n");
        else if (c == '\\')
            rc = cairn_buf_puts(b, "\\\\");
        else if (c < 0x20 || c == 0x7f)
            rc = cairn_buf_printf(b, "\\x%02x", c);
        else
            rc = cairn_buf_putc(b, (char)c);
    }
    if (!rc && shown < n)
        rc = cairn_buf_puts(b, "...");
    return rc;
}

struct diff {
    struct cairn_strvec *causes;
    const char *kind; /* the instruction keyword, for prefixes */
    size_t nkind;
    struct cairn_buf line;
};

/* Adds "KIND[ SRC]: what[ (old -> new)]". old/new NULL with has_values
 * false: no values shown. */
static int cause(struct diff *d, const char *src, const char *what,
                 bool has_values, const char *old, size_t on,
                 const char *cur, size_t cn)
{
    struct cairn_buf *b = &d->line;
    cairn_buf_reset(b);
    int rc = cairn_buf_append(b, d->kind, d->nkind);
    if (!rc && src) {
        rc = cairn_buf_putc(b, ' ');
        if (!rc)
            rc = show(b, src, strlen(src));
    }
    if (!rc)
        rc = cairn_buf_printf(b, ": %s", what);
    if (!rc && has_values) {
        rc = cairn_buf_puts(b, " (");
        if (!rc)
            rc = show(b, old, on);
        if (!rc)
            rc = cairn_buf_puts(b, " -> ");
        if (!rc)
            rc = show(b, cur, cn);
        if (!rc)
            rc = cairn_buf_putc(b, ')');
    }
    if (!rc)
        rc = cairn_strvec_push(d->causes, b->data);
    return rc;
}

/* ---- environment --------------------------------------------------------- */

/* Whether K=V (name n bytes, value v/vn) is a build arg's: an ARG in
 * scope with that very value (an ENV of the same name wins over the ARG,
 * and then the value differs or the change is the ENV's). */
static bool is_arg(const struct cairn_strvec *args, const char *k, size_t kn,
                   const char *v, size_t vn)
{
    for (size_t i = 0; i < args->n; i++) {
        const char *a = args->v[i];
        if (strncmp(a, k, kn) != 0 || a[kn] != '=')
            continue;
        if (v == NULL || (strlen(a + kn + 1) == vn &&
                          memcmp(a + kn + 1, v, vn) == 0))
            return true;
    }
    return false;
}

struct kv {
    const char *k, *v;
    size_t kn, vn;
};

static int env_collect(const struct fields *fs, struct kv **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < fs->n; i++)
        if (label_is(&fs->v[i], "env"))
            cnt++;
    if (cnt == 0)
        return 0;
    struct kv *v = calloc(cnt, sizeof *v);
    if (v == NULL)
        return CAIRN_E_NOMEM;
    for (size_t i = 0; i < fs->n; i++) {
        if (!label_is(&fs->v[i], "env"))
            continue;
        const char *s = fs->v[i].value;
        size_t len = fs->v[i].vn;
        const char *eq = memchr(s, '=', len);
        size_t kn = eq ? (size_t)(eq - s) : len;
        v[(*n)++] = (struct kv){s, eq ? eq + 1 : "", kn,
                                eq ? len - kn - 1 : 0};
    }
    *out = v;
    return 0;
}

static int kv_cmp(const struct kv *a, const struct kv *b)
{
    size_t m = a->kn < b->kn ? a->kn : b->kn;
    int c = memcmp(a->k, b->k, m);
    if (c)
        return c;
    return a->kn < b->kn ? -1 : a->kn > b->kn;
}

static int kv_sort_cmp(const void *a, const void *b)
{
    return kv_cmp(a, b);
}

struct explain_args_pair {
    const struct cairn_strvec *old, *cur;
};

/* One cause per variable added, removed or changed; a variable is a
 * "build arg" when an ARG in scope gives it on either side. */
static int diff_env(struct diff *d, const struct fields *of,
                    const struct fields *cf,
                    const struct explain_args_pair *args)
{
    struct kv *o = NULL, *c = NULL;
    size_t on = 0, cn = 0;
    int rc = env_collect(of, &o, &on);
    if (!rc)
        rc = env_collect(cf, &c, &cn);
    if (rc)
        goto out;
    /* The material sorts env by name already; sorting again keeps the
     * output ordered even for a material from another implementation. */
    if (on)
        qsort(o, on, sizeof *o, kv_sort_cmp);
    if (cn)
        qsort(c, cn, sizeof *c, kv_sort_cmp);
    size_t i = 0, j = 0;
    char name[256 + 64];
    while (!rc && (i < on || j < cn)) {
        int cmp = i == on ? 1 : j == cn ? -1 : kv_cmp(&o[i], &c[j]);
        const struct kv *k = cmp <= 0 ? &o[i] : &c[j];
        const char *ov = cmp <= 0 ? o[i].v : NULL;
        size_t ovn = cmp <= 0 ? o[i].vn : 0;
        const char *cv = cmp >= 0 ? c[j].v : NULL;
        size_t cvn = cmp >= 0 ? c[j].vn : 0;
        if (cmp < 0)
            i++;
        else if (cmp > 0)
            j++;
        else {
            i++;
            j++;
            if (ovn == cvn && memcmp(ov, cv, ovn) == 0)
                continue;
        }
        bool arg = (ov && is_arg(args->old, k->k, k->kn, ov, ovn)) ||
                   (cv && is_arg(args->cur, k->k, k->kn, cv, cvn));
        struct cairn_buf nb;
        cairn_buf_init(&nb, 0);
        rc = show(&nb, k->k, k->kn);
        if (!rc)
            snprintf(name, sizeof name, "%s %s changed",
                     arg ? "build arg" : "ENV", nb.data ? nb.data : "");
        cairn_buf_free(&nb);
        if (!rc)
            rc = cause(d, NULL, name, true, ov, ovn, cv, cvn);
    }
out:
    free(o);
    free(c);
    return rc;
}

/* ---- COPY/ADD sources ---------------------------------------------------- */

static const struct cairn_explain_source *
source_find(const struct cairn_explain_step *s, const char *src, size_t n)
{
    for (size_t i = 0; i < s->nsources; i++)
        if (strlen(s->sources[i].src) == n &&
            memcmp(s->sources[i].src, src, n) == 0)
            return &s->sources[i];
    return NULL;
}

static int file_cmp(const void *a, const void *b)
{
    const struct cairn_explain_file *const *x = a, *const *y = b;
    return strcmp((*x)->path, (*y)->path);
}

/* Pointers to a listing's files in byte order of path (the walk's order
 * is per match, which is not quite that). */
static int files_sorted(const struct cairn_explain_source *s,
                        const struct cairn_explain_file ***out)
{
    *out = NULL;
    if (s->nfiles == 0)
        return 0;
    const struct cairn_explain_file **v = calloc(s->nfiles, sizeof *v);
    if (v == NULL)
        return CAIRN_E_NOMEM;
    for (size_t i = 0; i < s->nfiles; i++)
        v[i] = &s->files[i];
    qsort(v, s->nfiles, sizeof *v, file_cmp);
    *out = v;
    return 0;
}

/* Names the files that differ between two listings of one source. */
static int diff_listing(struct diff *d, const char *src,
                        const struct cairn_explain_source *o,
                        const struct cairn_explain_source *c)
{
    const struct cairn_explain_file **ov = NULL, **cv = NULL;
    int rc = files_sorted(o, &ov);
    if (!rc)
        rc = files_sorted(c, &cv);
    size_t i = 0, j = 0, shown = 0, more = 0;
    struct cairn_buf what;
    cairn_buf_init(&what, 0);
    while (!rc && (i < o->nfiles || j < c->nfiles)) {
        int cmp = i == o->nfiles   ? 1
                  : j == c->nfiles ? -1
                                   : strcmp(ov[i]->path, cv[j]->path);
        const struct cairn_explain_file *of = cmp <= 0 ? ov[i] : NULL;
        const struct cairn_explain_file *cf = cmp >= 0 ? cv[j] : NULL;
        if (cmp <= 0)
            i++;
        if (cmp >= 0)
            j++;
        /* The sentence around the path: "PRE<path>POST". */
        const char *pre = NULL, *post = NULL;
        if (of == NULL)
            pre = "", post = " added";
        else if (cf == NULL)
            pre = "", post = " removed";
        else if (of->type != cf->type)
            pre = "type of ", post = " changed";
        else if (of->has_digest != cf->has_digest ||
                 (of->has_digest &&
                  memcmp(of->digest, cf->digest, sizeof of->digest) != 0))
            pre = "content of ", post = " changed";
        else if (of->mode != cf->mode)
            pre = "mode of ", post = " changed";
        if (pre == NULL)
            continue;
        if (shown == CAIRN_EXPLAIN_MAX_FILE_CAUSES) {
            more++;
            continue;
        }
        shown++;
        const char *p = of ? of->path : cf->path;
        struct cairn_buf pb;
        cairn_buf_init(&pb, 0);
        /* Paths are shown whole (they are what the user looks for) but
         * escaped like every other value. */
        rc = cairn_buf_reserve(&pb, 1);
        for (const char *q = p; !rc && *q; q++) {
            unsigned char ch = (unsigned char)*q;
            rc = ch < 0x20 || ch == 0x7f ? cairn_buf_printf(&pb, "\\x%02x", ch)
                                         : cairn_buf_putc(&pb, (char)ch);
        }
        cairn_buf_reset(&what);
        if (!rc)
            rc = cairn_buf_printf(&what, "%s%s%s", pre, pb.data, post);
        if (!rc && pre[0] == 'm')
            rc = cairn_buf_printf(&what, " (%04o -> %04o)", of->mode, cf->mode);
        cairn_buf_free(&pb);
        if (!rc)
            rc = cause(d, src, what.data, false, NULL, 0, NULL, 0);
    }
    if (!rc && more > 0) {
        cairn_buf_reset(&what);
        rc = cairn_buf_printf(&what, "... and %zu more files changed", more);
        if (!rc)
            rc = cause(d, src, what.data, false, NULL, 0, NULL, 0);
    }
    /* The tree digest also covers symlink targets, which listings do not
     * keep: a changed target is the one way to get here with no file
     * named. */
    if (!rc && shown == 0)
        rc = cause(d, src, "content changed", false, NULL, 0, NULL, 0);
    cairn_buf_free(&what);
    free(ov);
    free(cv);
    return rc;
}

/* Every source whose tree digest changed. A source that is not in the old
 * material is part of a changed instruction, said once already. */
static int diff_sources(struct diff *d, const struct cairn_explain_step *os,
                        const struct cairn_explain_step *cs,
                        const struct fields *of, const struct fields *cf)
{
    int rc = 0;
    for (size_t j = 0; !rc && j + 1 < cf->n; j++) {
        if (!label_is(&cf->v[j], "src") || !label_is(&cf->v[j + 1], "src-tree"))
            continue;
        const struct field *csrc = &cf->v[j], *ctree = &cf->v[j + 1];
        const struct field *otree = NULL;
        for (size_t i = 0; i + 1 < of->n && otree == NULL; i++)
            if (label_is(&of->v[i], "src") && value_eq(&of->v[i], csrc) &&
                label_is(&of->v[i + 1], "src-tree"))
                otree = &of->v[i + 1];
        if (otree == NULL || value_eq(otree, ctree))
            continue;
        char *src = strndup(csrc->value, csrc->vn);
        if (src == NULL)
            return CAIRN_E_NOMEM;
        const struct cairn_explain_source *o =
            source_find(os, csrc->value, csrc->vn);
        const struct cairn_explain_source *c =
            source_find(cs, csrc->value, csrc->vn);
        if (o && c && o->listed && c->listed)
            rc = diff_listing(d, src, o, c);
        else
            rc = cause(d, src, "content changed", false, NULL, 0, NULL, 0);
        free(src);
    }
    return rc;
}

/* ---- the diff ------------------------------------------------------------- */

/* Labels with a cause of their own; every other label is compared as a
 * group and named when it differs without the instruction changing. */
static const char *const handled[] = {
    "parent", "op", "instruction", "env", "workdir", "user", "argv",
    "base", "digest", "ref", "platform", "from-key", "from-digest",
    "from-unresolved-ref", "src", "src-tree",
};

static bool is_handled(const struct field *f)
{
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++)
        if (label_is(f, handled[i]))
            return true;
    return false;
}

/* Causes for the RUN --mount fields (cachekey/key.c), which a user knows
 * by the flag's words, not by the key's labels. */
static const struct {
    const char *label, *what;
} mount_causes[] = {
    {"mount-src-tree", "content of the bind mount's source changed"},
    {"mount-from-key", "stage of the mount's from= changed"},
    {"mount-from-digest", "image of the mount's from= changed"},
    {"mount-from-unresolved-ref", "image of the mount's from= changed"},
};

/* Writes the cause for a field without one of its own: the mount causes
 * above (naming the mount's target when the step has one mount), else
 * "<label> changed". */
static void label_what(const struct fields *cf, const struct field *f,
                       char *what, size_t len)
{
    for (size_t i = 0; i < sizeof mount_causes / sizeof mount_causes[0]; i++) {
        if (!label_is(f, mount_causes[i].label))
            continue;
        const struct field *target = NULL;
        size_t ntargets = 0;
        for (size_t k = 0; k < cf->n; k++)
            if (label_is(&cf->v[k], "mount-target")) {
                target = &cf->v[k];
                ntargets++;
            }
        if (ntargets == 1)
            snprintf(what, len, "--mount target=%.*s: %s",
                     (int)(target->vn > 128 ? 128 : target->vn), target->value,
                     mount_causes[i].what);
        else
            snprintf(what, len, "--mount: %s", mount_causes[i].what);
        return;
    }
    snprintf(what, len, "%.*s changed", (int)(f->ln > 64 ? 64 : f->ln),
             f->label);
}

/* A single-valued field that changed, with its values. */
static int diff_single(struct diff *d, const struct fields *of,
                       const struct fields *cf, const char *label,
                       const char *what)
{
    const struct field *o = field_get(of, label), *c = field_get(cf, label);
    if (single_eq(o, c))
        return 0;
    return cause(d, NULL, what, true, o ? o->value : NULL, o ? o->vn : 0,
                 c ? c->value : NULL, c ? c->vn : 0);
}

int cairn_explain_step_diff(const struct cairn_explain_step *old,
                            const struct cairn_explain_step *cur,
                            struct cairn_strvec *causes)
{
    if (old->material.len == cur->material.len &&
        (cur->material.len == 0 ||
         memcmp(old->material.data, cur->material.data, cur->material.len) ==
             0))
        return 0;
    struct fields of = {0}, cf = {0};
    int rc = fields_parse(&old->material, &of);
    if (!rc)
        rc = fields_parse(&cur->material, &cf);
    if (rc) {
        free(of.v);
        return rc;
    }
    struct diff d = {.causes = causes, .kind = "", .nkind = 0};
    cairn_buf_init(&d.line, 0);
    const struct field *op = field_get(&cf, "op");
    if (op) {
        d.kind = op->value;
        d.nkind = op->vn;
    }
    size_t before = causes->n;
    bool instr = !single_eq(field_get(&of, "op"), op) ||
                 !single_eq(field_get(&of, "instruction"),
                            field_get(&cf, "instruction"));
    if (instr)
        rc = cause(&d, NULL, "instruction changed", false, NULL, 0, NULL, 0);
    struct explain_args_pair args = {&old->args, &cur->args};
    if (!rc)
        rc = diff_env(&d, &of, &cf, &args);
    if (!rc)
        rc = diff_single(&d, &of, &cf, "workdir", "WORKDIR changed");
    if (!rc)
        rc = diff_single(&d, &of, &cf, "user", "USER changed");
    /* The shell form's argv starts with SHELL's, which the instruction
     * text does not show. */
    if (!rc && !instr && !group_eq(&of, &cf, &(struct field){"argv", NULL, 4, 0}))
        rc = cause(&d, NULL, "SHELL changed", false, NULL, 0, NULL, 0);
    if (!rc && !instr) {
        /* The base image: same reference, other content (re-pulled or
         * re-imported), or not resolvable any more. */
        const struct field *ob = field_get(&of, "base"),
                           *cb = field_get(&cf, "base");
        if (cb && ob && !value_eq(ob, cb) && cb->vn == 10 &&
            memcmp(cb->value, "unresolved", 10) == 0)
            rc = cause(&d, NULL, "base image not in the local store", false,
                       NULL, 0, NULL, 0);
        else if (!single_eq(field_get(&of, "digest"),
                            field_get(&cf, "digest")))
            rc = cause(&d, NULL, "base image digest changed", false, NULL, 0,
                       NULL, 0);
    }
    if (!rc)
        rc = diff_single(&d, &of, &cf, "platform", "platform changed");
    if (!rc && !instr &&
        !single_eq(field_get(&of, "from-key"), field_get(&cf, "from-key")))
        rc = cause(&d, NULL, "stage of --from changed", false, NULL, 0, NULL,
                   0);
    if (!rc && !instr &&
        (!single_eq(field_get(&of, "from-digest"),
                    field_get(&cf, "from-digest")) ||
         !single_eq(field_get(&of, "from-unresolved-ref"),
                    field_get(&cf, "from-unresolved-ref"))))
        rc = cause(&d, NULL, "image of --from changed", false, NULL, 0, NULL,
                   0);
    if (!rc)
        rc = diff_sources(&d, old, cur, &of, &cf);
    /* Whatever else differs (heredoc bodies, a new key version's fields)
     * is named by its label, once, in the order of the current material
     * then the old one. */
    for (int side = 0; !rc && !instr && side < 2; side++) {
        const struct fields *fs = side == 0 ? &cf : &of;
        for (size_t i = 0; !rc && i < fs->n; i++) {
            const struct field *f = &fs->v[i];
            if (is_handled(f) || group_eq(&of, &cf, f))
                continue;
            /* Named once: skip a label seen earlier on this side, or,
             * on the old side, present in the current material. */
            if (has_label(fs, i, f) || (side == 1 && has_label(&cf, cf.n, f)))
                continue;
            char what[256];
            label_what(&cf, f, what, sizeof what);
            rc = cause(&d, NULL, what, false, NULL, 0, NULL, 0);
        }
    }
    if (!rc && causes->n == before) {
        /* Only the parent differs: an earlier step changed, and that step
         * says why. */
        if (!single_eq(field_get(&of, "parent"), field_get(&cf, "parent")))
            rc = cairn_strvec_push(causes, "parent step changed");
        else
            rc = cause(&d, NULL, "key material changed", false, NULL, 0, NULL,
                       0);
    }
    cairn_buf_free(&d.line);
    free(of.v);
    free(cf.v);
    return rc;
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

/* Lists the sources that carry a src-tree in the material: exactly those
 * read from the context. */
static int list_sources(struct cairn_explain_step *s, struct ck_context *ctx,
                        struct cairn_err *err)
{
    struct fields fs;
    int rc = fields_parse(&s->material, &fs);
    if (rc)
        return rc;
    size_t n = 0;
    for (size_t i = 0; i + 1 < fs.n; i++)
        if (label_is(&fs.v[i], "src") && label_is(&fs.v[i + 1], "src-tree"))
            n++;
    if (n > 0) {
        s->sources = calloc(n, sizeof *s->sources);
        if (s->sources == NULL)
            rc = CAIRN_E_NOMEM;
    }
    for (size_t i = 0; !rc && i + 1 < fs.n; i++) {
        if (!label_is(&fs.v[i], "src") || !label_is(&fs.v[i + 1], "src-tree"))
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
        rc = list_sources(out, ctx, err);
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
    struct fields fa, fb;
    if (fields_parse(&a->material, &fa))
        return false;
    if (fields_parse(&b->material, &fb)) {
        free(fa.v);
        return false;
    }
    bool eq = single_eq(field_get(&fa, label), field_get(&fb, label));
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

int cairn_explain_plan_step(const struct cairn_explain_build *last,
                            const char *tag, const struct ck_plan *plan,
                            const struct ck_keys *keys, size_t i,
                            struct ck_context *ctx, bool same_key_quiet,
                            struct cairn_strvec *causes,
                            struct cairn_err *err)
{
    char line[512];
    if (last == NULL) {
        snprintf(line, sizeof line, "no previous build of %s", tag);
        return cairn_strvec_push(causes, line);
    }
    struct cairn_explain_step cur;
    int rc = cairn_explain_step_from_plan(plan, keys, i, NULL, &cur, err);
    if (rc)
        return rc;
    const struct cairn_explain_step *old = cairn_explain_build_match(last, &cur);
    if (old == NULL) {
        snprintf(line, sizeof line,
                 "no matching step in the previous build of %s", tag);
        rc = cairn_strvec_push(causes, line);
    } else if (strcmp(old->key, cur.key) == 0) {
        /* The key is the one the last build had: the layer went away
         * (pruned, or the shared cache did not answer). */
        if (!same_key_quiet)
            rc = cairn_strvec_push(causes,
                                   "same key as the previous build; its "
                                   "layer is no longer in the cache");
    } else {
        /* Listing the sources costs a walk of them (stat-cached), so it
         * is done only for a step whose key changed. */
        if (ctx != NULL && (plan->steps[i].instr->kind == CK_INSTR_COPY ||
                            plan->steps[i].instr->kind == CK_INSTR_ADD))
            rc = list_sources(&cur, ctx, err);
        if (!rc)
            rc = cairn_explain_step_diff(old, &cur, causes);
    }
    cairn_explain_step_clear(&cur);
    return rc;
}
