/* The build driver (client/engine/build.h): parses, plans and keys the
 * Dockerfile, looks steps up in the shared cache, walks the plan (base
 * images, metadata, layer steps), and commits the image. The steps that
 * run are client/engine/build_run.c (RUN) and build_copy.c (COPY, ADD);
 * the state they share is build_state.h. */
#include "client/engine/build.h"
#include "client/engine/build_copy.h"
#include "client/engine/build_members.h"
#include "client/engine/build_run.h"
#include "client/engine/build_state.h"
#include "client/engine/frompull.h"
#include "client/engine/image_render.h"
#include "client/engine/report.h"
#include "client/engine/stage.h"

#include "cachekey/context.h"
#include "cachekey/dockerfile.h"
#include "cachekey/dockerignore.h"
#include "cachekey/key.h"
#include "cachekey/plan.h"
#include "cachekey/statcache.h"
#include "client/engine/explain.h"
#include "client/remote/claim.h"
#include "client/store/durations.h"
#include "client/store/image.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------ */

static int strv_assign(char ***dst, size_t *ndst, char *const *src, size_t n)
{
    char **v = cairn_strv_dup(src, n);
    if (v == NULL)
        return CAIRN_E_NOMEM;
    cairn_strv_free(*dst, *ndst);
    *dst = v;
    *ndst = n;
    return 0;
}

static int strv_append(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 2) * sizeof *nv);
    if (nv == NULL)
        return CAIRN_E_NOMEM;
    *v = nv;
    if ((nv[*n] = strdup(s)) == NULL)
        return CAIRN_E_NOMEM;
    nv[++*n] = NULL;
    return 0;
}

static int strv_add_unique(char ***v, size_t *n, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], s) == 0)
            return 0;
    return strv_append(v, n, s);
}

/* Short id as Docker prints it: 12 hex digits. */
static void short_id(const char *hex_or_digest, char out[13])
{
    const char *h = strncmp(hex_or_digest, "sha256:", 7) == 0
                        ? hex_or_digest + 7
                        : hex_or_digest;
    snprintf(out, 13, "%.12s", h);
}

/* ck_plan's resolver: images come from the local store. */
static int resolve_image(void *arg, const char *ref, const char *platform,
                         struct ck_image_info *out, struct cairn_err *err)
{
    struct build *b = arg;
    (void)platform;
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    struct cairn_err e;
    cairn_err_clear(&e);
    int rc = cairn_store_image_find(b->st, ref, &row, &e);
    if (rc == CAIRN_E_NOTFOUND)
        return cairn_err_set(
            err, CAIRN_E_NOTFOUND,
            "image \"%s\" is not in the store; bring it in with "
            "'cairn pull %s', 'cairn import ROOTFS.tar %s' or "
            "'cairn load -i IMAGE.tar' (what docker save writes)",
            ref, ref, ref);
    if (rc)
        return cairn_err_set(err, rc, "%s", e.msg);
    struct cairn_manifest m;
    struct cairn_image_config c;
    memset(&m, 0, sizeof m);
    memset(&c, 0, sizeof c);
    rc = build_image_load(b, row.manifest_digest, &m, &c);
    if (rc) {
        cairn_err_set(err, rc, "%s", b->err->msg);
        goto out;
    }

    memset(out, 0, sizeof *out);
    out->digest = strdup(row.manifest_digest);
    struct cairn_buf pb;
    cairn_buf_init(&pb, 0);
    cairn_buf_printf(&pb, "%s/%s%s%s", c.os ? c.os : "linux",
                     c.architecture ? c.architecture : "amd64",
                     c.variant ? "/" : "", c.variant ? c.variant : "");
    out->platform = cairn_buf_take(&pb);
    out->env = cairn_strv_dup(c.env, c.nenv);
    out->nenv = c.nenv;
    out->workdir = strdup(c.workdir ? c.workdir : "");
    out->user = strdup(c.user ? c.user : "");
    if (c.nshell) {
        out->shell = cairn_strv_dup(c.shell, c.nshell);
        out->nshell = c.nshell;
    }
    out->onbuild = cairn_strv_dup(c.onbuild, c.nonbuild);
    out->nonbuild = c.nonbuild;
    if (!out->digest || !out->platform || !out->env || !out->workdir ||
        !out->user || !out->onbuild || (c.nshell && !out->shell)) {
        ck_image_info_clear(out);
        rc = CAIRN_E_NOMEM;
    }
out:
    cairn_store_image_row_clear(&row);
    cairn_manifest_clear(&m);
    cairn_image_config_clear(&c);
    return rc;
}

/* Which images a build needs: BuildKit resolves the images of the
 * stages the target needs only, so an unneeded stage may name an image
 * that is not in the store. The plan is made with unknown images allowed
 * (keys of resolved stages do not depend on that); an unknown image of a
 * needed stage, FROM or COPY --from, is then the error it always was. */
static int plan_check_resolved(struct build *b)
{
    const struct ck_plan *p = b->plan;
    for (size_t i = 0; i < p->nsteps; i++) {
        const struct ck_step *s = &p->steps[i];
        const struct ck_stage *st = &p->stages[s->stage];
        if (!st->needed)
            continue;
        const char *ref = NULL;
        if (i == st->first_step && st->base_kind == CK_BASE_IMAGE &&
            st->base_unresolved)
            ref = st->base_ref;
        else if (s->from_kind == CK_FROM_IMAGE && s->from_unresolved)
            ref = s->from_ref;
        if (ref == NULL)
            continue;
        /* Asking again gives the resolver's own message. */
        struct ck_image_info info;
        memset(&info, 0, sizeof info);
        int rc = resolve_image(b, ref, st->platform, &info, b->err);
        ck_image_info_clear(&info);
        if (rc == 0)
            rc = cairn_err_set(b->err, CAIRN_E_NOTFOUND,
                               "image %s is not available", ref);
        cairn_err_prefix(b->err, "%s:%d", p->name, s->instr->line);
        return rc;
    }
    return 0;
}

/* ---- metadata instructions ---------------------------------------------- */

