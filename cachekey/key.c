#include "key.h"

#include "cachekey/exclude.h"
#include "cachekey/field.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One labelled field: the label, then the value, each length-prefixed. */
static int put(struct cairn_buf *m, const char *label, const char *value)
{
    int rc = ck_field_append_str(m, label);
    return rc ? rc : ck_field_append_str(m, value ? value : "");
}

static int put_hex(struct cairn_buf *m, const char *label,
                   const uint8_t d[CK_SHA256_LEN])
{
    char hex[CK_SHA256_HEX_LEN + 1];
    ck_hex_encode(d, hex);
    return put(m, label, hex);
}

static int put_list(struct cairn_buf *m, const char *label, char *const *v,
                    size_t n)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++)
        rc = put(m, label, v[i]);
    return rc;
}

/* Flags that change what a step does, in the order written; values as
 * expanded by the plan where it expands them. */
static int put_flags(struct cairn_buf *m, const struct ck_step *s)
{
    const struct ck_instr *in = s->instr;
    int rc = 0;
    for (size_t i = 0; !rc && i < in->nflags; i++) {
        const char *name = in->flags[i].name;
        const char *value = in->flags[i].value;
        /* --from is keyed by what it points at, below; FROM's --platform
         * by the platform field. */
        if (strcmp(name, "from") == 0 || strcmp(name, "platform") == 0)
            continue;
        if (strcmp(name, "chown") == 0)
            value = s->chown;
        else if (strcmp(name, "chmod") == 0)
            value = s->chmod;
        char label[80];
        snprintf(label, sizeof label, "flag:%s", name);
        rc = put(m, label, value ? value : "true");
    }
    return rc;
}

static bool is_remote_source(const char *src)
{
    return strncmp(src, "http://", 7) == 0 ||
           strncmp(src, "https://", 8) == 0 ||
           strncmp(src, "git@", 4) == 0;
}

/* The heredoc whose marker is word ("<<EOF", "<<-'EOF'"), if any. */
static const struct ck_heredoc *heredoc_for(const struct ck_instr *in,
                                            const char *word)
{
    if (strncmp(word, "<<", 2) != 0)
        return NULL;
    const char *p = word + 2;
    if (*p == '-')
        p++;
    if (*p == '"' || *p == '\'')
        p++;
    for (size_t i = 0; i < in->nheredocs; i++) {
        size_t n = strlen(in->heredocs[i].name);
        if (strncmp(p, in->heredocs[i].name, n) == 0)
            return &in->heredocs[i];
    }
    return NULL;
}

static int put_heredoc(struct cairn_buf *m, const struct ck_heredoc *h)
{
    int rc = put(m, "heredoc", h->name);
    if (!rc)
        rc = put(m, "heredoc-expand", h->expand ? "true" : "false");
    if (!rc)
        rc = put(m, "heredoc-body", h->content);
    return rc;
}

/* What a bind mount shows the command: the tree digest of the context
 * subtree, or the key of the stage, or the image's digest (BuildKit keys
 * a bind mount by the content mounted). Other mount types are covered by
 * their flag text only: a cache, tmpfs, secret or ssh mount's content is
 * not an input of the step by design. */
