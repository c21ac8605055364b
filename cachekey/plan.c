#include "plan.h"

#include "cachekey/expand.h"
#include "cachekey/vars.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- per-stage state while walking -------------------------------------- */

struct stage_state {
    struct ck_vars env;  /* image ENV + stage ENV */
    struct ck_vars args; /* ARGs declared in the stage */
    char *workdir;
    char *user;
    struct cairn_strvec shell;
    struct cairn_strvec onbuild; /* triggers the stage's image carries */
};

static void stage_state_free(struct stage_state *s)
{
    ck_vars_free(&s->env);
    ck_vars_free(&s->args);
    free(s->workdir);
    free(s->user);
    cairn_strvec_free(&s->shell);
    cairn_strvec_free(&s->onbuild);
}

struct walker {
    const struct ck_dockerfile *df;
    const struct ck_plan_opts *opts;
    struct cairn_err *err;
    struct ck_vars build_args;
    struct ck_vars global;     /* ARGs before the first FROM */
    struct ck_vars predefined; /* platform args */
    struct stage_state *states;
    struct ck_stage *stages;
    size_t nstages, astages;
    struct ck_step *steps;
    size_t nsteps, asteps;
    struct ck_dockerfile **owned; /* parsed ONBUILD triggers */
    size_t nowned;
    size_t state_bytes; /* env and ARG snapshots kept so far */
};

/* Proxy args are usable without an ARG and never part of a cache key (as
 * in Docker, so a CI proxy setting does not invalidate layers). */
static const char *const proxy_args[] = {
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
    "ftp_proxy",  "NO_PROXY",   "no_proxy",    "ALL_PROXY",   "all_proxy",
};

static bool is_proxy_arg(const char *name)
{
    for (size_t i = 0; i < sizeof proxy_args / sizeof proxy_args[0]; i++)
        if (strcmp(name, proxy_args[i]) == 0)
            return true;
    return false;
}

static int fail(struct walker *w, const struct ck_instr *in, int code,
                const char *what)
{
    return cairn_err_set(w->err, code, "%s:%d: %s", w->df->name,
                         in ? in->line : 0, what);
}

/* ---- expansion ---------------------------------------------------------- */

struct lookup_scope {
    const struct ck_vars *first;
    const struct ck_vars *second;
};

static const char *scope_lookup(void *arg, const char *name, size_t len)
{
    const struct lookup_scope *sc = arg;
    const struct ck_var *v =
        sc->first ? ck_vars_find(sc->first, name, len) : NULL;
    if (v != NULL && v->value != NULL)
        return v->value;
    v = sc->second ? ck_vars_find(sc->second, name, len) : NULL;
    if (v != NULL && v->value != NULL)
        return v->value;
    return NULL;
}

static int expand_in(struct walker *w, const struct ck_instr *in,
                     const struct lookup_scope *sc, const char *word,
                     char **out)
{
    struct cairn_err e;
    cairn_err_clear(&e);
    int rc = ck_expand_word(word, w->df->escape, scope_lookup, (void *)sc,
                            out, &e);
    if (rc) {
        return cairn_err_set(w->err, rc, "%s:%d: %s", w->df->name,
                             in->line, e.msg[0] ? e.msg : cairn_strerror(rc));
    }
    return 0;
}

/* ENV wins over an ARG of the same name (Docker's rule). */
static struct lookup_scope stage_scope(const struct stage_state *st)
{
    return (struct lookup_scope){&st->env, &st->args};
}

/* ---- text helpers ------------------------------------------------------- */

static int put_json_string(struct cairn_buf *b, const char *s)
{
    int rc = cairn_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; !rc && *p; p++) {
        if (*p == '"' || *p == '\\')
            rc = cairn_buf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            rc = cairn_buf_printf(b, "\\u%04x", *p);
        else
            rc = cairn_buf_putc(b, (char)*p);
    }
    return rc ? rc : cairn_buf_putc(b, '"');
}

static int put_json_array(struct cairn_buf *b, char *const *v, size_t n)
{
    int rc = cairn_buf_putc(b, '[');
    for (size_t i = 0; !rc && i < n; i++) {
        if (i)
            rc = cairn_buf_putc(b, ',');
        if (!rc)
            rc = put_json_string(b, v[i] ? v[i] : "");
    }
    return rc ? rc : cairn_buf_putc(b, ']');
}

/* A value printed in ENV/LABEL text: quoted when a reader could not tell
 * where it ends otherwise. */
static int put_value(struct cairn_buf *b, const char *v)
{
    bool plain = v[0] != '\0';
    for (const char *p = v; *p; p++)
        if (isspace((unsigned char)*p) || *p == '"' || *p == '\'' ||
            *p == '\\')
            plain = false;
    if (plain)
        return cairn_buf_puts(b, v);
    int rc = cairn_buf_putc(b, '"');
    for (const char *p = v; !rc && *p; p++) {
        if (*p == '"' || *p == '\\')
            rc = cairn_buf_putc(b, '\\');
        if (!rc)
            rc = cairn_buf_putc(b, *p);
    }
    return rc ? rc : cairn_buf_putc(b, '"');
}

/* Cleans an absolute path like Go's path.Clean ("/a/./b/../c" -> "/a/c"). */
static char *path_clean_abs(const char *base, const char *p)
{
    struct cairn_buf in, out;
    cairn_buf_init(&in, 0);
    cairn_buf_init(&out, 0);
    if (p[0] != '/') {
        cairn_buf_puts(&in, base);
        cairn_buf_putc(&in, '/');
    }
    if (cairn_buf_puts(&in, p)) {
        cairn_buf_free(&in);
        return NULL;
    }
    const char *s = in.data;
    cairn_buf_putc(&out, '/');
    while (*s) {
        while (*s == '/')
            s++;
        const char *e = s;
        while (*e && *e != '/')
            e++;
        size_t n = (size_t)(e - s);
        if (n == 0 || (n == 1 && s[0] == '.')) {
            /* nothing */
        } else if (n == 2 && s[0] == '.' && s[1] == '.') {
            while (out.len > 1 && out.data[out.len - 1] != '/')
                out.len--;
            if (out.len > 1)
                out.len--;
            out.data[out.len] = '\0';
        } else {
            if (out.len > 1)
                cairn_buf_putc(&out, '/');
            cairn_buf_append(&out, s, n);
        }
        s = e;
    }
    cairn_buf_free(&in);
    return cairn_buf_take(&out);
}

/* ---- steps and stages --------------------------------------------------- */