static int64_t parse_duration_ns(const char *s)
{
    /* Go durations as Docker accepts them: "30s", "1m30s", "500ms". */
    int64_t total = 0;
    while (s && *s) {
        char *end = NULL;
        double v = strtod(s, &end);
        if (end == s)
            return -1;
        int64_t unit;
        if (strncmp(end, "ns", 2) == 0)
            unit = 1, end += 2;
        else if (strncmp(end, "us", 2) == 0)
            unit = 1000, end += 2;
        else if (strncmp(end, "ms", 2) == 0)
            unit = 1000000, end += 2;
        else if (*end == 's')
            unit = 1000000000, end += 1;
        else if (*end == 'm')
            unit = 60LL * 1000000000, end += 1;
        else if (*end == 'h')
            unit = 3600LL * 1000000000, end += 1;
        else
            return -1;
        total += (int64_t)(v * (double)unit);
        s = end;
    }
    return total;
}

static int apply_healthcheck(struct build *b, const struct ck_step *s,
                             struct cairn_image_config *c)
{
    struct cairn_healthcheck *h = calloc(1, sizeof *h);
    if (h == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    if (strcmp(s->words[0], "NONE") == 0) {
        rc = strv_append(&h->test, &h->ntest, "NONE");
    } else {
        rc = strv_append(&h->test, &h->ntest, s->instr->json ? "CMD" : "CMD-SHELL");
        for (size_t i = 1; !rc && i < s->nwords; i++)
            rc = strv_append(&h->test, &h->ntest, s->words[i]);
        static const struct {
            const char *flag;
            size_t off;
        } durs[] = {
            {"interval", offsetof(struct cairn_healthcheck, interval_ns)},
            {"timeout", offsetof(struct cairn_healthcheck, timeout_ns)},
            {"start-period", offsetof(struct cairn_healthcheck, start_period_ns)},
            {"start-interval", offsetof(struct cairn_healthcheck, start_interval_ns)},
        };
        for (size_t i = 0; !rc && i < sizeof durs / sizeof durs[0]; i++) {
            const char *v = ck_instr_flag(s->instr, durs[i].flag, NULL);
            if (v == NULL)
                continue;
            int64_t ns = parse_duration_ns(v);
            if (ns < 0)
                rc = build_step_fail(b, s, CAIRN_E_PARSE,
                                     "bad HEALTHCHECK duration");
            else
                *(int64_t *)((char *)h + durs[i].off) = ns;
        }
        const char *r = ck_instr_flag(s->instr, "retries", NULL);
        if (!rc && r != NULL) {
            char *end = NULL;
            long v = strtol(r, &end, 10);
            if (*end != '\0' || v < 0 || v > 1000000)
                rc = build_step_fail(b, s, CAIRN_E_PARSE,
                                     "bad HEALTHCHECK --retries");
            else
                h->retries = (int)v;
        }
    }
    if (rc) {
        cairn_strv_free(h->test, h->ntest);
        free(h);
        return rc;
    }
    if (c->healthcheck) {
        cairn_strv_free(c->healthcheck->test, c->healthcheck->ntest);
        free(c->healthcheck);
    }
    c->healthcheck = h;
    return 0;
}

/* argv of a shell-form CMD/ENTRYPOINT/RUN: the SHELL then the string. */
static int shell_argv(const struct ck_step *s, struct cairn_strvec *out)
{
    int rc = 0;
    if (s->instr->json) {
        for (size_t i = 0; !rc && i < s->nwords; i++)
            rc = cairn_strvec_push(out, s->words[i]);
        return rc;
    }
    for (size_t i = 0; !rc && i < s->nshell; i++)
        rc = cairn_strvec_push(out, s->shell[i]);
    if (!rc)
        rc = cairn_strvec_push(out, s->nwords ? s->words[0] : "");
    return rc;
}

static int apply_meta(struct build *b, const struct ck_step *s,
                      struct stage_out *so)
{
    struct cairn_image_config *c = &so->cfg;
    int rc = 0;
    struct cairn_strvec v;
    cairn_strvec_init(&v);
    switch (s->instr->kind) {
    case CK_INSTR_ENV:
        for (size_t i = 0; !rc && i + 1 < s->nwords; i += 2)
            rc = cairn_image_config_set_env(c, s->words[i], s->words[i + 1]);
        break;
    case CK_INSTR_LABEL:
        for (size_t i = 0; !rc && i + 1 < s->nwords; i += 2)
            rc = cairn_image_config_set_label(c, s->words[i], s->words[i + 1]);
        break;
    case CK_INSTR_CMD:
        rc = shell_argv(s, &v);
        if (!rc)
            rc = strv_assign(&c->cmd, &c->ncmd, v.v, v.n);
        c->has_cmd = true;
        so->cmd_set = true;
        break;
    case CK_INSTR_ENTRYPOINT:
        rc = shell_argv(s, &v);
        if (!rc)
            rc = strv_assign(&c->entrypoint, &c->nentrypoint, v.v, v.n);
        c->has_entrypoint = true;
        /* Docker: a new ENTRYPOINT drops the CMD the base image set. */
        if (!rc && !so->cmd_set) {
            cairn_strv_free(c->cmd, c->ncmd);
            c->cmd = NULL;
            c->ncmd = 0;
            c->has_cmd = false;
        }
        break;
    case CK_INSTR_EXPOSE:
        for (size_t i = 0; !rc && i < s->nwords; i++) {
            char port[128];
            snprintf(port, sizeof port, "%s%s", s->words[i],
                     strchr(s->words[i], '/') ? "" : "/tcp");
            rc = strv_add_unique(&c->exposed_ports, &c->nexposed_ports, port);
        }
        break;
    case CK_INSTR_VOLUME:
        for (size_t i = 0; !rc && i < s->nwords; i++)
            rc = strv_add_unique(&c->volumes, &c->nvolumes, s->words[i]);
        break;
    case CK_INSTR_USER:
        free(c->user);
        c->user = strdup(s->user);
        rc = c->user ? 0 : CAIRN_E_NOMEM;
        break;
    case CK_INSTR_WORKDIR:
        free(c->workdir);
        c->workdir = strdup(s->workdir);
        rc = c->workdir ? 0 : CAIRN_E_NOMEM;
        break;
    case CK_INSTR_STOPSIGNAL:
        free(c->stop_signal);
        c->stop_signal = strdup(s->words[0]);
        rc = c->stop_signal ? 0 : CAIRN_E_NOMEM;
        break;
    case CK_INSTR_SHELL:
        rc = strv_assign(&c->shell, &c->nshell, s->words, s->nwords);
        break;
    case CK_INSTR_ONBUILD:
        rc = strv_append(&c->onbuild, &c->nonbuild, s->words[0]);
        break;
    case CK_INSTR_HEALTHCHECK:
        rc = apply_healthcheck(b, s, c);
        break;
    case CK_INSTR_MAINTAINER:
        free(c->author);
        c->author = strdup(s->words[0]);
        rc = c->author ? 0 : CAIRN_E_NOMEM;
        break;
    default:
        break;
    }
    cairn_strvec_free(&v);
    return rc;
}

/* History's "created by": BuildKit's style, the instruction as run. */
static char *created_by(const struct ck_step *s)
{
    struct cairn_buf cb;
    cairn_buf_init(&cb, 0);
    if (s->instr->kind == CK_INSTR_RUN && !s->instr->json) {
        cairn_buf_puts(&cb, "RUN");
        for (size_t i = 0; i < s->nshell; i++)
            cairn_buf_printf(&cb, " %s", s->shell[i]);
        cairn_buf_printf(&cb, " %s", s->nwords ? s->words[0] : "");
        for (size_t i = 0; i < s->instr->nheredocs; i++)
            cairn_buf_printf(&cb, "\n%s%s", s->instr->heredocs[i].content,
                             s->instr->heredocs[i].name);
    } else {
        cairn_buf_puts(&cb, s->text);
    }
    return cairn_buf_take(&cb);
}

static int add_history(struct build *b, const struct ck_step *s,
                       struct stage_out *so, bool empty)
{
    char *by = created_by(s);
    if (by == NULL)
        return CAIRN_E_NOMEM;
    int rc = cairn_image_config_add_history(&so->cfg, b->now, by, empty);
    free(by);
    return rc;
}
/* ---- the walk ------------------------------------------------------------ */

static int start_stage(struct build *b, const struct ck_stage *st,
                       struct stage_out *so)
{
    int rc = 0;
    switch (st->base_kind) {
    case CK_BASE_SCRATCH: {
        cairn_image_config_init(&so->cfg);
        char os[64] = "linux", arch[64] = "amd64";
        const char *sl = strchr(st->platform, '/');
        if (sl) {
            snprintf(os, sizeof os, "%.*s", (int)(sl - st->platform),
                     st->platform);
            snprintf(arch, sizeof arch, "%s", sl + 1);
            char *v = strchr(arch, '/');
            if (v)
                *v = '\0';
        }
        so->cfg.os = strdup(os);
        so->cfg.architecture = strdup(arch);
        so->cfg.created = -1;
        if (so->cfg.os == NULL || so->cfg.architecture == NULL)
            rc = CAIRN_E_NOMEM;
        break;
    }
    case CK_BASE_STAGE: {
        const struct stage_out *base = &b->stages[st->base_stage];
        rc = cairn_image_config_copy(&so->cfg, &base->cfg);
        for (size_t i = 0; !rc && i < base->nlayers; i++)
            rc = build_layers_push(so, &base->layers[i]);
        break;
    }
    case CK_BASE_IMAGE: {
        struct cairn_manifest m;
        memset(&m, 0, sizeof m);
        rc = build_image_load(b, st->base.digest, &m, &so->cfg);
        for (size_t i = 0; !rc && i < m.nlayers; i++)
            rc = build_layers_push(so, &m.layers[i]);
        cairn_manifest_clear(&m);
        break;
    }
    }
    if (rc)
        return rc;
    /* PATH as the plan saw it (BuildKit adds the default when unset). */
    bool has_path = false;
    for (size_t i = 0; i < so->cfg.nenv; i++)
        if (strncmp(so->cfg.env[i], "PATH=", 5) == 0)
            has_path = true;
    if (!has_path)
        rc = cairn_image_config_set_env(&so->cfg, "PATH", CK_DEFAULT_PATH);
    /* ONBUILD triggers fire once; the new image does not carry them. */
    cairn_strv_free(so->cfg.onbuild, so->cfg.nonbuild);
    so->cfg.onbuild = NULL;
    so->cfg.nonbuild = 0;
    return rc;
}

/* --explain: prints why step i has a key of its own. A layer step that
 * missed always says something; any other step only when its key differs
 * from the remembered one (a FROM whose image changed is where the misses
 * after it come from). An explanation that fails is said, never fatal. */
static void explain_step(struct build *b, size_t i, bool layer_miss)
{
    if (!b->o->explain || b->o->no_cache || (!layer_miss && !b->have_last))
        return;
    /* The shared cache had an entry for the key that trust refused. */
    if (layer_miss && b->remote != NULL && b->remote[i] != NULL &&
        b->remote[i]->refused[0] != '\0')
        fprintf(b->out, " ---> cache miss: shared cache entry refused: %s\n",
                b->remote[i]->refused);
    struct cairn_strvec causes;
    cairn_strvec_init(&causes);
    struct cairn_err e;
    cairn_err_clear(&e);
    int rc = 0;
    if (b->o->ntags == 0)
        rc = cairn_strvec_push(&causes, "no tag (-t) to compare with");
    else
        rc = cairn_explain_plan_step(b->have_last ? &b->last : NULL,
                                     b->o->tags[0], b->plan, b->keys, i,
                                     b->ctx, !layer_miss, &causes, &e);
    /* A metadata step or FROM that changed only because an earlier step
     * did has nothing to add: the layer steps say it. */
    bool parent_only = causes.n == 1 &&
                       strcmp(causes.v[0], "parent step changed") == 0;
    for (size_t c = 0; c < causes.n && (layer_miss || !parent_only); c++)
        fprintf(b->out, " ---> cache miss: %s\n", causes.v[c]);
    if (rc)
        fprintf(b->out, " ---> cache miss: (cannot explain: %s)\n",
                e.msg[0] ? e.msg : cairn_strerror(rc));
    cairn_strvec_free(&causes);
}

/* The record of a step the shared cache has, whether or not its layer
 * was fetched (a step whose layer nothing reads is not). */
static bool remote_rec(struct build *b, size_t i, struct cairn_layer_rec *out)
{
    if (b->remote == NULL || b->remote[i] == NULL || !b->remote[i]->hit)
        return false;
    *out = b->remote[i]->rec;
    return true;
}

/* A layer step the local store lacks (local false) and the cache lookup
 * missed is settled among concurrent builders (client/remote/claim.h):
 * when another builder's result arrives while this one waits, it becomes
 * a remote hit here. */
static enum cairn_claim_outcome claim_settle(struct build *b, size_t i, bool local)
{
    if (local || b->claims == NULL || b->remote == NULL || b->remote[i] == NULL ||
        b->remote[i]->hit)
        return CAIRN_CLAIM_RUN;
    char label[64];
    snprintf(label, sizeof label, "step %d/%d", b->plan->steps[i].number, b->total);
    /* How long the step took here before caps a wait for another
     * builder (none known: 0). */
    const struct ck_step *s = &b->plan->steps[i];
    uint8_t id[CK_SHA256_LEN];
    int64_t expected = 0;
    if (cairn_duration_id(s->stage, s->number, s->text, id) != 0 ||
        cairn_duration_get(b->st, id, &expected) != 0)
        expected = 0;
    enum cairn_claim_outcome o =
        cairn_claims_settle(b->claims, b->st, b->remote[i], expected, b->out, label);
    if (o == CAIRN_CLAIM_FOUND)
        b->remote_hit[i] = true;
    return o;
}

/* --cache-verify: whether remote hit i is one of the share that also
 * runs locally. By the first 32 bits of its key (a sha256, so evenly
 * spread): a percentage picks the same steps every time. */
static bool verify_pick(const struct build *b, size_t i)
{
    unsigned pct = b->o->cache_verify;
    if (pct == 0 || b->remote == NULL || b->remote[i] == NULL ||
        !b->remote[i]->hit)
        return false;
    uint32_t v = 0;
    for (const char *h = b->keys->keys[i].hex; h < b->keys->keys[i].hex + 8;
         h++)
        v = v << 4 | (uint32_t)(*h <= '9' ? *h - '0' : *h - 'a' + 10);
    return v % 100 < pct;
}

/* --cache-verify: runs remote hit i locally as well. The same diff_id
 * (and emptiness) is a clean check and the cache's record stays in *rec;
 * another one is said, naming the step, and the local result replaces
 * *rec (and the key's record in the local index). *differs says which. */
static int verify_step(struct build *b, size_t i, struct stage_out *so,
                       struct cairn_layer_rec *rec, char **snap,
                       bool *differs)
{
    const struct ck_step *s = &b->plan->steps[i];
    struct cairn_layer_rec loc;
    memset(&loc, 0, sizeof loc);
    char *blob = NULL;
    bool empty = false;
    int rc;
    if (s->instr->kind == CK_INSTR_RUN)
        rc = build_run_step(b, s, so, &loc.layer, &blob, &empty, snap);
    else
        rc = build_copy_step(b, s, so, &loc.layer, &blob, &empty, snap);
    if (rc)
        return rc;
    loc.empty = empty;
    *differs = loc.empty != rec->empty ||
               (!loc.empty && strcmp(loc.layer.diff_id, rec->layer.diff_id));
    if (blob != NULL && (empty || !*differs))
        unlink(blob);
    else if (blob != NULL)
        rc = cairn_store_blob_add_file(b->st, blob, loc.layer.digest, b->err);
    free(blob);
    if (!*differs) {
        fprintf(b->out, " ---> Verified: a local run makes the cache's "
                        "layer\n");
        return rc;
    }
    fprintf(b->out,
            "[Warning] --cache-verify: step %d/%d (%s:%d %s) differs from "
            "the shared cache: diff_id %s there, %s here: a nondeterministic "
            "step or a bad cache entry; the build uses the local result\n",
            s->number, b->total, b->df->name, s->instr->line, s->text,
            rec->empty ? "(empty)" : rec->layer.diff_id,
            loc.empty ? "(empty)" : loc.layer.diff_id);
    if (!rc)
        rc = cairn_store_key_put(b->st, b->keys->keys[i].hex, &loc, b->err);
    if (!rc)
        *rec = loc;
    return rc;
}

/* Records how long step s took since t0 in the store's step history
 * (client/store/durations.h), for claims' waits of later builds. A
 * failure to record costs only that hint. */
static void duration_record(struct build *b, const struct ck_step *s, const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t ms = (int64_t)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
    uint8_t id[CK_SHA256_LEN];
    if (cairn_duration_id(s->stage, s->number, s->text, id) == 0)
        (void)cairn_duration_put(b->st, id, ms);
}

/* Runs or reuses layer step i; sets rep's status and layer. */
static int do_layer_step(struct build *b, size_t i, struct stage_out *so,
                         bool *cached, struct cairn_build_step *rep)
{
    const struct ck_step *s = &b->plan->steps[i];
    const struct ck_step_key *k = &b->keys->keys[i];
    struct cairn_layer_rec rec;
    memset(&rec, 0, sizeof rec);
    char *snap = NULL; /* the snapshot a COPY wrote with its layer */
    int rc;
    bool local = !b->o->no_cache && cairn_store_key_get(b->st, k->hex, &rec) == 0;
    enum cairn_claim_outcome claim = claim_settle(b, i, local);
    if (local || (!b->o->no_cache && remote_rec(b, i, &rec))) {
        *cached = true;
        bool remote = b->remote_hit && b->remote_hit[i];
        if (remote)
            b->stats->remote++;
        else
            b->stats->cached++;
        rep->status = remote ? CAIRN_STEP_REMOTE : CAIRN_STEP_LOCAL;
        bool differs = false;
        if (verify_pick(b, i)) {
            rc = verify_step(b, i, so, &rec, &snap, &differs);
            if (rc) {
                free(snap);
                return rc;
            }
        }
        if (differs) {
            b->verify_differed = true;
            *cached = false;
            b->stats->remote--;
            b->stats->run++;
            rep->status = CAIRN_STEP_RAN;
        }
    } else {
        *cached = false;
        explain_step(b, i, true);
        char *blob = NULL;
        bool empty = false;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (s->instr->kind == CK_INSTR_RUN)
            rc = build_run_step(b, s, so, &rec.layer, &blob, &empty, &snap);
        else
            rc = build_copy_step(b, s, so, &rec.layer, &blob, &empty, &snap);
        if (!rc)
            duration_record(b, s, &t0);
        if (claim == CAIRN_CLAIM_OWNED)
            cairn_claims_done(b->claims, k->hex, rc == 0);
        if (rc)
            return rc;
        b->stats->run++;
        rep->status = CAIRN_STEP_RAN;
        rec.empty = empty;
        if (blob != NULL && empty) {
            unlink(blob);
        } else if (blob != NULL) {
            rc = cairn_store_blob_add_file(b->st, blob, rec.layer.digest, b->err);
            b->stats->layer_bytes += (uint64_t)rec.layer.size;
            if (!rc)
                build_members_record(b, &rec.layer, rep);
        }
        free(blob);
        if (!rc)
            rc = cairn_store_key_put(b->st, k->hex, &rec, b->err);
        if (rc) {
            free(snap);
            return rc;
        }
        if (b->o->cache)
            cairn_cache_upload(b->o->cache, b->st, k->hex, k->material.data,
                               k->material.len, &rec);
    }
    if (!rec.empty) {
        rep->has_layer = true;
        rep->layer = rec.layer;
        rc = build_layers_push(so, &rec.layer);
        if (!rc && snap != NULL)
            rc = build_stage_snapshot_take(so, so->nlayers - 1, &snap);
        if (!rc)
            rc = strv_append(&so->cfg.diff_ids, &so->cfg.ndiff_ids,
                             rec.layer.diff_id);
        if (rc) {
            free(snap);
            return rc;
        }
    }
    free(snap);
    return add_history(b, s, so, rec.empty);
}

/* Whether stage si is the target stage or one it is built on. */
static bool in_target_chain(const struct ck_plan *p, size_t si)
{
    size_t t = p->target;
    for (size_t depth = 0; depth <= p->nstages; depth++) {
        if (t == si)
            return true;
        if (p->stages[t].base_kind != CK_BASE_STAGE)
            return false;
        t = p->stages[t].base_stage;
    }
    return false;
}

/* The shared cache's lookup phase: every layer step the local index
 * cannot serve is looked up at once, before anything runs (keys never
 * depend on a step's output). Only action results are read here; which
 * layers are then fetched is remote_fetch's business. The steps the
 * local index serves are offered to the cache (uploaded in the
 * background if it lacks them). */
static int remote_lookup(struct build *b)
{
    const struct ck_plan *p = b->plan;
    b->remote_hit = calloc(p->nsteps + 1, sizeof *b->remote_hit);
    b->remote = calloc(p->nsteps + 1, sizeof *b->remote);
    b->remote_steps = calloc(p->nsteps + 1, sizeof *b->remote_steps);
    if (b->remote_hit == NULL || b->remote == NULL || b->remote_steps == NULL)
        return CAIRN_E_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < p->nsteps; i++) {
        const struct ck_step_key *k = &b->keys->keys[i];
        struct cairn_layer_rec rec;
        if (!p->stages[p->steps[i].stage].needed || !k->computed ||
            !k->layer || k->unresolved ||
            cairn_store_key_get(b->st, k->hex, &rec) == 0)
            continue;
        struct cairn_cache_step *cs = &b->remote_steps[n++];
        cs->key_hex = k->hex;
        cs->material = k->material.data;
        cs->material_len = k->material.len;
        /* The target stage's chain is fetched whatever else hits (the
         * image must be complete in the store: remote_fetch): with its
         * lookup, not in a second round. --cache-verify decides later. */
        cs->fetch_on_hit = b->o->cache_verify == 0 &&
                           in_target_chain(p, p->steps[i].stage);
        b->remote[i] = cs;
    }
    /* The image record's entry rides with the lookups (the final key is
     * known now): build_image_finish finds its answer here. */
    const struct ck_stage *ts = &p->stages[p->target];
    const struct ck_step_key *fk = &b->keys->keys[ts->first_step + ts->nsteps - 1];
    if (b->o->source_date_epoch < 0 && fk->computed && !fk->unresolved) {
        char name[24];
        struct cairn_imagerec_key rk;
        build_image_record_key(b, name, &rk);
        cairn_imagerec_prefetch(b->o->cache, &rk);
    }
    cairn_cache_lookup(b->o->cache, b->st, b->remote_steps, n);
    /* Local hits the cache may lack: checked and uploaded in the
     * background, after the lookups that the walk waits for. */
    for (size_t i = 0; i < p->nsteps; i++) {
        const struct ck_step_key *k = &b->keys->keys[i];
        struct cairn_layer_rec rec;
        if (p->stages[p->steps[i].stage].needed && k->computed && k->layer &&
            !k->unresolved && b->remote[i] == NULL &&
            cairn_store_key_get(b->st, k->hex, &rec) == 0)
            cairn_cache_offer(b->o->cache, b->st, k->hex, k->material.data,
                              k->material.len, &rec);
    }
    return 0;
}