static int put_bind_mount(struct cairn_buf *m, const struct ck_run_mount *rm,
                          const struct ck_plan *plan,
                          const struct ck_keys *keys, struct ck_context *ctx,
                          bool *unresolved, struct cairn_err *err)
{
    int rc = put(m, "mount-target", rm->m.target);
    const char *src = rm->m.source && rm->m.source[0] ? rm->m.source : ".";
    if (rc)
        return rc;
    switch (rm->from_kind) {
    case CK_FROM_CONTEXT: {
        if (ctx == NULL)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "no build context to mount %s from", src);
        uint8_t d[CK_SHA256_LEN];
        rc = put(m, "mount-from", "context");
        if (!rc) {
            rc = ck_context_source_digest(ctx, src, d, NULL, err);
            if (rc && err && err->msg[0])
                cairn_err_prefix(err, "RUN --mount target=%s, source",
                                 rm->m.target);
        }
        if (!rc)
            rc = put_hex(m, "mount-src-tree", d);
        break;
    }
    case CK_FROM_STAGE: {
        const struct ck_stage *st = &plan->stages[rm->from_stage];
        const struct ck_step_key *k =
            &keys->keys[st->first_step + st->nsteps - 1];
        rc = put(m, "mount-from", "stage");
        if (!rc)
            rc = put_hex(m, "mount-from-key", k->key);
        if (k->unresolved)
            *unresolved = true;
        break;
    }
    case CK_FROM_IMAGE:
        rc = put(m, "mount-from", "image");
        if (!rc && rm->from_unresolved) {
            rc = put(m, "mount-from-unresolved-ref", rm->m.from);
            *unresolved = true;
        } else if (!rc) {
            rc = put(m, "mount-from-digest", rm->from_image.digest);
        }
        break;
    }
    return rc;
}

static int material_run(struct cairn_buf *m, const struct ck_step *s,
                        const struct ck_plan *plan, const struct ck_keys *keys,
                        struct ck_context *ctx, bool *unresolved,
                        struct cairn_err *err)
{
    const struct ck_instr *in = s->instr;
    int rc = put(m, "form", in->json ? "exec" : "shell");
    if (!rc && !in->json)
        rc = put_list(m, "argv", s->shell, s->nshell);
    if (!rc)
        rc = put_list(m, "argv", s->words, s->nwords);
    if (!rc)
        rc = put_list(m, "env", s->env, s->nenv);
    if (!rc)
        rc = put(m, "workdir", s->workdir);
    if (!rc)
        rc = put(m, "user", s->user);
    if (!rc)
        rc = put(m, "network", s->network);
    if (!rc)
        rc = put_flags(m, s);
    for (size_t i = 0; !rc && i < in->nheredocs; i++)
        rc = put_heredoc(m, &in->heredocs[i]);
    for (size_t i = 0; !rc && i < s->nmounts; i++)
        if (s->mounts[i].m.type == CK_MOUNT_BIND)
            rc = put_bind_mount(m, &s->mounts[i], plan, keys, ctx, unresolved,
                                err);
    return rc;
}

static int material_copy(struct cairn_buf *m, const struct ck_step *s,
                         const struct ck_plan *plan,
                         const struct ck_keys *keys, struct ck_context *ctx,
                         bool *unresolved, struct cairn_err *err)
{
    const struct ck_instr *in = s->instr;
    /* A relative destination is resolved against WORKDIR. */
    int rc = put(m, "workdir", s->workdir);
    if (!rc)
        rc = put_flags(m, s);
    if (rc)
        return rc;
    switch (s->from_kind) {
    case CK_FROM_CONTEXT:
        rc = put(m, "from", "context");
        break;
    case CK_FROM_STAGE: {
        /* A stage's content is determined by its last key. */
        const struct ck_stage *st = &plan->stages[s->from_stage];
        const struct ck_step_key *k = &keys->keys[st->first_step + st->nsteps - 1];
        rc = put(m, "from", "stage");
        if (!rc)
            rc = put_hex(m, "from-key", k->key);
        if (k->unresolved)
            *unresolved = true;
        break;
    }
    case CK_FROM_IMAGE:
        rc = put(m, "from", "image");
        if (!rc && s->from_unresolved) {
            rc = put(m, "from-unresolved-ref", s->from_ref);
            *unresolved = true;
        } else if (!rc) {
            rc = put(m, "from-digest", s->from_image.digest);
        }
        break;
    }
    if (!rc)
        rc = put(m, "dest", s->words[s->nwords - 1]);
    struct ck_exclude *ex = NULL;
    if (!rc && s->nexcludes)
        rc = ck_exclude_new(s->excludes, s->nexcludes, &ex, err);
    for (size_t i = 0; !rc && i + 1 < s->nwords; i++) {
        const char *src = s->words[i];
        const struct ck_heredoc *h = heredoc_for(in, src);
        rc = put(m, "src", src);
        if (rc)
            break;
        if (h != NULL) {
            rc = put_heredoc(m, h);
        } else if (s->from_kind != CK_FROM_CONTEXT) {
            /* Content is covered by from-key / from-digest. */
        } else if (in->kind == CK_INSTR_ADD && is_remote_source(src)) {
            /* Remote content cannot be known before fetching; with
             * --checksum (a flag field above) it is pinned. */
            rc = put(m, "src-remote", src);
        } else {
            if (ctx == NULL) {
                rc = cairn_err_set(err, CAIRN_E_INVAL,
                                   "no build context to read %s from", src);
                break;
            }
            /* Excluded files are no input of the step (BuildKit's rule). */
            uint8_t d[CK_SHA256_LEN];
            if (ex != NULL)
                rc = ck_exclude_digest(ctx, src, ex, d, err);
            else
                rc = ck_context_source_digest(ctx, src, d, NULL, err);
            if (!rc)
                rc = put_hex(m, "src-tree", d);
        }
    }
    ck_exclude_free(ex);
    return rc;
}