static struct ck_step *step_new(struct walker *w, const struct ck_instr *in,
                                bool from_onbuild)
{
    if (w->nsteps == w->asteps) {
        size_t na = w->asteps ? w->asteps * 2 : 32;
        struct ck_step *ns = realloc(w->steps, na * sizeof *ns);
        if (ns == NULL)
            return NULL;
        w->steps = ns;
        w->asteps = na;
    }
    struct ck_step *s = &w->steps[w->nsteps++];
    memset(s, 0, sizeof *s);
    s->instr = in;
    s->from_onbuild = from_onbuild;
    s->stage = w->nstages - 1;
    s->from_kind = CK_FROM_CONTEXT;
    return s;
}

static void step_free(struct ck_step *s)
{
    free(s->text);
    cairn_strv_free(s->words, s->nwords);
    cairn_strv_free(s->env, s->nenv);
    cairn_strv_free(s->args_in_scope, s->nargs_in_scope);
    free(s->workdir);
    free(s->user);
    cairn_strv_free(s->shell, s->nshell);
    free(s->network);
    free(s->from_ref);
    free(s->chown);
    free(s->chmod);
    ck_image_info_clear(&s->from_image);
    for (size_t i = 0; i < s->nmounts; i++) {
        ck_mount_clear(&s->mounts[i].m);
        ck_image_info_clear(&s->mounts[i].from_image);
    }
    free(s->mounts);
    cairn_strv_free(s->excludes, s->nexcludes);
}

void ck_image_info_clear(struct ck_image_info *info)
{
    if (info == NULL)
        return;
    free(info->digest);
    free(info->platform);
    cairn_strv_free(info->env, info->nenv);
    free(info->workdir);
    free(info->user);
    cairn_strv_free(info->shell, info->nshell);
    cairn_strv_free(info->onbuild, info->nonbuild);
    memset(info, 0, sizeof *info);
}

static int cmp_kv(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    size_t xl = strcspn(x, "="), yl = strcspn(y, "=");
    int c = memcmp(x, y, xl < yl ? xl : yl);
    if (c)
        return c;
    if (xl != yl)
        return xl < yl ? -1 : 1;
    return strcmp(x, y);
}

/* Charges a snapshot string of len bytes to the plan: every step keeps
 * its own copy of the state, so the total is capped (CK_PLAN_MAX_STATE). */
static int state_charge(struct walker *w, const struct ck_step *s, size_t len)
{
    w->state_bytes += len + 1 + sizeof(char *);
    if (w->state_bytes <= CK_PLAN_MAX_STATE)
        return 0;
    char msg[160];
    snprintf(msg, sizeof msg,
             "the steps' ENV and ARG state passes %u MiB (each RUN keeps its "
             "whole environment): too many variables",
             CK_PLAN_MAX_STATE >> 20);
    return fail(w, s->instr, CAIRN_E_TOOBIG, msg);
}

/* Records the state a step runs in. Only a RUN keeps the environment (its
 * key and its process need it; nothing else reads it): copying it into
 * every step made N ENV lines cost O(N^2) time and memory. */
static int step_snapshot(struct walker *w, struct ck_step *s,
                         const struct stage_state *st)
{
    bool keep_env = s->instr->kind == CK_INSTR_RUN;
    struct cairn_strvec env, args;
    cairn_strvec_init(&env);
    cairn_strvec_init(&args);
    struct cairn_buf kv;
    cairn_buf_init(&kv, 0);
    int rc = 0;
    for (size_t i = 0; keep_env && !rc && i < st->env.n; i++) {
        const struct ck_var *v = &st->env.v[i];
        cairn_buf_reset(&kv);
        rc = cairn_buf_printf(&kv, "%s=%s", v->name, v->value ? v->value : "");
        if (!rc)
            rc = state_charge(w, s, kv.len);
        if (!rc)
            rc = cairn_strvec_push(&env, kv.data);
    }
    for (size_t i = 0; !rc && i < st->args.n; i++) {
        const struct ck_var *v = &st->args.v[i];
        if (v->value == NULL)
            continue;
        cairn_buf_reset(&kv);
        rc = cairn_buf_printf(&kv, "%s=%s", v->name, v->value);
        if (!rc)
            rc = state_charge(w, s, kv.len);
        if (!rc)
            rc = cairn_strvec_push(&args, kv.data);
        if (!rc && keep_env &&
            ck_vars_find(&st->env, v->name, strlen(v->name)) == NULL)
            rc = cairn_strvec_push(&env, kv.data);
    }
    cairn_buf_free(&kv);
    if (rc)
        goto out;
    if (env.n > 1)
        qsort(env.v, env.n, sizeof *env.v, cmp_kv);
    if (args.n > 1)
        qsort(args.v, args.n, sizeof *args.v, cmp_kv);
    s->env = cairn_strvec_take(&env, &s->nenv);
    s->args_in_scope = cairn_strvec_take(&args, &s->nargs_in_scope);
    s->workdir = strdup(st->workdir);
    s->user = strdup(st->user);
    s->shell = cairn_strv_dup(st->shell.v, st->shell.n);
    s->nshell = st->shell.n;
    if (!s->env || !s->args_in_scope || !s->workdir || !s->user || !s->shell)
        rc = CAIRN_E_NOMEM;
out:
    cairn_strvec_free(&env);
    cairn_strvec_free(&args);
    return rc;
}

static struct ck_stage *stage_new(struct walker *w)
{
    if (w->nstages == w->astages) {
        size_t na = w->astages ? w->astages * 2 : 8;
        struct ck_stage *ns = realloc(w->stages, na * sizeof *ns);
        struct stage_state *nt =
            ns ? realloc(w->states, na * sizeof *nt) : NULL;
        if (ns)
            w->stages = ns;
        if (nt == NULL)
            return NULL;
        w->states = nt;
        w->astages = na;
    }
    size_t i = w->nstages++;
    memset(&w->stages[i], 0, sizeof w->stages[i]);
    memset(&w->states[i], 0, sizeof w->states[i]);
    w->stages[i].index = i;
    return &w->stages[i];
}

/* Finds an earlier stage by name (case-insensitive) or decimal index. */
static bool stage_lookup(struct walker *w, const char *ref, size_t before,
                         size_t *idx)
{
    for (size_t i = 0; i < before; i++) {
        if (w->stages[i].name && strcasecmp(w->stages[i].name, ref) == 0) {
            *idx = i;
            return true;
        }
    }
    return false;
}

static bool stage_lookup_index(struct walker *w, const char *ref,
                               size_t before, size_t *idx)
{
    if (stage_lookup(w, ref, before, idx))
        return true;
    if (ref[0] == '\0' || strspn(ref, "0123456789") != strlen(ref))
        return false;
    char *end = NULL;
    unsigned long v = strtoul(ref, &end, 10);
    if (v < before) {
        *idx = (size_t)v;
        return true;
    }
    return false;
}