/* Marks in need the remote hits with a layer among the layers stage si
 * has before plan step upto (all of them when upto is past its end). */
static void remote_need_chain(struct build *b, bool *need, size_t si,
                              size_t upto)
{
    const struct ck_stage *st = &b->plan->stages[si];
    if (st->base_kind == CK_BASE_STAGE)
        remote_need_chain(b, need, st->base_stage, SIZE_MAX);
    size_t end = st->first_step + st->nsteps;
    for (size_t j = st->first_step; j < end && j < upto; j++)
        if (b->remote[j] && b->remote[j]->hit && !b->remote[j]->rec.empty)
            need[j] = true;
}

/* Fetches the layers of remote hits that the build reads, and no others:
 * the target stage's (the image must be complete in the store), and for
 * every step that will run, its stage's layers before it (its snapshots)
 * and, for COPY --from a stage, that stage's. Keys never depend on
 * outputs, so this is known before the first step; a stage used only by
 * steps that hit downloads nothing. A layer that cannot be fetched turns
 * its step into one that runs, which may need more layers: repeat until
 * every needed layer is here. */
static int remote_fetch(struct build *b)
{
    const struct ck_plan *p = b->plan;
    bool *need = calloc(p->nsteps + 1, sizeof *need);
    struct cairn_cache_step **want = calloc(p->nsteps + 1, sizeof *want);
    int rc = 0;
    if (need == NULL || want == NULL) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }
    for (;;) {
        memset(need, 0, p->nsteps * sizeof *need);
        remote_need_chain(b, need, p->target, SIZE_MAX);
        for (size_t i = 0; i < p->nsteps; i++) {
            const struct ck_step *s = &p->steps[i];
            const struct ck_step_key *k = &b->keys->keys[i];
            bool layer_step = s->instr->kind == CK_INSTR_RUN ||
                              s->instr->kind == CK_INSTR_COPY ||
                              s->instr->kind == CK_INSTR_ADD;
            struct cairn_layer_rec rec;
            /* A hit that --cache-verify runs needs what a miss needs. */
            if (!p->stages[s->stage].needed || !layer_step ||
                (!verify_pick(b, i) &&
                 ((b->remote[i] && b->remote[i]->hit) ||
                  (k->computed && !k->unresolved &&
                   cairn_store_key_get(b->st, k->hex, &rec) == 0))))
                continue;
            /* Step i runs. */
            remote_need_chain(b, need, s->stage, i);
            if (s->from_kind == CK_FROM_STAGE)
                remote_need_chain(b, need, s->from_stage, SIZE_MAX);
        }
        size_t n = 0;
        for (size_t i = 0; i < p->nsteps; i++)
            if (need[i] && !b->remote[i]->fetched)
                want[n++] = b->remote[i];
        if (n == 0 || cairn_cache_fetch(b->o->cache, b->st, want, n) == 0)
            break;
    }
    for (size_t i = 0; i < p->nsteps; i++)
        b->remote_hit[i] = b->remote[i] && b->remote[i]->hit;