static int material_from(struct cairn_buf *m, const struct ck_plan *plan,
                         const struct ck_stage *st, bool *unresolved)
{
    int rc = 0;
    switch (st->base_kind) {
    case CK_BASE_SCRATCH:
        rc = put(m, "base", "scratch");
        break;
    case CK_BASE_STAGE:
        /* The parent key already names the stage's content. */
        rc = put(m, "base", "stage");
        break;
    case CK_BASE_IMAGE:
        if (st->base_unresolved) {
            rc = put(m, "base", "unresolved");
            if (!rc)
                rc = put(m, "ref", st->base_ref);
            *unresolved = true;
        } else {
            rc = put(m, "base", "image");
            if (!rc)
                rc = put(m, "digest", st->base.digest);
        }
        break;
    }
    (void)plan;
    if (!rc)
        rc = put(m, "platform", st->platform);
    return rc;
}

/* Metadata steps: the expanded instruction and its words. An ARG's value
 * is deliberately absent: it reaches the key of every RUN through the
 * environment, and of other steps through their expanded text, so
 * changing an unused build arg invalidates nothing (as in BuildKit). */
static int material_meta(struct cairn_buf *m, const struct ck_step *s)
{
    if (s->instr->kind == CK_INSTR_ARG)
        return 0;
    int rc = put(m, "form", s->instr->json ? "exec" : "shell");
    for (size_t i = 0; !rc && i < s->nwords; i++)
        rc = put(m, "word", s->words[i] ? s->words[i] : "");
    return rc;
}

/* The source date epoch, when the build has one. It is an input of every
 * step: a layer's file times are clamped to it and the image's times are
 * it, so an epoch build and one without (or another epoch) must never
 * share an entry. Absent without an epoch, so those keys are the ones
 * version 1 always gave. */
static int put_epoch(struct cairn_buf *m, const struct ck_plan *plan)
{
    if (!plan->has_source_date_epoch)
        return 0;
    char v[24];
    snprintf(v, sizeof v, "%lld", (long long)plan->source_date_epoch);
    return put(m, "source-date-epoch", v);
}

static int step_key(const struct ck_plan *plan, struct ck_keys *keys,
                    size_t i, const uint8_t *parent, bool parent_unresolved,
                    struct ck_context *ctx, struct cairn_err *err)
{
    const struct ck_step *s = &plan->steps[i];
    const struct ck_stage *st = &plan->stages[s->stage];
    struct ck_step_key *k = &keys->keys[i];
    struct cairn_buf *m = &k->material;
    bool unresolved = parent_unresolved;
    cairn_buf_init(m, CK_KEY_MAX_MATERIAL);
    enum ck_instr_kind kind = s->instr->kind;