static bool valid_stage_name(const char *s)
{
    if (!(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (const char *p = s; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

/* ---- handlers for each instruction -------------------------------------- */

typedef int (*step_fn)(struct walker *w, struct ck_step *s,
                       struct stage_state *st);

/* Ends a handler that built s->words in out: hands them over on success,
 * frees them otherwise. Returns rc (or CAIRN_E_NOMEM). */
static int words_take(struct ck_step *s, struct cairn_strvec *out, int rc)
{
    if (!rc) {
        s->words = cairn_strvec_take(out, &s->nwords);
        if (s->words == NULL)
            rc = CAIRN_E_NOMEM;
    }
    cairn_strvec_free(out);
    return rc;
}

/* Expands every arg in place into s->words (heredoc markers kept as
 * written, since their bodies carry their own expansion rule). */
static int expand_args(struct walker *w, struct ck_step *s,
                       struct stage_state *st)
{
    const struct ck_instr *in = s->instr;
    struct lookup_scope sc = stage_scope(st);
    struct cairn_strvec out;
    cairn_strvec_init(&out);
    int rc = 0;
    for (size_t i = 0; !rc && i < in->nargs; i++) {
        if (in->nheredocs && strncmp(in->args[i], "<<", 2) == 0) {
            rc = cairn_strvec_push(&out, in->args[i]);
            continue;
        }
        char *x = NULL;
        rc = expand_in(w, in, &sc, in->args[i], &x);
        if (!rc)
            rc = cairn_strvec_push_take(&out, x);
    }
    return words_take(s, &out, rc);
}

static int copy_args(struct walker *w, struct ck_step *s,
                     struct stage_state *st)
{
    (void)w;
    (void)st;
    s->words = cairn_strv_dup(s->instr->args, s->instr->nargs);
    s->nwords = s->instr->nargs;
    return s->words ? 0 : CAIRN_E_NOMEM;
}

static int do_env(struct walker *w, struct ck_step *s, struct stage_state *st)
{
    int rc = expand_args(w, s, st);
    for (size_t i = 0; !rc && i + 1 < s->nwords; i += 2) {
        if (s->words[i][0] == '\0')
            return fail(w, s->instr, CAIRN_E_PARSE, "ENV names can not be blank");
        rc = ck_vars_set(&st->env, s->words[i], s->words[i + 1]);
    }
    return rc;
}

static int do_arg(struct walker *w, struct ck_step *s, struct stage_state *st)
{
    const struct ck_instr *in = s->instr;
    struct cairn_strvec out;
    cairn_strvec_init(&out);
    int rc = 0;
    for (size_t i = 0; !rc && i < in->nargs; i++) {
        const char *word = in->args[i];
        const char *eq = strchr(word, '=');
        char *name = strndup(word, eq ? (size_t)(eq - word) : strlen(word));
        char *value = NULL;
        if (name == NULL) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        if (name[0] == '\0') {
            free(name);
            rc = fail(w, in, CAIRN_E_PARSE, "ARG names can not be blank");
            break;
        }
        struct ck_var *ba = ck_vars_find(&w->build_args, name, strlen(name));
        if (ba != NULL) {
            ba->used = true;
            value = strdup(ba->value);
        } else if (eq != NULL) {
            struct lookup_scope sc = stage_scope(st);
            rc = expand_in(w, in, &sc, eq + 1, &value);
        } else {
            /* Redeclaring a global ARG takes its value; platform args get
             * theirs from the build. */
            const struct ck_var *g =
                ck_vars_find(&w->global, name, strlen(name));
            if (g == NULL)
                g = ck_vars_find(&w->predefined, name, strlen(name));
            if (g != NULL && g->value != NULL)
                value = strdup(g->value);
        }
        if (!rc)
            rc = ck_vars_set(&st->args, name, value);
        if (!rc)
            rc = cairn_strvec_push(&out, name);
        if (!rc)
            rc = cairn_strvec_push(&out, value);
        free(name);
        free(value);
    }
    return words_take(s, &out, rc);
}

static int do_workdir(struct walker *w, struct ck_step *s,
                      struct stage_state *st)
{
    int rc = expand_args(w, s, st);
    if (rc)
        return rc;
    if (s->nwords < 1 || s->words[0][0] == '\0')
        return fail(w, s->instr, CAIRN_E_PARSE, "WORKDIR requires exactly one argument");
    char *wd = path_clean_abs(st->workdir, s->words[0]);
    if (wd == NULL)
        return CAIRN_E_NOMEM;
    free(st->workdir);
    st->workdir = wd;
    return 0;
}

static int do_user(struct walker *w, struct ck_step *s, struct stage_state *st)
{
    int rc = expand_args(w, s, st);
    if (rc)
        return rc;
    if (s->nwords < 1 || s->words[0][0] == '\0')
        return fail(w, s->instr, CAIRN_E_PARSE, "USER requires exactly one argument");
    char *u = strdup(s->words[0]);
    if (u == NULL)
        return CAIRN_E_NOMEM;
    free(st->user);
    st->user = u;
    return 0;
}

static int do_shell(struct walker *w, struct ck_step *s,
                    struct stage_state *st)
{
    int rc = copy_args(w, s, st);
    if (rc)
        return rc;
    if (!s->instr->json || s->nwords == 0)
        return fail(w, s->instr, CAIRN_E_PARSE,
                    "SHELL requires the arguments to be in JSON form");
    cairn_strvec_free(&st->shell);
    for (size_t i = 0; !rc && i < s->nwords; i++)
        rc = cairn_strvec_push(&st->shell, s->words[i]);
    return rc;
}

static int do_onbuild(struct walker *w, struct ck_step *s,
                      struct stage_state *st)
{
    (void)w;
    const struct ck_instr *sub = s->instr->sub;
    const char *text = sub && sub->original ? sub->original : "";
    s->words = cairn_strv_dup((char *const *)&text, 1);
    s->nwords = 1;
    if (s->words == NULL)
        return CAIRN_E_NOMEM;
    return cairn_strvec_push(&st->onbuild, text);
}

static int resolve_from(struct walker *w, struct ck_step *s, const char *ref,
                        enum ck_from_kind *kind, size_t *stage,
                        struct ck_image_info *image, bool *unresolved);

/* Expansion of --mount values in the stage's scope. */
struct mount_expand {
    struct walker *w;
    const struct ck_instr *in;
    struct lookup_scope sc;
};

static int mount_expand(void *arg, const char *value, char **out,
                        struct cairn_err *err)
{
    struct mount_expand *x = arg;
    (void)err; /* expand_in reports through the walker's err */
    return expand_in(x->w, x->in, &x->sc, value, out);
}

static char *path_base(const char *p)
{
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && p[b - 1] != '/')
        b--;
    return strndup(p + b, n - b);
}

/* Fills the defaults BuildKit fills and resolves from= of one mount. */
static int mount_finish(struct walker *w, struct ck_step *s,
                        struct stage_state *st, struct ck_run_mount *rm,
                        unsigned ssh_index)
{
    struct ck_mount *m = &rm->m;
    char msg[300];
    if (m->type == CK_MOUNT_SECRET || m->type == CK_MOUNT_SSH) {
        if (m->id == NULL && m->source != NULL) {
            m->id = m->source;
            m->source = NULL;
        }
        if (m->id == NULL && m->type == CK_MOUNT_SECRET)
            m->id = path_base(m->target);
        else if (m->id == NULL)
            m->id = strdup("default");
        if (m->id == NULL)
            return CAIRN_E_NOMEM;
        if (m->target == NULL) {
            struct cairn_buf b;
            cairn_buf_init(&b, 0);
            if (m->type == CK_MOUNT_SECRET)
                cairn_buf_printf(&b, "/run/secrets/%s", m->id);
            else
                cairn_buf_printf(&b, "/run/buildkit/ssh_agent.%u", ssh_index);
            if ((m->target = cairn_buf_take(&b)) == NULL)
                return CAIRN_E_NOMEM;
        }
    }
    if (m->target == NULL || m->target[0] == '\0')
        return fail(w, s->instr, CAIRN_E_PARSE,
                    "RUN --mount: target is required (target=PATH)");
    char *t = path_clean_abs(st->workdir, m->target);
    if (t == NULL)
        return CAIRN_E_NOMEM;
    free(m->target);
    m->target = t;
    if (strcmp(t, "/") == 0) {
        snprintf(msg, sizeof msg, "RUN --mount: invalid mount target \"/\"");
        return fail(w, s->instr, CAIRN_E_PARSE, msg);
    }
    if (m->type == CK_MOUNT_CACHE && m->id == NULL &&
        (m->id = strdup(t)) == NULL)
        return CAIRN_E_NOMEM;
    rm->from_kind = CK_FROM_CONTEXT;
    if (m->from == NULL)
        return 0;
    if (m->from[0] == '\0')
        return fail(w, s->instr, CAIRN_E_PARSE,
                    "RUN --mount: from requires a value");
    return resolve_from(w, s, m->from, &rm->from_kind, &rm->from_stage,
                        &rm->from_image, &rm->from_unresolved);
}

static int do_run(struct walker *w, struct ck_step *s, struct stage_state *st)
{
    int rc = copy_args(w, s, st);
    if (rc)
        return rc;
    const struct ck_instr *in = s->instr;
    char msg[300];
    bool present = false;
    const char *net = ck_instr_flag(in, "network", &present);
    if (present && (net == NULL ||
                    (strcmp(net, "default") != 0 && strcmp(net, "none") != 0 &&
                     strcmp(net, "host") != 0))) {
        snprintf(msg, sizeof msg,
                 "RUN --network=%.100s: network mode not supported (default, "
                 "none or host)",
                 net ? net : "");
        return fail(w, in, CAIRN_E_PARSE, msg);
    }
    s->network = strdup(present ? net : "default");
    if (s->network == NULL)
        return CAIRN_E_NOMEM;
    const char *sec = ck_instr_flag(in, "security", &present);
    if (present && (sec == NULL || (strcmp(sec, "sandbox") != 0 &&
                                    strcmp(sec, "insecure") != 0))) {
        snprintf(msg, sizeof msg,
                 "RUN --security=%.100s: security mode not supported "
                 "(sandbox or insecure)",
                 sec ? sec : "");
        return fail(w, in, CAIRN_E_PARSE, msg);
    }
    s->insecure = present && strcmp(sec, "insecure") == 0;

    size_t n = 0;
    for (size_t i = 0; i < in->nflags; i++)
        n += strcmp(in->flags[i].name, "mount") == 0;
    if (n == 0)
        return 0;
    s->mounts = calloc(n, sizeof *s->mounts);
    if (s->mounts == NULL)
        return CAIRN_E_NOMEM;
    unsigned nssh = 0;
    for (size_t i = 0; !rc && i < in->nflags; i++) {
        if (strcmp(in->flags[i].name, "mount") != 0)
            continue;
        struct mount_expand x = {w, in, stage_scope(st)};
        struct ck_run_mount *rm = &s->mounts[s->nmounts];
        rc = ck_mount_parse(in->flags[i].value ? in->flags[i].value : "",
                            mount_expand, &x, &rm->m, w->err);
        if (rc == CAIRN_E_PARSE || rc == CAIRN_E_TOOBIG) {
            char detail[CAIRN_ERR_MSG_MAX];
            snprintf(detail, sizeof detail, "%s", w->err->msg);
            cairn_err_set(w->err, rc, "%s:%d: RUN --mount=%.200s: %s",
                          w->df->name, in->line, in->flags[i].value, detail);
        }
        if (rc)
            break;
        s->nmounts++;
        rc =
            mount_finish(w, s, st, rm, rm->m.type == CK_MOUNT_SSH ? nssh++ : 0);
    }
    /* Two mounts on one target: the later would hide the earlier. */
    for (size_t i = 0; !rc && i < s->nmounts; i++)
        for (size_t k = i + 1; !rc && k < s->nmounts; k++)
            if (strcmp(s->mounts[i].m.target, s->mounts[k].m.target) == 0) {
                snprintf(msg, sizeof msg,
                         "RUN --mount: two mounts on target %.200s",
                         s->mounts[i].m.target);
                rc = fail(w, in, CAIRN_E_PARSE, msg);
            }
    return rc;
}

static int expand_flag(struct walker *w, struct ck_step *s,
                       struct stage_state *st, const char *name, char **out)
{
    const char *v = ck_instr_flag(s->instr, name, NULL);
    if (v == NULL)
        return 0;
    struct lookup_scope sc = stage_scope(st);
    return expand_in(w, s->instr, &sc, v, out);
}

/* Resolves a --from reference (COPY --from, RUN --mount from=): an
 * earlier stage by name or index, else an image through the resolver. */
static int resolve_from(struct walker *w, struct ck_step *s, const char *ref,
                        enum ck_from_kind *kind, size_t *stage,
                        struct ck_image_info *image, bool *unresolved)
{
    size_t cur = w->nstages - 1, idx;
    if (stage_lookup_index(w, ref, cur, &idx)) {
        *kind = CK_FROM_STAGE;
        *stage = idx;
        return 0;
    }
    if ((w->stages[cur].name && strcasecmp(w->stages[cur].name, ref) == 0) ||
        (strspn(ref, "0123456789") == strlen(ref) && ref[0]))
        return cairn_err_set(w->err, CAIRN_E_PARSE,
                             "%s:%d: invalid from flag value %s: a stage can "
                             "only copy from an earlier stage",
                             w->df->name, s->instr->line, ref);
    /* Stages are built in order, so a stage can only read earlier ones;
     * naming a later one is a mistake, not an image reference. */
    for (size_t i = 0; i < w->df->ninstrs; i++) {
        const struct ck_instr *f = &w->df->instrs[i];
        if (f->kind == CK_INSTR_FROM && f->nargs == 3 &&
            strcasecmp(f->args[2], ref) == 0)
            return cairn_err_set(w->err, CAIRN_E_PARSE,
                                 "%s:%d: invalid from flag value %s: stage "
                                 "\"%s\" is defined after its use",
                                 w->df->name, s->instr->line, ref, f->args[2]);
    }
    *kind = CK_FROM_IMAGE;
    int rc = 0;
    if (w->opts->resolve) {
        rc = w->opts->resolve(w->opts->resolve_arg, ref,
                              w->stages[cur].platform, image, w->err);
        if (rc == CAIRN_E_NOTFOUND && w->opts->allow_unresolved) {
            *unresolved = true;
            rc = 0;
        } else if (rc) {
            cairn_err_prefix(w->err, "%s:%d", w->df->name, s->instr->line);
        }
    } else if (w->opts->allow_unresolved) {
        *unresolved = true;
    } else {
        rc = cairn_err_set(w->err, CAIRN_E_NOTFOUND,
                           "%s:%d: image %s is not available", w->df->name,
                           s->instr->line, ref);
    }
    return rc;
}

/* COPY/ADD --exclude (repeatable) after expansion, and COPY --parents. */
static int copy_excludes(struct walker *w, struct ck_step *s,
                         struct stage_state *st)
{
    const struct ck_instr *in = s->instr;
    struct cairn_strvec ex;
    cairn_strvec_init(&ex);
    int rc = 0;
    for (size_t i = 0; !rc && i < in->nflags; i++) {
        if (strcmp(in->flags[i].name, "exclude") != 0)
            continue;
        struct lookup_scope sc = stage_scope(st);
        char *v = NULL;
        rc = expand_in(w, in, &sc, in->flags[i].value ? in->flags[i].value : "",
                       &v);
        if (!rc && v[0] == '\0')
            rc = fail(w, in, CAIRN_E_PARSE, "--exclude requires a pattern");
        if (!rc)
            rc = cairn_strvec_push(&ex, v);
        free(v);
    }
    bool present = false;
    const char *parents = ck_instr_flag(in, "parents", &present);
    s->parents =
        present && (parents == NULL || strcasecmp(parents, "true") == 0 ||
                    strcmp(parents, "1") == 0);
    if (rc) {
        cairn_strvec_free(&ex);
        return rc;
    }
    s->excludes = cairn_strvec_take(&ex, &s->nexcludes);
    return s->nexcludes && s->excludes == NULL ? CAIRN_E_NOMEM : 0;
}

static int do_copy(struct walker *w, struct ck_step *s,
                   struct stage_state *st)
{
    int rc = expand_args(w, s, st);
    if (!rc)
        rc = expand_flag(w, s, st, "chown", &s->chown);
    if (!rc)
        rc = expand_flag(w, s, st, "chmod", &s->chmod);
    if (rc)
        return rc;
    if (s->nwords < 2)
        return fail(w, s->instr, CAIRN_E_PARSE,
                    s->instr->kind == CK_INSTR_ADD
                        ? "ADD requires at least two arguments"
                        : "COPY requires at least two arguments");
    rc = copy_excludes(w, s, st);
    if (rc)
        return rc;
    bool present = false;
    const char *from = ck_instr_flag(s->instr, "from", &present);
    if (!present)
        return 0;
    if (from == NULL || from[0] == '\0')
        return fail(w, s->instr, CAIRN_E_PARSE, "--from requires a value");
    struct lookup_scope sc = stage_scope(st);
    char *ref = NULL;
    rc = expand_in(w, s->instr, &sc, from, &ref);
    if (rc)
        return rc;
    s->from_ref = ref;
    return resolve_from(w, s, ref, &s->from_kind, &s->from_stage,
                        &s->from_image, &s->from_unresolved);
}

static const struct {
    enum ck_instr_kind kind;
    step_fn apply;
    bool layer; /* makes a filesystem layer */
} handlers[] = {
    {CK_INSTR_FROM, NULL, false},
    {CK_INSTR_RUN, do_run, true},
    {CK_INSTR_CMD, copy_args, false},
    {CK_INSTR_LABEL, expand_args, false},
    {CK_INSTR_MAINTAINER, copy_args, false},
    {CK_INSTR_EXPOSE, expand_args, false},
    {CK_INSTR_ENV, do_env, false},
    {CK_INSTR_ADD, do_copy, true},
    {CK_INSTR_COPY, do_copy, true},
    {CK_INSTR_ENTRYPOINT, copy_args, false},
    {CK_INSTR_VOLUME, expand_args, false},
    {CK_INSTR_USER, do_user, false},
    {CK_INSTR_WORKDIR, do_workdir, false},
    {CK_INSTR_ARG, do_arg, false},
    {CK_INSTR_ONBUILD, do_onbuild, false},
    {CK_INSTR_STOPSIGNAL, expand_args, false},
    {CK_INSTR_HEALTHCHECK, copy_args, false},
    {CK_INSTR_SHELL, do_shell, false},
};

static step_fn handler_for(enum ck_instr_kind kind)
{
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
        if (handlers[i].kind == kind)
            return handlers[i].apply;
    return NULL;
}

/* The instruction as printed: keyword, flags (with the values used), and
 * the expanded words. */
static int step_render(struct walker *w, struct ck_step *s)
{
    (void)w;
    const struct ck_instr *in = s->instr;
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    int rc = cairn_buf_puts(&b, ck_instr_name(in->kind));
    for (size_t i = 0; !rc && i < in->nflags; i++) {
        const char *name = in->flags[i].name;
        if (in->kind == CK_INSTR_FROM)
            continue; /* FROM prints its platform below */
        if (strcmp(name, "chown") == 0 && s->chown)
            rc = cairn_buf_printf(&b, " --chown=%s", s->chown);
        else if (strcmp(name, "chmod") == 0 && s->chmod)
            rc = cairn_buf_printf(&b, " --chmod=%s", s->chmod);
        else if (strcmp(name, "from") == 0 && s->from_ref)
            rc = cairn_buf_printf(&b, " --from=%s", s->from_ref);
        else if (in->flags[i].value)
            rc = cairn_buf_printf(&b, " --%s=%s", in->flags[i].name,
                                  in->flags[i].value);
        else
            rc = cairn_buf_printf(&b, " --%s", in->flags[i].name);
    }
    if (rc)
        goto out;
    switch (in->kind) {
    case CK_INSTR_ENV:
    case CK_INSTR_LABEL:
        for (size_t i = 0; !rc && i + 1 < s->nwords; i += 2) {
            rc = cairn_buf_printf(&b, " %s=", s->words[i]);
            if (!rc)
                rc = put_value(&b, s->words[i + 1]);
        }
        break;
    case CK_INSTR_ARG:
        for (size_t i = 0; !rc && i < in->nargs; i++)
            rc = cairn_buf_printf(&b, " %s", in->args[i]);
        break;
    case CK_INSTR_ONBUILD:
        rc = cairn_buf_printf(&b, " %s", s->words[0]);
        break;
    case CK_INSTR_HEALTHCHECK:
        if (in->json && s->nwords > 1) {
            rc = cairn_buf_printf(&b, " %s ", s->words[0]);
            if (!rc)
                rc = put_json_array(&b, s->words + 1, s->nwords - 1);
            break;
        }
        for (size_t i = 0; !rc && i < s->nwords; i++)
            rc = cairn_buf_printf(&b, " %s", s->words[i]);
        break;
    default:
        if (in->json) {
            rc = cairn_buf_putc(&b, ' ');
            if (!rc)
                rc = put_json_array(&b, s->words, s->nwords);
        } else {
            for (size_t i = 0; !rc && i < s->nwords; i++)
                rc = cairn_buf_printf(&b, " %s", s->words[i]);
        }
        break;
    }
out:
    if (rc) {
        cairn_buf_free(&b);
        return rc;
    }
    s->text = cairn_buf_take(&b);
    return s->text ? 0 : CAIRN_E_NOMEM;
}

static int run_instr(struct walker *w, const struct ck_instr *in,
                     bool from_onbuild);

/* Runs the ONBUILD triggers a base carries, right after its FROM. */
static int run_triggers(struct walker *w, char *const *triggers, size_t n,
                        const struct ck_instr *from)
{
    for (size_t i = 0; i < n; i++) {
        struct ck_dockerfile *df = NULL;
        struct cairn_err e;
        cairn_err_clear(&e);
        int rc = ck_dockerfile_parse(w->df->name, triggers[i],
                                     strlen(triggers[i]), &df, &e);
        if (rc == 0 && df->ninstrs != 1)
            rc = CAIRN_E_PARSE;
        if (rc) {
            ck_dockerfile_free(df);
            return cairn_err_set(w->err, rc,
                                 "%s:%d: bad ONBUILD trigger of the base "
                                 "image \"%s\": %s",
                                 w->df->name, from->line, triggers[i], e.msg);
        }
        struct ck_dockerfile **no =
            realloc(w->owned, (w->nowned + 1) * sizeof *no);
        if (no == NULL) {
            ck_dockerfile_free(df);
            return CAIRN_E_NOMEM;
        }
        w->owned = no;
        w->owned[w->nowned++] = df;
        rc = run_instr(w, &df->instrs[0], true);
        if (rc)
            return rc;
    }
    return 0;
}

/* FROM ... AS name: the stage's name, lowercased, checked and unique. */
static int stage_name_set(struct walker *w, const struct ck_instr *in,
                          struct ck_stage *stage, size_t idx)
{
    char *name = strdup(in->args[2]);
    if (name == NULL)
        return CAIRN_E_NOMEM;
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    size_t dup;
    if (!valid_stage_name(name)) {
        cairn_err_set(w->err, CAIRN_E_PARSE,
                      "%s:%d: invalid name for build stage: \"%s\", name "
                      "can't start with a number or contain symbols",
                      w->df->name, in->line, in->args[2]);
        free(name);
        return CAIRN_E_PARSE;
    }
    if (stage_lookup(w, name, idx, &dup)) {
        cairn_err_set(w->err, CAIRN_E_PARSE,
                      "%s:%d: duplicate stage name \"%s\"", w->df->name,
                      in->line, name);
        free(name);
        return CAIRN_E_PARSE;
    }
    stage->name = name;
    return 0;
}

/* FROM an earlier stage (bs): start from its final state. */
static int stage_from_stage(struct stage_state *st,
                            const struct stage_state *bs)
{
    int rc = ck_vars_copy(&st->env, &bs->env);
    free(st->workdir);
    free(st->user);
    st->workdir = strdup(bs->workdir);
    st->user = strdup(bs->user);
    if (!rc && (st->workdir == NULL || st->user == NULL))
        rc = CAIRN_E_NOMEM;
    for (size_t i = 0; !rc && i < bs->shell.n; i++)
        rc = cairn_strvec_push(&st->shell, bs->shell.v[i]);
    return rc;
}

/* FROM an image: resolves it (or leaves it unresolved where the caller
 * allows) and starts from its config. *triggers gets its ONBUILD
 * triggers. */
static int stage_from_image(struct walker *w, const struct ck_instr *in,
                            struct ck_stage *stage, struct stage_state *st,
                            char *const **triggers, size_t *ntriggers)
{
    int rc;
    if (w->opts->resolve) {
        rc = w->opts->resolve(w->opts->resolve_arg, stage->base_ref,
                              stage->platform, &stage->base, w->err);
        if (rc == CAIRN_E_NOTFOUND && w->opts->allow_unresolved) {
            stage->base_unresolved = true;
        } else if (rc) {
            cairn_err_prefix(w->err, "%s:%d", w->df->name, in->line);
            return rc;
        }
    } else if (w->opts->allow_unresolved) {
        stage->base_unresolved = true;
    } else {
        return cairn_err_set(w->err, CAIRN_E_NOTFOUND,
                             "%s:%d: image %s is not available", w->df->name,
                             in->line, stage->base_ref);
    }
    if (stage->base_unresolved)
        return 0;
    rc = ck_vars_set_kv_list(&st->env, stage->base.env, stage->base.nenv);
    if (!rc && stage->base.workdir && stage->base.workdir[0]) {
        free(st->workdir);
        st->workdir = strdup(stage->base.workdir);
    }
    if (!rc && stage->base.user) {
        free(st->user);
        st->user = strdup(stage->base.user);
    }
    if (!rc && (st->workdir == NULL || st->user == NULL))
        rc = CAIRN_E_NOMEM;
    for (size_t i = 0; !rc && i < stage->base.nshell; i++)
        rc = cairn_strvec_push(&st->shell, stage->base.shell[i]);
    if (rc)
        return rc;
    *triggers = stage->base.onbuild;
    *ntriggers = stage->base.nonbuild;
    return 0;
}

/* What every stage has when its base sets none: like BuildKit, a PATH
 * (the default one, so ENV PATH=/x:$PATH extends it), and a shell. */
static int stage_defaults(struct stage_state *st)
{
    int rc = 0;
    if (ck_vars_find(&st->env, "PATH", 4) == NULL)
        rc = ck_vars_set(&st->env, "PATH", CK_DEFAULT_PATH);
    if (!rc && st->shell.n == 0) {
        rc = cairn_strvec_push(&st->shell, "/bin/sh");
        if (!rc)
            rc = cairn_strvec_push(&st->shell, "-c");
    }
    return rc;
}

/* The FROM step that opens stage, its text normalised ("FROM
 * [--platform=P] REF [AS NAME]"). */
static int stage_from_step(struct walker *w, const struct ck_instr *in,
                           struct ck_stage *stage, struct stage_state *st,
                           bool has_platform)
{
    struct ck_step *s = step_new(w, in, false);
    if (s == NULL)
        return CAIRN_E_NOMEM;
    stage->first_step = w->nsteps - 1;
    s->words = cairn_strv_dup(&stage->base_ref, 1);
    s->nwords = 1;
    if (s->words == NULL)
        return CAIRN_E_NOMEM;
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    int rc = cairn_buf_puts(&b, "FROM");
    if (!rc && has_platform)
        rc = cairn_buf_printf(&b, " --platform=%s", stage->platform);
    if (!rc)
        rc = cairn_buf_printf(&b, " %s", stage->base_ref);
    if (!rc && stage->name)
        rc = cairn_buf_printf(&b, " AS %s", stage->name);
    if (rc) {
        cairn_buf_free(&b);
        return rc;
    }
    s->text = cairn_buf_take(&b);
    if (s->text == NULL)
        return CAIRN_E_NOMEM;
    return step_snapshot(w, s, st);
}

static int start_stage(struct walker *w, const struct ck_instr *in)
{
    if (in->nargs != 1 && in->nargs != 3)
        return fail(w, in, CAIRN_E_PARSE,
                    "FROM requires either one or three arguments");
    struct ck_stage *stage = stage_new(w);
    if (stage == NULL)
        return CAIRN_E_NOMEM;
    size_t idx = w->nstages - 1;
    struct stage_state *st = &w->states[idx];
    struct lookup_scope sc = {&w->global, &w->predefined};
    int rc = expand_in(w, in, &sc, in->args[0], &stage->base_ref);
    if (rc)
        return rc;
    if (stage->base_ref[0] == '\0')
        return fail(w, in, CAIRN_E_PARSE, "FROM requires an image name");
    const char *plat = ck_instr_flag(in, "platform", NULL);
    if (plat != NULL)
        rc = expand_in(w, in, &sc, plat, &stage->platform);
    else
        stage->platform = strdup(w->opts->platform ? w->opts->platform
                                                   : "linux/amd64");
    if (rc || stage->platform == NULL)
        return rc ? rc : CAIRN_E_NOMEM;
    if (in->nargs == 3 && (rc = stage_name_set(w, in, stage, idx)) != 0)
        return rc;

    st->workdir = strdup("/");
    st->user = strdup("");
    if (st->workdir == NULL || st->user == NULL)
        return CAIRN_E_NOMEM;
    char *const *triggers = NULL;
    size_t ntriggers = 0;
    size_t base;
    if (strcmp(stage->base_ref, "scratch") == 0) {
        stage->base_kind = CK_BASE_SCRATCH;
    } else if (stage_lookup(w, stage->base_ref, idx, &base)) {
        stage->base_kind = CK_BASE_STAGE;
        stage->base_stage = base;
        rc = stage_from_stage(st, &w->states[base]);
        triggers = w->states[base].onbuild.v;
        ntriggers = w->states[base].onbuild.n;
    } else {
        stage->base_kind = CK_BASE_IMAGE;
        rc = stage_from_image(w, in, stage, st, &triggers, &ntriggers);
    }
    if (!rc)
        rc = stage_defaults(st);
    if (!rc)
        rc = stage_from_step(w, in, stage, st, plat != NULL);
    if (rc)
        return rc;
    /* Triggers fire once: the new stage's image does not carry them on. */
    struct cairn_strvec copy;
    cairn_strvec_init(&copy);
    for (size_t i = 0; !rc && i < ntriggers; i++)
        rc = cairn_strvec_push(&copy, triggers[i]);
    if (!rc)
        rc = run_triggers(w, copy.v, copy.n, in);
    cairn_strvec_free(&copy);
    return rc;
}

static int run_instr(struct walker *w, const struct ck_instr *in,
                     bool from_onbuild)
{
    if (in->kind == CK_INSTR_FROM) {
        if (from_onbuild)
            return fail(w, in, CAIRN_E_PARSE,
                        "FROM isn't allowed as an ONBUILD trigger");
        return start_stage(w, in);
    }
    if (w->nstages == 0) {
        if (in->kind != CK_INSTR_ARG)
            return fail(w, in, CAIRN_E_PARSE, "no build stage in current context");
        /* A global ARG: visible to FROM lines, and to stages that
         * redeclare it. */
        for (size_t i = 0; i < in->nargs; i++) {
            const char *word = in->args[i];
            const char *eq = strchr(word, '=');
            char *name = strndup(word, eq ? (size_t)(eq - word) : strlen(word));
            char *value = NULL;
            int rc = name ? 0 : CAIRN_E_NOMEM;
            struct ck_var *ba =
                rc ? NULL
                   : ck_vars_find(&w->build_args, name, strlen(name));
            if (!rc && name[0] == '\0')
                rc = fail(w, in, CAIRN_E_PARSE, "ARG names can not be blank");
            else if (!rc && ba != NULL) {
                ba->used = true;
                value = strdup(ba->value);
            } else if (!rc && eq != NULL) {
                struct lookup_scope sc = {&w->global, &w->predefined};
                rc = expand_in(w, in, &sc, eq + 1, &value);
            }
            if (!rc)
                rc = ck_vars_set(&w->global, name, value);
            free(name);
            free(value);
            if (rc)
                return rc;
        }
        return 0;
    }
    struct stage_state *st = &w->states[w->nstages - 1];
    struct ck_step *s = step_new(w, in, from_onbuild);
    if (s == NULL)
        return CAIRN_E_NOMEM;
    step_fn fn = handler_for(in->kind);
    int rc = fn ? fn(w, s, st) : 0;
    if (!rc)
        rc = step_render(w, s);
    if (!rc)
        rc = step_snapshot(w, s, st);
    return rc;
}

/* Marks the stages the target needs: its base chain, COPY --from and
 * RUN --mount from=. */
static void mark_needed(struct ck_plan *p, size_t i)
{
    if (p->stages[i].needed)
        return;
    p->stages[i].needed = true;
    if (p->stages[i].base_kind == CK_BASE_STAGE)
        mark_needed(p, p->stages[i].base_stage);
    for (size_t k = 0; k < p->nsteps; k++) {
        if (p->steps[k].stage != i)
            continue;
        if (p->steps[k].from_kind == CK_FROM_STAGE)
            mark_needed(p, p->steps[k].from_stage);
        for (size_t j = 0; j < p->steps[k].nmounts; j++)
            if (p->steps[k].mounts[j].from_kind == CK_FROM_STAGE)
                mark_needed(p, p->steps[k].mounts[j].from_stage);
    }
}

static int parse_build_args(struct walker *w)
{
    for (size_t i = 0; i < w->opts->nbuild_args; i++) {
        const char *a = w->opts->build_args[i];
        const char *eq = strchr(a, '=');
        char *name = strndup(a, eq ? (size_t)(eq - a) : strlen(a));
        if (name == NULL)
            return CAIRN_E_NOMEM;
        if (name[0] == '\0') {
            free(name);
            return cairn_err_set(w->err, CAIRN_E_INVAL,
                                 "invalid --build-arg \"%s\": expected KEY=VALUE", a);
        }
        /* "--build-arg K" takes K from the environment, or is skipped. */
        const char *value = eq ? eq + 1 : getenv(name);
        int rc = value ? ck_vars_set(&w->build_args, name, value) : 0;
        free(name);
        if (rc)
            return rc;
    }
    return 0;
}

static int set_platform_args(struct walker *w)
{
    const char *plat = w->opts->platform ? w->opts->platform : "linux/amd64";
    char os[64] = "", arch[64] = "", variant[64] = "";
    const char *s1 = strchr(plat, '/');
    const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    size_t oslen = s1 ? (size_t)(s1 - plat) : strlen(plat);
    if (oslen >= sizeof os || !s1)
        return cairn_err_set(w->err, CAIRN_E_INVAL,
                             "invalid platform \"%s\": expected os/arch", plat);
    memcpy(os, plat, oslen);
    size_t alen = s2 ? (size_t)(s2 - s1 - 1) : strlen(s1 + 1);
    if (alen >= sizeof arch || (s2 && strlen(s2 + 1) >= sizeof variant))
        return cairn_err_set(w->err, CAIRN_E_INVAL, "invalid platform \"%s\"", plat);
    memcpy(arch, s1 + 1, alen);
    if (s2)
        memcpy(variant, s2 + 1, strlen(s2 + 1) + 1);
    const char *pairs[][2] = {
        {"TARGETPLATFORM", plat}, {"TARGETOS", os}, {"TARGETARCH", arch},
        {"TARGETVARIANT", variant}, {"BUILDPLATFORM", plat}, {"BUILDOS", os},
        {"BUILDARCH", arch}, {"BUILDVARIANT", variant},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        int rc = ck_vars_set(&w->predefined, pairs[i][0], pairs[i][1]);
        if (rc)
            return rc;
    }
    return 0;
}

static void walker_free(struct walker *w)
{
    ck_vars_free(&w->build_args);
    ck_vars_free(&w->global);
    ck_vars_free(&w->predefined);
    for (size_t i = 0; i < w->nstages; i++)
        stage_state_free(&w->states[i]);
    free(w->states);
}

int ck_plan_build(const struct ck_dockerfile *df,
                  const struct ck_plan_opts *opts, struct ck_plan **out,
                  struct cairn_err *err)
{
    struct walker w;
    memset(&w, 0, sizeof w);
    w.df = df;
    w.opts = opts;
    w.err = err;
    struct ck_plan *p = calloc(1, sizeof *p);
    if (p == NULL)
        return CAIRN_E_NOMEM;
    p->name = df->name;
    p->has_source_date_epoch = opts->has_source_date_epoch;
    p->source_date_epoch = opts->source_date_epoch;
    int rc = 0;
    if (opts->has_source_date_epoch && opts->source_date_epoch < 0)
        rc = cairn_err_set(err, CAIRN_E_INVAL,
                           "invalid source date epoch %lld: must be >= 0",
                           (long long)opts->source_date_epoch);
    if (!rc)
        rc = parse_build_args(&w);
    if (!rc)
        rc = set_platform_args(&w);
    for (size_t i = 0; !rc && i < df->ninstrs; i++)
        rc = run_instr(&w, &df->instrs[i], false);
    if (!rc && w.nstages == 0)
        rc = cairn_err_set(err, CAIRN_E_PARSE,
                           "%s: the Dockerfile has no FROM instruction",
                           df->name);
    p->stages = w.stages;
    p->nstages = w.nstages;
    p->steps = w.steps;
    p->nsteps = w.nsteps;
    p->state_bytes = w.state_bytes;
    p->owned = w.owned;
    p->nowned = w.nowned;
    if (rc)
        goto out;

    for (size_t i = 0; i < p->nsteps; i++)
        p->stages[p->steps[i].stage].nsteps++;
    p->target = p->nstages - 1;
    if (opts->target != NULL && opts->target[0] != '\0') {
        size_t t;
        bool found = false;
        for (t = 0; t < p->nstages; t++)
            if (p->stages[t].name &&
                strcasecmp(p->stages[t].name, opts->target) == 0) {
                found = true;
                break;
            }
        if (!found) {
            rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                               "target stage \"%s\" could not be found",
                               opts->target);
            goto out;
        }
        p->target = t;
    }
    mark_needed(p, p->target);
    int number = 0;
    for (size_t i = 0; i < p->nsteps; i++)
        if (p->stages[p->steps[i].stage].needed)
            p->steps[i].number = ++number;

    struct cairn_strvec unused;
    cairn_strvec_init(&unused);
    for (size_t i = 0; !rc && i < w.build_args.n; i++)
        if (!w.build_args.v[i].used && !is_proxy_arg(w.build_args.v[i].name))
            rc = cairn_strvec_push(&unused, w.build_args.v[i].name);
    p->unused_build_args = cairn_strvec_take(&unused, &p->nunused_build_args);
    cairn_strvec_free(&unused);
    if (!rc && p->unused_build_args == NULL)
        rc = CAIRN_E_NOMEM;
out:
    walker_free(&w);
    if (rc) {
        ck_plan_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void ck_plan_free(struct ck_plan *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nsteps; i++)
        step_free(&p->steps[i]);
    free(p->steps);
    for (size_t i = 0; i < p->nstages; i++) {
        free(p->stages[i].name);
        free(p->stages[i].base_ref);
        free(p->stages[i].platform);
        ck_image_info_clear(&p->stages[i].base);
    }
    free(p->stages);
    cairn_strv_free(p->unused_build_args, p->nunused_build_args);
    for (size_t i = 0; i < p->nowned; i++)
        ck_dockerfile_free(p->owned[i]);
    free(p->owned);
    free(p);
}