out:
    free(need);
    free(want);
    return rc;
}

static double mono_secs(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Hands step i's record to the caller's on_step, if any. */
static void step_report(struct build *b, size_t i, struct cairn_build_step *rep,
                        double t0, int rc)
{
    if (b->o->on_step == NULL)
        return;
    const struct ck_step *s = &b->plan->steps[i];
    const struct ck_stage *st = &b->plan->stages[s->stage];
    rep->number = s->number;
    rep->total = b->total;
    rep->stage_index = st->index;
    rep->stage_name = st->name;
    rep->kind = ck_instr_name(s->instr->kind);
    rep->instruction = s->text;
    rep->key = b->keys->keys[i].hex;
    rep->secs = mono_secs() - t0;
    if (rc) {
        rep->status = CAIRN_STEP_FAILED;
        rep->error = b->err->msg;
    }
    fflush(b->out);
    b->o->on_step(b->o->on_step_arg, rep);
}

static int walk(struct build *b)
{
    const struct ck_plan *p = b->plan;
    for (size_t i = 0; i < p->nsteps; i++) {
        const struct ck_step *s = &p->steps[i];
        const struct ck_stage *st = &p->stages[s->stage];
        if (!st->needed)
            continue;
        struct stage_out *so = &b->stages[s->stage];
        char display[512];
        snprintf(display, sizeof display, "%s", s->text);
        fprintf(b->out, "Step %d/%d : %s\n", s->number, b->total, display);
        int rc = 0;
        bool cached = false;
        struct cairn_build_step rep;
        memset(&rep, 0, sizeof rep);
        double t0 = mono_secs();
        if (s->instr->kind == CK_INSTR_FROM) {
            rc = start_stage(b, st, so);
            if (!rc)
                explain_step(b, i, false);
        } else if (s->instr->kind == CK_INSTR_RUN ||
                   s->instr->kind == CK_INSTR_COPY ||
                   s->instr->kind == CK_INSTR_ADD) {
            rc = do_layer_step(b, i, so, &cached, &rep);
            if (!rc && cached)
                fprintf(b->out, " ---> Using cache%s\n",
                        b->remote_hit && b->remote_hit[i] ? " (remote)" : "");
        } else {
            rc = apply_meta(b, s, so);
            if (!rc && s->instr->kind != CK_INSTR_ARG)
                rc = add_history(b, s, so, true);
            if (!rc)
                explain_step(b, i, false);
        }
        if (rc) {
            /* Every failure names its step; the layer writer and the
             * store (a full disk, say) do not know which one they serve. */
            if (strncmp(b->err->msg, "step ", 5) != 0)
                cairn_err_prefix(b->err, "step %d/%d (%s:%d %s)", s->number,
                                 b->total, b->df->name, s->instr->line,
                                 ck_instr_name(s->instr->kind));
            step_report(b, i, &rep, t0, rc);
            return rc;
        }
        char id[13];
        short_id(b->keys->keys[i].hex, id);
        fprintf(b->out, " ---> %s\n", id);
        fflush(b->out);
        step_report(b, i, &rep, t0, 0);
    }
    return 0;
}

/* The --explain record of this build, for its image's transaction: sets
 * row->lastbuild (kept in *rec, which the caller frees), or
 * row->lastbuild_drop when even the record without listings is too big
 * (a stale record would explain wrongly), or neither, with a warning,
 * when the material cannot be had (the image is still built). */
static void remember_record(struct build *b, struct cairn_buf *rec,
                            struct cairn_image_row *row)
{
    struct cairn_explain_build eb;
    struct cairn_err e;
    cairn_err_clear(&e);
    cairn_buf_init(rec, CAIRN_STORE_LASTBUILD_MAX);
    int rc = cairn_explain_build_from_plan(b->plan, b->keys, b->ctx, &eb, &e);
    if (!rc) {
        cairn_buf_free(rec);
        rc = cairn_explain_record(&eb, rec);
        cairn_explain_build_clear(&eb);
    }
    if (!rc) {
        row->lastbuild = rec->data;
        row->lastbuild_len = rec->len;
        return;
    }
    if (rc == CAIRN_E_TOOBIG) {
        row->lastbuild_drop = true;
        cairn_err_set(&e, rc, "key materials over %u bytes: not remembered",
                      CAIRN_STORE_LASTBUILD_MAX);
    }
    fprintf(b->out, "[Warning] this build is not remembered for "
                    "--explain: %s\n",
            e.msg[0] ? e.msg : cairn_strerror(rc));
}

/* Stores config and manifest j of the target stage and records the
 * image, with its tags, the build's result under result_key and, when it
 * has tags, its --explain record, in one transaction (one disk flush). */
static int commit_image(struct build *b, const char *result_key,
                        const struct image_json *j,
                        char image_id[CAIRN_DIGEST_STR_LEN],
                        char manifest_out[CAIRN_DIGEST_STR_LEN])
{
    struct stage_out *so = &b->stages[b->plan->target];
    /* Config and manifest flushed together, not one after the other. */
    char dg[2][CAIRN_DIGEST_STR_LEN];
    const void *data[2] = {j->config, j->manifest};
    size_t len[2] = {j->config_len, j->manifest_len};
    int rc = cairn_store_blobs_add_data(b->st, 2, data, len, dg, b->err);
    if (rc)
        return rc;
    const char *config_digest = dg[0], *manifest_digest = dg[1];
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    snprintf(row.manifest_digest, sizeof row.manifest_digest, "%s",
             manifest_digest);
    snprintf(row.config_digest, sizeof row.config_digest, "%s", config_digest);
    row.created = j->created;
    for (size_t i = 0; i < so->nlayers; i++)
        row.size += so->layers[i].size;
    /* The tags go in the image's own transaction: one commit and one
     * index.json instead of one more of each per tag. image_add only
     * reads them (the cast drops a const it does not need). */
    row.tags = (char **)b->o->tags;
    row.ntags = b->o->ntags;
    row.result_key = result_key;
    struct cairn_buf rec;
    cairn_buf_init(&rec, 0);
    if (b->o->ntags > 0)
        remember_record(b, &rec, &row);
    rc = cairn_store_image_add(b->st, &row, b->err);
    cairn_buf_free(&rec);
    if (!rc) {
        snprintf(image_id, CAIRN_DIGEST_STR_LEN, "%s", config_digest);
        snprintf(manifest_out, CAIRN_DIGEST_STR_LEN, "%s", manifest_digest);
    }
    return rc;
}

/* Remembers this build's keys under its tags for a later --explain. The
 * image is built and tagged already, so a failure here is a warning. */
static void remember(struct build *b)
{
    struct cairn_explain_build eb;
    struct cairn_err e;
    cairn_err_clear(&e);
    int rc = cairn_explain_build_from_plan(b->plan, b->keys, b->ctx, &eb, &e);
    if (!rc) {
        rc = cairn_explain_remember(b->st, b->o->tags, b->o->ntags, &eb, &e);
        cairn_explain_build_clear(&eb);
    }
    if (rc)
        fprintf(b->out, "[Warning] this build is not remembered for "
                        "--explain: %s\n",
                e.msg[0] ? e.msg : cairn_strerror(rc));
}

/* Parses the Dockerfile and .dockerignore, opens the context (its stat
 * cache in *sc, the ignore rules in *ig, both the caller's) and makes the
 * plan, pulling the FROM images it needs; warns of build args nothing
 * consumed. */
static int build_plan_make(struct build *b, const char *dockerfile,
                           struct ck_ignore **ig, struct ck_statcache **sc)
{
    const struct cairn_build_opts *o = b->o;
    struct cairn_err *err = b->err;
    int rc = ck_dockerfile_parse_file(dockerfile, &b->df, err);
    if (!rc)
        rc = ck_ignore_load(o->context, dockerfile, ig, err);
    if (!rc)
        rc = cairn_store_statcache_open(b->st, sc, err);
    /* A tagged build lists its COPY sources for --explain at the end:
     * from the walks its keys were made of, not a second walk. */
    struct ck_context_opts co = {
        .ignore = *ig, .cache = *sc, .keep_walks = o->ntags > 0};
    if (!rc)
        rc = ck_context_open(o->context, &co, &b->ctx, err);
    struct ck_plan_opts po = {
        .build_args = o->build_args,
        .nbuild_args = o->nbuild_args,
        .target = o->target,
        .resolve = resolve_image,
        .resolve_arg = b,
        .allow_unresolved = true, /* checked for needed stages below */
        .has_source_date_epoch = o->source_date_epoch >= 0,
        .source_date_epoch = o->source_date_epoch,
    };
    if (!rc)
        rc = ck_plan_build(b->df, &po, &b->plan, err);
    bool pulled = false;
    if (!rc)
        rc = build_bases_pull(b, &pulled);
    if (!rc && pulled) {
        /* The keys must hold the digests the store has now. */
        ck_plan_free(b->plan);
        b->plan = NULL;
        rc = ck_plan_build(b->df, &po, &b->plan, err);
    }
    if (!rc)
        rc = plan_check_resolved(b);
    if (rc)
        return rc;
    if (b->plan->nunused_build_args > 0) {
        fprintf(b->out, "[Warning] One or more build-args [");
        for (size_t i = 0; i < b->plan->nunused_build_args; i++)
            fprintf(b->out, "%s%s", i ? " " : "",
                    b->plan->unused_build_args[i]);
        fprintf(b->out, "] were not consumed\n");
    }
    return 0;
}

/* Offers the image row, which the local store had for this build's
 * final key, to the shared cache as its image record. */
static void offer_local_image(struct build *b,
                              const struct cairn_imagerec_key *rk,
                              const struct cairn_image_row *row)
{
    struct stat cs, ms;
    char cp[4096], mp[4096];
    cairn_store_blob_path(b->st, row->config_digest, cp, sizeof cp);
    cairn_store_blob_path(b->st, row->manifest_digest, mp, sizeof mp);
    if (stat(cp, &cs) != 0 || stat(mp, &ms) != 0)
        return;
    struct cairn_imagerec ir;
    memset(&ir, 0, sizeof ir);
    snprintf(ir.config_digest, sizeof ir.config_digest, "%s",
             row->config_digest);
    ir.config_size = (int64_t)cs.st_size;
    snprintf(ir.manifest_digest, sizeof ir.manifest_digest, "%s",
             row->manifest_digest);
    ir.manifest_size = (int64_t)ms.st_size;
    ir.created = row->created;
    cairn_imagerec_offer(b->o->cache, b->st, rk, &ir, true);
}

/* After the walk: the image of the target stage, tagged. A build whose
 * final key already produced an image gives that same image (so a fully
 * cached rebuild keeps its ID, as in Docker); so does one whose shared
 * cache has the image record of its final key that its own layers and
 * settings remake (the first build's time, so the same ID on every
 * machine); with a source date epoch the image is reproducible anyway
 * and no record is read or written. Either way a tagged build is
 * remembered (result and --explain record). */
static int build_image_finish(struct build *b,
                              char image_id[CAIRN_DIGEST_STR_LEN])
{
    const struct cairn_build_opts *o = b->o;
    const struct ck_stage *ts = &b->plan->stages[b->plan->target];
    const char *final_key = b->keys->keys[ts->first_step + ts->nsteps - 1].hex;
    bool records = o->cache != NULL && o->source_date_epoch < 0;
    char name[24];
    struct cairn_imagerec_key rk;
    build_image_record_key(b, name, &rk);
    char manifest[CAIRN_DIGEST_STR_LEN];
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    int rc = 0;
    if (!o->no_cache && o->source_date_epoch < 0 && b->stats->run == 0 &&
        cairn_store_result_get(b->st, final_key, manifest) == 0 &&
        cairn_store_image_find(b->st, manifest, &row, NULL) == 0) {
        for (size_t i = 0; !rc && i < o->ntags; i++)
            rc = cairn_store_tag(b->st, o->tags[i], manifest, b->err);
        if (!rc)
            snprintf(image_id, CAIRN_DIGEST_STR_LEN, "%s", row.config_digest);
        /* A cache that was wiped, or never had it, gets it back. */
        if (!rc && records)
            offer_local_image(b, &rk, &row);
        cairn_store_image_row_clear(&row);
        if (!rc && o->ntags > 0)
            remember(b);
        return rc;
    }
    build_remote_ensure_blobs(b, &b->stages[b->plan->target]);
    struct image_json j;
    bool taken = false;
    if (records && !o->no_cache)
        taken = build_image_record_take(b, &j);
    if (!taken)
        rc = build_image_render(b, b->now, &j);
    if (rc)
        return rc;
    /* Remembers the build too (result and --explain record). */
    rc = commit_image(b, final_key, &j, image_id, manifest);
    if (!rc && records && !taken && !b->verify_differed) {
        struct cairn_imagerec ir;
        build_image_record_of(&j, &ir);
        cairn_imagerec_offer(o->cache, b->st, &rk, &ir, false);
    }
    build_image_json_clear(&j);
    return rc;
}

int cairn_build_run(struct cairn_store *st, const struct cairn_build_opts *o,
                    char image_id[CAIRN_DIGEST_STR_LEN],
                    struct cairn_build_stats *stats, struct cairn_err *err)
{
    struct build b;
    memset(&b, 0, sizeof b);
    memset(stats, 0, sizeof *stats);
    b.st = st;
    b.o = o;
    b.stats = stats;
    b.err = err;
    b.out = o->out ? o->out : stdout;
    b.now = o->source_date_epoch >= 0 ? o->source_date_epoch : (int64_t)time(NULL);
    struct ck_ignore *ig = NULL;
    struct ck_statcache *sc = NULL;
    char dfpath[4096];
    const char *dockerfile = o->dockerfile;
    if (dockerfile == NULL) {
        snprintf(dfpath, sizeof dfpath, "%s/Dockerfile", o->context);
        dockerfile = dfpath;
    }
    struct stat cst;
    if (stat(o->context, &cst) != 0 || !S_ISDIR(cst.st_mode))
        return cairn_err_set(err, CAIRN_E_NOTFOUND,
                             "unable to prepare context: path \"%s\" not found",
                             o->context);
    int rc = build_plan_make(&b, dockerfile, &ig, &sc);
    if (rc)
        goto out;
    /* The cache's connection and probe overlap the keys (the context's
     * hashing); after the plan, so that a Dockerfile's error does not
     * wait for an unreachable cache's timeout at exit. */
    if (o->cache && !o->no_cache)
        cairn_cache_probe_start(o->cache);
    rc = ck_keys_compute(b.plan, b.ctx, &b.keys, err);
    if (rc)
        goto out;
    for (size_t i = 0; i < b.plan->nsteps; i++)
        if (b.plan->stages[b.plan->steps[i].stage].needed)
            b.total++;
    stats->steps = (unsigned)b.total;
    if (o->explain && o->ntags > 0 && !o->no_cache) {
        /* No record (or an unreadable one) is what --explain reports
         * under each miss, not an error of the build. */
        struct cairn_err le;
        cairn_err_clear(&le);
        b.have_last = cairn_explain_load(st, o->tags[0], &b.last, &le) == 0;
    }
    b.stages = calloc(b.plan->nstages, sizeof *b.stages);
    if (b.stages == NULL) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }
    rc = cairn_store_lock(st, false, err);
    if (rc)
        goto out;
    if (o->cache && !o->no_cache) {
        rc = cairn_claims_open(o->cache, &b.claims);
        if (!rc)
            rc = remote_lookup(&b);
        if (!rc)
            rc = remote_fetch(&b);
    }
    if (!rc)
        rc = walk(&b);
    if (!rc)
        rc = build_image_finish(&b, image_id);
    if (o->cache) {
        /* Uploads read blobs from the store: they end before the lock. */
        struct cairn_cache_stats cst_;
        cairn_cache_finish(o->cache);
        cairn_cache_stats_get(o->cache, &cst_);
        stats->bytes_down = cst_.bytes_down;
        stats->bytes_up = cst_.bytes_up;
        /* After the uploads, which ended the claims they answer. */
        struct cairn_claims_stats clst;
        cairn_claims_stats_get(b.claims, &clst);
        stats->claimed = clst.claimed;
        stats->waited = clst.waited;
        cairn_claims_close(b.claims);
        b.claims = NULL;
    }
    /* Fetched keys wait for the image's commit (cairn_store_key_put_later);
     * when there was none (a failed build), they are recorded here,
     * while the lock still keeps prune away. */
    struct cairn_err kerr;
    cairn_err_clear(&kerr);
    if (cairn_store_keys_commit(st, &kerr) != 0)
        fprintf(stderr, "cairn: warning: fetched layers are not recorded in "
                        "the local key index: %s\n",
                kerr.msg);
    cairn_store_unlock(st);
out:
    build_members_free(&b);
    cairn_claims_close(b.claims);
    free(b.remote_hit);
    free(b.remote);
    free(b.remote_steps);
    cairn_explain_build_clear(&b.last);
    if (b.stages)
        for (size_t i = 0; i < b.plan->nstages; i++)
            build_stage_out_free(&b.stages[i]);
    free(b.stages);
    ck_keys_free(b.keys);
    ck_plan_free(b.plan);
    ck_context_close(b.ctx);
    cairn_store_statcache_close(st, sc);
    ck_ignore_free(ig);
    ck_dockerfile_free(b.df);
    return rc;
}

int cairn_build_resolve(void *store, const char *ref, const char *platform,
                        struct ck_image_info *out, struct cairn_err *err)
{
    struct cairn_err scratch;
    cairn_err_clear(&scratch);
    struct build b;
    memset(&b, 0, sizeof b);
    b.st = store;
    b.err = &scratch;
    return resolve_image(&b, ref, platform, out, err);
}