    int rc = put(m, "version", CK_KEY_VERSION);
    if (!rc) {
        if (parent)
            rc = put_hex(m, "parent", parent);
        else
            rc = put(m, "parent", "");
    }
    if (!rc)
        rc = put(m, "op", ck_instr_name(kind));
    if (!rc)
        rc = put(m, "instruction", s->text);
    if (!rc)
        rc = put_epoch(m, plan);
    if (rc)
        goto out;
    switch (kind) {
    case CK_INSTR_FROM:
        rc = material_from(m, plan, st, &unresolved);
        break;
    case CK_INSTR_RUN:
        rc = material_run(m, s, plan, keys, ctx, &unresolved, err);
        if (rc && err && err->msg[0])
            cairn_err_prefix(err, "%s:%d", plan->name, s->instr->line);
        break;
    case CK_INSTR_COPY:
    case CK_INSTR_ADD:
        rc = material_copy(m, s, plan, keys, ctx, &unresolved, err);
        if (rc && err && err->msg[0])
            cairn_err_prefix(err, "%s:%d", plan->name, s->instr->line);
        break;
    default:
        rc = material_meta(m, s);
        break;
    }
    if (rc)
        goto out;
    rc = ck_sha256(m->data, m->len, k->key);
    if (rc)
        goto out;
    ck_hex_encode(k->key, k->hex);
    k->computed = true;
    k->unresolved = unresolved;
    k->layer = kind == CK_INSTR_RUN || kind == CK_INSTR_COPY ||
               kind == CK_INSTR_ADD;
out:
    return rc;
}

int ck_keys_compute(const struct ck_plan *plan, struct ck_context *ctx,
                    struct ck_keys **out, struct cairn_err *err)
{
    struct ck_keys *keys = calloc(1, sizeof *keys);
    if (keys == NULL)
        return CAIRN_E_NOMEM;
    keys->keys = calloc(plan->nsteps ? plan->nsteps : 1, sizeof *keys->keys);
    if (keys->keys == NULL) {
        free(keys);
        return CAIRN_E_NOMEM;
    }
    keys->n = plan->nsteps;
    int rc = 0;
    /* Stages only depend on earlier stages, so one pass in order sees
     * every --from and base stage key before it is needed. */
    for (size_t si = 0; !rc && si < plan->nstages; si++) {
        const struct ck_stage *st = &plan->stages[si];
        if (!st->needed)
            continue;
        const uint8_t *parent = NULL;
        bool parent_unresolved = false;
        if (st->base_kind == CK_BASE_STAGE) {
            const struct ck_stage *b = &plan->stages[st->base_stage];
            const struct ck_step_key *bk =
                &keys->keys[b->first_step + b->nsteps - 1];
            parent = bk->key;
            parent_unresolved = bk->unresolved;
        }
        for (size_t i = st->first_step; !rc && i < plan->nsteps; i++) {
            if (plan->steps[i].stage != si)
                continue;
            rc = step_key(plan, keys, i, parent, parent_unresolved, ctx, err);
            parent = keys->keys[i].key;
            parent_unresolved = keys->keys[i].unresolved;
        }
    }
    if (rc) {
        ck_keys_free(keys);
        return rc;
    }
    *out = keys;
    return 0;
}

void ck_keys_free(struct ck_keys *keys)
{
    if (keys == NULL)
        return;
    for (size_t i = 0; i < keys->n; i++)
        cairn_buf_free(&keys->keys[i].material);
    free(keys->keys);
    free(keys);
}

int ck_material_next(const void *material, size_t len, size_t *pos,
                     const char **label, size_t *label_len,
                     const char **value, size_t *value_len)
{
    if (*pos == len)
        return 0;
    const void *l, *v;
    size_t ln, vn;
    size_t p = *pos;
    if (ck_field_next(material, len, &p, &l, &ln) ||
        ck_field_next(material, len, &p, &v, &vn))
        return CAIRN_E_CORRUPT;
    *label = l;
    *label_len = ln;
    *value = v;
    *value_len = vn;
    *pos = p;
    return 1;
}
