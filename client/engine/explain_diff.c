/* Explaining cache misses: the diff of two key materials, as causes a
 * user reads ("COPY app/: content of app/f7 changed"; see explain.h and
 * docs/explain.md), and the causes of one plan step against the last
 * build (cairn_explain_plan_step). The records themselves are
 * client/engine/explain.c, which this file uses and which does not use
 * it.
 *
 * The diff needs no knowledge of how a material is laid out beyond its
 * labels (docs/cachekey.md): fields are grouped by label and each group is
 * compared as a whole, so a field added by a later key version shows up as
 * "<label> changed" instead of being missed.
 */
#include "client/engine/explain.h"
#include "client/engine/material.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest value quoted in a cause; longer ones are cut with "...". */
#define SHOW_MAX 60

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
                 bool has_values, const char *old, size_t on, const char *cur,
                 size_t cn)
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
        if (v == NULL ||
            (strlen(a + kn + 1) == vn && memcmp(a + kn + 1, v, vn) == 0))
            return true;
    }
    return false;
}

struct kv {
    const char *k, *v;
    size_t kn, vn;
};

static int env_collect(const struct cairn_material_fields *fs, struct kv **out,
                       size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < fs->n; i++)
        if (cairn_material_label_is(&fs->v[i], "env"))
            cnt++;
    if (cnt == 0)
        return 0;
    struct kv *v = calloc(cnt, sizeof *v);
    if (v == NULL)
        return CAIRN_E_NOMEM;
    for (size_t i = 0; i < fs->n; i++) {
        if (!cairn_material_label_is(&fs->v[i], "env"))
            continue;
        const char *s = fs->v[i].value;
        size_t len = fs->v[i].vn;
        const char *eq = memchr(s, '=', len);
        size_t kn = eq ? (size_t)(eq - s) : len;
        v[(*n)++] = (struct kv){s, eq ? eq + 1 : "", kn, eq ? len - kn - 1 : 0};
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
static int diff_env(struct diff *d, const struct cairn_material_fields *of,
                    const struct cairn_material_fields *cf,
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
                        const struct cairn_material_fields *of,
                        const struct cairn_material_fields *cf)
{
    int rc = 0;
    for (size_t j = 0; !rc && j + 1 < cf->n; j++) {
        if (!cairn_material_label_is(&cf->v[j], "src") ||
            !cairn_material_label_is(&cf->v[j + 1], "src-tree"))
            continue;
        const struct cairn_material_field *csrc = &cf->v[j],
                                          *ctree = &cf->v[j + 1];
        const struct cairn_material_field *otree = NULL;
        for (size_t i = 0; i + 1 < of->n && otree == NULL; i++)
            if (cairn_material_label_is(&of->v[i], "src") &&
                cairn_material_value_eq(&of->v[i], csrc) &&
                cairn_material_label_is(&of->v[i + 1], "src-tree"))
                otree = &of->v[i + 1];
        if (otree == NULL || cairn_material_value_eq(otree, ctree))
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

/* ---- the diff -------------------------------------------------------------
 */

/* Labels with a cause of their own; every other label is compared as a
 * group and named when it differs without the instruction changing. */
static const char *const handled[] = {
    "parent",      "op",
    "instruction", "env",
    "workdir",     "user",
    "argv",        "base",
    "digest",      "ref",
    "platform",    "from-key",
    "from-digest", "from-unresolved-ref",
    "src",         "src-tree",
    "source-date-epoch",
};

static bool is_handled(const struct cairn_material_field *f)
{
    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++)
        if (cairn_material_label_is(f, handled[i]))
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
static void label_what(const struct cairn_material_fields *cf,
                       const struct cairn_material_field *f, char *what,
                       size_t len)
{
    for (size_t i = 0; i < sizeof mount_causes / sizeof mount_causes[0]; i++) {
        if (!cairn_material_label_is(f, mount_causes[i].label))
            continue;
        const struct cairn_material_field *target = NULL;
        size_t ntargets = 0;
        for (size_t k = 0; k < cf->n; k++)
            if (cairn_material_label_is(&cf->v[k], "mount-target")) {
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
static int diff_single(struct diff *d, const struct cairn_material_fields *of,
                       const struct cairn_material_fields *cf,
                       const char *label, const char *what)
{
    const struct cairn_material_field *o = cairn_material_get(of, label),
                                      *c = cairn_material_get(cf, label);
    if (cairn_material_single_eq(o, c))
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
    struct cairn_material_fields of = {0}, cf = {0};
    int rc = cairn_material_parse(&old->material, &of);
    if (!rc)
        rc = cairn_material_parse(&cur->material, &cf);
    if (rc) {
        free(of.v);
        return rc;
    }
    struct diff d = {.causes = causes, .kind = "", .nkind = 0};
    cairn_buf_init(&d.line, 0);
    const struct cairn_material_field *op = cairn_material_get(&cf, "op");
    if (op) {
        d.kind = op->value;
        d.nkind = op->vn;
    }
    size_t before = causes->n;
    bool instr =
        !cairn_material_single_eq(cairn_material_get(&of, "op"), op) ||
        !cairn_material_single_eq(cairn_material_get(&of, "instruction"),
                                  cairn_material_get(&cf, "instruction"));
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
    if (!rc && !instr &&
        !cairn_material_group_eq(
            &of, &cf, &(struct cairn_material_field){"argv", NULL, 4, 0}))
        rc = cause(&d, NULL, "SHELL changed", false, NULL, 0, NULL, 0);
    if (!rc && !instr) {
        /* The base image: same reference, other content (re-pulled or
         * re-imported), or not resolvable any more. */
        const struct cairn_material_field *ob = cairn_material_get(&of, "base"),
                                          *cb = cairn_material_get(&cf, "base");
        if (cb && ob && !cairn_material_value_eq(ob, cb) && cb->vn == 10 &&
            memcmp(cb->value, "unresolved", 10) == 0)
            rc = cause(&d, NULL, "base image not in the local store", false,
                       NULL, 0, NULL, 0);
        else if (!cairn_material_single_eq(cairn_material_get(&of, "digest"),
                                           cairn_material_get(&cf, "digest")))
            rc = cause(&d, NULL, "base image digest changed", false, NULL, 0,
                       NULL, 0);
    }
    if (!rc)
        rc = diff_single(&d, &of, &cf, "platform", "platform changed");
    /* Absent without an epoch: shown as "unset". */
    if (!rc)
        rc = diff_single(&d, &of, &cf, "source-date-epoch",
                         "source date epoch changed");
    if (!rc && !instr &&
        !cairn_material_single_eq(cairn_material_get(&of, "from-key"),
                                  cairn_material_get(&cf, "from-key")))
        rc =
            cause(&d, NULL, "stage of --from changed", false, NULL, 0, NULL, 0);
    if (!rc && !instr &&
        (!cairn_material_single_eq(cairn_material_get(&of, "from-digest"),
                                   cairn_material_get(&cf, "from-digest")) ||
         !cairn_material_single_eq(
             cairn_material_get(&of, "from-unresolved-ref"),
             cairn_material_get(&cf, "from-unresolved-ref"))))
        rc =
            cause(&d, NULL, "image of --from changed", false, NULL, 0, NULL, 0);
    if (!rc)
        rc = diff_sources(&d, old, cur, &of, &cf);
    /* Whatever else differs (heredoc bodies, a new key version's fields)
     * is named by its label, once, in the order of the current material
     * then the old one. */
    for (int side = 0; !rc && !instr && side < 2; side++) {
        const struct cairn_material_fields *fs = side == 0 ? &cf : &of;
        for (size_t i = 0; !rc && i < fs->n; i++) {
            const struct cairn_material_field *f = &fs->v[i];
            if (is_handled(f) || cairn_material_group_eq(&of, &cf, f))
                continue;
            /* Named once: skip a label seen earlier on this side, or,
             * on the old side, present in the current material. */
            if (cairn_material_has_label(fs, i, f) ||
                (side == 1 && cairn_material_has_label(&cf, cf.n, f)))
                continue;
            char what[256];
            label_what(&cf, f, what, sizeof what);
            rc = cause(&d, NULL, what, false, NULL, 0, NULL, 0);
        }
    }
    if (!rc && causes->n == before) {
        /* Only the parent differs: an earlier step changed, and that step
         * says why. */
        if (!cairn_material_single_eq(cairn_material_get(&of, "parent"),
                                      cairn_material_get(&cf, "parent")))
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
            rc = cairn_explain_step_list(&cur, ctx, err);
        if (!rc)
            rc = cairn_explain_step_diff(old, &cur, causes);
    }
    cairn_explain_step_clear(&cur);
    return rc;
}
