#include "client/engine/build.h"

#include "cachekey/context.h"
#include "cachekey/dockerfile.h"
#include "cachekey/dockerignore.h"
#include "cachekey/exclude.h"
#include "cachekey/key.h"
#include "cachekey/plan.h"
#include "cachekey/statcache.h"
#include "client/engine/explain.h"
#include "client/store/image.h"
#include "client/sandbox/sandbox.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <ctype.h>
#include <stddef.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

/* What a stage has produced so far: its image config and layers. */
struct stage_out {
    struct cairn_image_config cfg;
    struct cairn_layer_desc *layers;
    size_t nlayers;
    bool cmd_set; /* CMD given in this stage (ENTRYPOINT keeps it) */
    char **snapshots; /* snapshot dirs of layers, filled lazily */
};

struct build {
    struct cairn_store *st;
    const struct cairn_build_opts *o;
    struct cairn_build_stats *stats;
    struct cairn_err *err;
    FILE *out;
    struct ck_dockerfile *df;
    struct ck_plan *plan;
    struct ck_keys *keys;
    struct ck_context *ctx;
    struct stage_out *stages;
    int64_t now;
    int total;
    bool *remote_hit; /* per plan step: taken from the shared cache */
    /* The shared cache's view of each plan step (NULL: not looked up):
     * pointers into remote_steps. */
    struct cairn_cache_step **remote;
    struct cairn_cache_step *remote_steps;
    struct cairn_explain_build last; /* tags[0]'s last build (--explain) */
    bool have_last;
};

/* ---- small helpers ------------------------------------------------------ */

static void stage_out_free(struct stage_out *s)
{
    cairn_image_config_clear(&s->cfg);
    free(s->layers);
    if (s->snapshots)
        cairn_strv_free(s->snapshots, s->nlayers);
    memset(s, 0, sizeof *s);
}

static int layers_push(struct stage_out *s, const struct cairn_layer_desc *d)
{
    struct cairn_layer_desc *nl =
        realloc(s->layers, (s->nlayers + 1) * sizeof *nl);
    if (nl == NULL)
        return CAIRN_E_NOMEM;
    s->layers = nl;
    char **ns = NULL;
    if (s->snapshots) {
        ns = realloc(s->snapshots, (s->nlayers + 2) * sizeof *ns);
        if (ns == NULL)
            return CAIRN_E_NOMEM;
        ns[s->nlayers] = NULL;
        ns[s->nlayers + 1] = NULL;
        s->snapshots = ns;
    }
    s->layers[s->nlayers++] = *d;
    return 0;
}

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

static int rm_cb(const char *path, const struct stat *sb, int flag,
                 struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Removes a temporary tree (best effort: it is in the store's tmp/). */
static void rm_tree(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Short id as Docker prints it: 12 hex digits. */
static void short_id(const char *hex_or_digest, char out[13])
{
    const char *h = strncmp(hex_or_digest, "sha256:", 7) == 0
                        ? hex_or_digest + 7
                        : hex_or_digest;
    snprintf(out, 13, "%.12s", h);
}

static int step_fail(struct build *b, const struct ck_step *s, int rc,
                     const char *what)
{
    return cairn_err_set(b->err, rc, "step %d/%d (%s:%d %s): %s", s->number,
                         b->total, b->df->name, s->instr->line,
                         ck_instr_name(s->instr->kind), what);
}

/* ---- base images -------------------------------------------------------- */

static int load_image(struct build *b, const char *manifest_digest,
                      struct cairn_manifest *m, struct cairn_image_config *c)
{
    char *json = NULL;
    size_t len = 0;
    int rc = cairn_store_blob_read(b->st, manifest_digest, CAIRN_IMAGE_MAX_JSON,
                                   &json, &len, b->err);
    if (rc)
        return rc;
    rc = cairn_manifest_parse(json, len, m, b->err);
    free(json);
    if (rc)
        return rc;
    rc = cairn_store_blob_read(b->st, m->config_digest, CAIRN_IMAGE_MAX_JSON,
                               &json, &len, b->err);
    if (rc)
        return rc;
    rc = cairn_image_config_parse(json, len, c, b->err);
    free(json);
    if (rc)
        return rc;
    if (c->ndiff_ids != m->nlayers)
        return cairn_err_set(b->err, CAIRN_E_CORRUPT,
                             "image %s: %zu layers but %zu diff_ids",
                             manifest_digest, m->nlayers, c->ndiff_ids);
    for (size_t i = 0; i < m->nlayers; i++)
        snprintf(m->layers[i].diff_id, sizeof m->layers[i].diff_id, "%s",
                 c->diff_ids[i]);
    return 0;
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
            "'cairn import ROOTFS.tar %s' or 'cairn load -i IMAGE.tar' "
            "(what docker save writes)",
            ref, ref);
    if (rc)
        return cairn_err_set(err, rc, "%s", e.msg);
    struct cairn_manifest m;
    struct cairn_image_config c;
    memset(&m, 0, sizeof m);
    memset(&c, 0, sizeof c);
    rc = load_image(b, row.manifest_digest, &m, &c);
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

/* ---- snapshots and the parent's file system ----------------------------- */

static void remote_ensure_blobs(struct build *b, const struct stage_out *s);

/* Makes sure every layer of s has its snapshot directory. */
static int stage_snapshots(struct build *b, struct stage_out *s)
{
    remote_ensure_blobs(b, s);
    if (s->snapshots == NULL) {
        s->snapshots = calloc(s->nlayers + 1, sizeof *s->snapshots);
        if (s->snapshots == NULL)
            return CAIRN_E_NOMEM;
    }
    for (size_t i = 0; i < s->nlayers; i++) {
        if (s->snapshots[i])
            continue;
        char path[4096];
        int rc = cairn_store_snapshot(b->st, &s->layers[i], path, sizeof path,
                                      b->err);
        if (rc)
            return rc;
        if ((s->snapshots[i] = strdup(path)) == NULL)
            return CAIRN_E_NOMEM;
    }
    return 0;
}

/* Records *path (malloc'd, taken: *path becomes NULL) as the snapshot of
 * layer i of s, made by the step that wrote the layer. */
static int stage_snapshot_take(struct stage_out *s, size_t i, char **path)
{
    if (s->snapshots == NULL) {
        s->snapshots = calloc(s->nlayers + 1, sizeof *s->snapshots);
        if (s->snapshots == NULL)
            return CAIRN_E_NOMEM;
    }
    free(s->snapshots[i]);
    s->snapshots[i] = *path;
    *path = NULL;
    return 0;
}

/* Lower dirs for overlayfs: top-most first. */
static int stage_lowers(struct build *b, struct stage_out *s,
                        const char ***out)
{
    int rc = stage_snapshots(b, s);
    if (rc)
        return rc;
    const char **v = calloc(s->nlayers + 1, sizeof *v);
    if (v == NULL)
        return CAIRN_E_NOMEM;
    for (size_t i = 0; i < s->nlayers; i++)
        v[i] = s->snapshots[s->nlayers - 1 - i];
    *out = v;
    return 0;
}

/* lstat of rel under one snapshot directory without following a symlink
 * on the way: a layer's absolute link names a path of the image, not of
 * the host. Returns 0, ENOENT (not in this layer: look below), or
 * ENOTDIR/ELOOP (a file, whiteout or link in this layer hides anything
 * below it, as in overlayfs). Without openat2 (before Linux 5.6) it is a
 * plain lstat. */
static int snapshot_lstat(const char *snap, const char *rel, struct stat *st)
{
    int dfd = open(snap, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return ENOENT;
    struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
                           .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH};
    int fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof how);
    int e = 0;
    if (fd >= 0) {
        if (fstat(fd, st) != 0)
            e = errno;
        close(fd);
    } else if (errno == ENOSYS) {
        e = fstatat(dfd, rel, st, AT_SYMLINK_NOFOLLOW) != 0 ? errno : 0;
    } else {
        e = errno;
    }
    close(dfd);
    if (e == ENOENT || e == 0)
        return e;
    return e == ENOTDIR || e == ELOOP || e == EXDEV ? ENOTDIR : ENOENT;
}

/* Looks path (relative) up through the stage's layers, top-most first,
 * as overlayfs would (a 0/0 char device is a whiteout). Returns 0 and fills
 * st, or CAIRN_E_NOTFOUND. */
static int stage_lstat(struct build *b, struct stage_out *s, const char *rel,
                       struct stat *st, char *found, size_t flen)
{
    if (s->nlayers == 0)
        return CAIRN_E_NOTFOUND;
    int rc = stage_snapshots(b, s);
    if (rc)
        return rc;
    for (size_t i = s->nlayers; i-- > 0;) {
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", s->snapshots[i], rel);
        int e = snapshot_lstat(s->snapshots[i], rel, st);
        if (e == ENOENT)
            continue;
        if (e != 0)
            return CAIRN_E_NOTFOUND; /* hidden by a non-directory above */
        if (S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0))
            return CAIRN_E_NOTFOUND;
        if (found)
            snprintf(found, flen, "%s", p);
        return 0;
    }
    return CAIRN_E_NOTFOUND;
}

/* Finds name in a passwd or group file of the stage's root: the numeric
 * id of the entry whose first field is name. */
static int lookup_id(struct build *b, struct stage_out *s, const char *file,
                     const char *name, unsigned *id)
{
    struct stat st;
    char path[8192];
    if (stage_lstat(b, s, file, &st, path, sizeof path) != 0)
        return CAIRN_E_NOTFOUND;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return CAIRN_E_NOTFOUND;
    char line[1024];
    int rc = CAIRN_E_NOTFOUND;
    size_t n = strlen(name);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, name, n) != 0 || line[n] != ':')
            continue;
        char *p = strchr(line + n + 1, ':'); /* skip password */
        if (p == NULL)
            break;
        char *end = NULL;
        unsigned long v = strtoul(p + 1, &end, 10);
        if (end != p + 1 && v <= 0x7fffffff) {
            *id = (unsigned)v;
            rc = 0;
        }
        break;
    }
    fclose(f);
    return rc;
}

/* HOME for a RUN as user ("", "name", "uid", with an optional ":group"),
 * as runc sets it: the home field of the user's /etc/passwd entry in the
 * stage's root (matched by name, or by uid when numeric), "/" when there
 * is no entry. */
static void passwd_home(struct build *b, struct stage_out *s, const char *user,
                        char *out, size_t cap)
{
    snprintf(out, cap, "/");
    char name[256];
    if (user == NULL)
        user = "";
    size_t n = strcspn(user, ":");
    if (n >= sizeof name)
        return;
    memcpy(name, user, n);
    name[n] = '\0';
    if (n == 0)
        snprintf(name, sizeof name, "0");
    char *end = NULL;
    unsigned long uid = strtoul(name, &end, 10);
    bool numeric = *end == '\0';
    struct stat st;
    char path[8192];
    if (stage_lstat(b, s, "etc/passwd", &st, path, sizeof path) != 0)
        return;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* name:password:uid:gid:gecos:home:shell */
        char *field[7] = {line};
        size_t nf = 1;
        for (char *p = line; *p && nf < 7; p++)
            if (*p == ':') {
                *p = '\0';
                field[nf++] = p + 1;
            }
        if (nf < 6)
            continue;
        bool hit = numeric ? (strtoul(field[2], &end, 10) == uid &&
                              end != field[2] && *end == '\0')
                           : strcmp(field[0], name) == 0;
        if (hit) {
            if (field[5][0] != '\0')
                snprintf(out, cap, "%s", field[5]);
            break;
        }
    }
    fclose(f);
}

/* --chown=user[:group] by name or id, names through the parent's
 * /etc/passwd and /etc/group (as Docker does). */
static int resolve_chown(struct build *b, struct stage_out *s,
                         const struct ck_step *step, uid_t *uid, gid_t *gid)
{
    *uid = 0;
    *gid = 0;
    if (step->chown == NULL || step->chown[0] == '\0')
        return 0;
    char user[256], group[256] = "";
    const char *colon = strchr(step->chown, ':');
    size_t ul = colon ? (size_t)(colon - step->chown) : strlen(step->chown);
    if (ul >= sizeof user || (colon && strlen(colon + 1) >= sizeof group))
        return step_fail(b, step, CAIRN_E_INVAL, "--chown value too long");
    memcpy(user, step->chown, ul);
    user[ul] = '\0';
    if (colon)
        memcpy(group, colon + 1, strlen(colon + 1) + 1);
    char *end = NULL;
    unsigned id = 0;
    unsigned long v = strtoul(user, &end, 10);
    if (user[0] && *end == '\0') {
        *uid = (uid_t)v;
        *gid = (gid_t)v; /* Docker: a lone uid also sets the gid */
    } else if (lookup_id(b, s, "etc/passwd", user, &id) == 0) {
        *uid = id;
        unsigned g = 0;
        /* The user's primary group is the 4th passwd field. */
        struct stat st;
        char path[8192];
        if (stage_lstat(b, s, "etc/passwd", &st, path, sizeof path) == 0) {
            FILE *f = fopen(path, "r");
            char line[1024];
            while (f && fgets(line, sizeof line, f)) {
                if (strncmp(line, user, ul) == 0 && line[ul] == ':') {
                    char *p = line;
                    for (int k = 0; k < 3 && p; k++)
                        p = strchr(p + 1, ':');
                    if (p)
                        g = (unsigned)strtoul(p + 1, NULL, 10);
                    break;
                }
            }
            if (f)
                fclose(f);
        }
        *gid = g;
    } else {
        char msg[800];
        snprintf(msg, sizeof msg,
                 "unable to convert uid/gid chown string to host mapping: "
                 "can't find uid for user %s: no such user: %s",
                 user, user);
        return step_fail(b, step, CAIRN_E_NOTFOUND, msg);
    }
    if (group[0]) {
        v = strtoul(group, &end, 10);
        if (*end == '\0') {
            *gid = (gid_t)v;
        } else if (lookup_id(b, s, "etc/group", group, &id) == 0) {
            *gid = id;
        } else {
            char msg[800];
            snprintf(msg, sizeof msg,
                     "unable to convert uid/gid chown string to host "
                     "mapping: can't find gid for group %s: no such group: %s",
                     group, group);
            return step_fail(b, step, CAIRN_E_NOTFOUND, msg);
        }
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
                rc = step_fail(b, s, CAIRN_E_PARSE, "bad HEALTHCHECK duration");
            else
                *(int64_t *)((char *)h + durs[i].off) = ns;
        }
        const char *r = ck_instr_flag(s->instr, "retries", NULL);
        if (!rc && r != NULL) {
            char *end = NULL;
            long v = strtol(r, &end, 10);
            if (*end != '\0' || v < 0 || v > 1000000)
                rc = step_fail(b, s, CAIRN_E_PARSE, "bad HEALTHCHECK --retries");
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

/* ---- layer progress ------------------------------------------------------ */

/* Layers smaller than this are written before anyone would wonder. */
#define BUILD_PROGRESS_MIN ((uint64_t)32 << 20)

/* The progress line of one layer write on a terminal. */
struct layer_progress {
    FILE *out;
    bool shown;
};

static void layer_progress_cb(void *arg, uint64_t tar_bytes)
{
    struct layer_progress *p = arg;
    if (tar_bytes < BUILD_PROGRESS_MIN)
        return;
    /* MB as Docker prints sizes: 10^6 bytes. The line is rewritten in
     * place with \r until the layer is done. */
    fprintf(p->out, "\r ---> writing layer: %llu MB",
            (unsigned long long)(tar_bytes / 1000000));
    fflush(p->out);
    p->shown = true;
}

/* Hooks p into lo when the output is a terminal (plain logs get no
 * carriage returns). */
static void layer_progress_start(struct build *b, struct cairn_layer_opts *lo,
                                 struct layer_progress *p)
{
    p->out = b->out;
    p->shown = false;
    if (b->o->tty) {
        lo->progress = layer_progress_cb;
        lo->progress_arg = p;
    }
}

/* Ends a progress line that was shown, so the next output starts on a
 * line of its own. */
static void layer_progress_end(struct layer_progress *p)
{
    if (p->shown)
        fputc('\n', p->out);
    p->shown = false;
}

/* ---- COPY / ADD ---------------------------------------------------------- */

struct copy_job {
    struct build *b;
    const struct ck_step *step;
    struct stage_out *parent;
    struct cairn_layer_writer *w;
    const char *srcroot; /* directory the entries' disk paths are under */
    char dest[4096];     /* absolute destination, cleaned, no trailing / */
    bool dest_is_dir;
    uid_t uid;
    gid_t gid;
    bool has_chmod;
    mode_t chmod;
    bool link; /* COPY --link: the layer does not look at the parent */
    struct cairn_strvec emitted; /* directories already in the layer */
    unsigned entries;
    struct ck_exclude *exclude; /* --exclude, or NULL */
    char pivot[4096];           /* --parents: the source's part before "/./" */
};

static bool emitted_has(struct copy_job *j, const char *p)
{
    for (size_t i = 0; i < j->emitted.n; i++)
        if (strcmp(j->emitted.v[i], p) == 0)
            return true;
    return false;
}

static int64_t clamp_time(struct build *b, int64_t t)
{
    if (b->o->source_date_epoch >= 0 && t > b->o->source_date_epoch)
        return b->o->source_date_epoch;
    return t;
}

/* Adds the directories above path (relative, no leading '/') that the
 * layer does not have yet, with the parent image's metadata when the
 * directory exists there (a diff would carry it unchanged) and 0755 root
 * otherwise. COPY --link never looks: its layer is made as if on an empty
 * root (BuildKit copies onto scratch and merges), so every parent is
 * 0755 root and the parent's snapshots are not needed. */
static int ensure_parents(struct copy_job *j, const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = strchr(buf, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (!emitted_has(j, buf)) {
            struct stat st;
            struct cairn_layer_entry e = {
                .path = buf, .mode = S_IFDIR | 0755, .mtime = clamp_time(j->b, j->b->now)};
            if (!j->link &&
                stage_lstat(j->b, j->parent, buf, &st, NULL, 0) == 0 &&
                S_ISDIR(st.st_mode)) {
                e.mode = st.st_mode;
                e.uid = st.st_uid;
                e.gid = st.st_gid;
                e.mtime = clamp_time(j->b, st.st_mtime);
            }
            int rc = cairn_layer_add(j->w, &e, j->b->err);
            if (!rc)
                rc = cairn_strvec_push(&j->emitted, buf);
            if (rc)
                return rc;
        }
        *p = '/';
    }
    return 0;
}

/* Symlinks followed in one destination, as Linux's MAXSYMLINKS and Go's
 * FollowSymlinkInScope (255) allow. */
#define BUILD_MAX_LINKS 255

/* Resolves path (relative to the root, components separated by '/') in
 * the parent's tree as Docker resolves a COPY destination (Go's
 * FollowSymlinkInScope, BuildKit's RootPath): symlinks are followed, an
 * absolute target starts again at the image's root and ".." stops at it,
 * so nothing resolves outside the image. The last component is followed
 * too, dangling or not (docker build, classic and BuildKit, writes through
 * it). Fills out (no leading '/', "" for the root) and sets *links when a
 * symlink was followed. */
static int dest_resolve(struct copy_job *j, const char *path, char *out,
                        size_t outlen, bool *links)
{
    char res[4096] = "";
    char rest[8192];
    char tmp[8192];
    unsigned nlinks = 0;
    bool missing = false; /* below a missing directory nothing exists */
    snprintf(rest, sizeof rest, "%s", path);
    char *r = rest;
    for (;;) {
        while (*r == '/')
            r++;
        if (*r == '\0')
            break;
        size_t clen = strcspn(r, "/");
        char comp[256];
        if (clen >= sizeof comp)
            return cairn_err_set(j->b->err, -ENAMETOOLONG,
                                 "destination name too long: %.100s", r);
        memcpy(comp, r, clen);
        comp[clen] = '\0';
        r += clen;
        while (*r == '/')
            r++;
        if (strcmp(comp, ".") == 0)
            continue;
        if (strcmp(comp, "..") == 0) {
            missing = false;
            char *slash = strrchr(res, '/');
            if (slash)
                *slash = '\0';
            else
                res[0] = '\0';
            continue;
        }
        size_t rl = strlen(res);
        if (rl + 1 + clen >= sizeof res)
            return cairn_err_set(j->b->err, -ENAMETOOLONG,
                                 "destination too long: %.100s", path);
        char *at = res + rl;
        snprintf(at, sizeof res - rl, "%s%s", rl ? "/" : "", comp);
        if (missing)
            continue;
        struct stat st;
        char found[8192];
        int rc = stage_lstat(j->b, j->parent, res, &st, found, sizeof found);
        if (rc == CAIRN_E_NOTFOUND) {
            missing = true;
            continue;
        }
        if (rc)
            return rc;
        if (!S_ISLNK(st.st_mode))
            continue;
        if (++nlinks > BUILD_MAX_LINKS)
            return cairn_err_set(j->b->err, -ELOOP,
                                 "too many symlinks in destination %.200s",
                                 path);
        char target[4096];
        ssize_t tl = readlink(found, target, sizeof target - 1);
        if (tl < 0)
            return cairn_err_set(j->b->err, -errno, "cannot read link %s: %s",
                                 res, strerror(errno));
        target[tl] = '\0';
        *at = '\0'; /* the link's own name is replaced by its target */
        if (target[0] == '/')
            res[0] = '\0';
        if ((size_t)snprintf(tmp, sizeof tmp, "%s/%s", target, r) >= sizeof tmp)
            return cairn_err_set(j->b->err, -ENAMETOOLONG,
                                 "destination too long: %.100s", path);
        memcpy(rest, tmp, strlen(tmp) + 1);
        r = rest;
    }
    if (strlen(res) >= outlen)
        return cairn_err_set(j->b->err, -ENAMETOOLONG,
                             "destination too long: %.100s", path);
    snprintf(out, outlen, "%s", res);
    *links = nlinks > 0;
    return 0;
}

/* Puts j->dest where Docker puts it in the parent's tree: through its
 * symlinks, the last one included; a destination that is a directory there
 * (or a link to one) takes a copied file inside, as in Docker. The source
 * tree's own symlinks are copied as they are. COPY --link keeps its
 * destination as written, as BuildKit does: it does not look at the
 * parent. The parent's snapshots are looked at, which a COPY below a
 * directory of a non-empty parent does anyway for ensure_parents. */
static int dest_follow(struct copy_job *j)
{
    if (j->link || j->parent->nlayers == 0 || strcmp(j->dest, "/") == 0)
        return 0;
    char to[sizeof j->dest - 1]; /* room for the leading '/' */
    bool linked = false;
    int rc = dest_resolve(j, j->dest, to, sizeof to, &linked);
    if (rc)
        return rc;
    struct stat st;
    if (to[0] == '\0' || (stage_lstat(j->b, j->parent, to, &st, NULL, 0) == 0 &&
                          S_ISDIR(st.st_mode)))
        j->dest_is_dir = true;
    if (linked)
        snprintf(j->dest, sizeof j->dest, "/%s", to);
    return 0;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* ADD sources that are fetched, not read from the context (the key
 * covers them by name only; fetching needs the network, so not yet). */
static bool add_is_remote(const char *src)
{
    static const char *const remote[] = {"http://", "https://", "git@",
                                         "git://"};
    for (size_t k = 0; k < sizeof remote / sizeof remote[0]; k++)
        if (strncmp(src, remote[k], strlen(remote[k])) == 0)
            return true;
    return false;
}

/* cairn_layer_add_archive's hook: parents first, each directory once. */
static int archive_entry_cb(void *arg, const char *path, mode_t mode,
                            struct cairn_err *err)
{
    struct copy_job *j = arg;
    (void)err; /* ensure_parents reports through j->b->err, the same one */
    int rc = ensure_parents(j, path);
    if (rc)
        return rc;
    if (S_ISDIR(mode)) {
        if (emitted_has(j, path))
            return 1;
        rc = cairn_strvec_push(&j->emitted, path);
    }
    if (!rc)
        j->entries++;
    return rc;
}

/* ADD of a local tar archive: its entries land under dest, which is a
 * directory whatever its spelling (Docker's rule). --chown applies to
 * them; --chmod does not (BuildKit keeps the archive's modes). */
static int copy_archive(struct copy_job *j, const char *src)
{
    struct build *b = j->b;
    const char *dest = j->dest;
    while (*dest == '/')
        dest++;
    struct cairn_layer_extract x = {
        .dest = dest,
        .chown = j->step->chown != NULL && j->step->chown[0] != '\0',
        .uid = j->uid,
        .gid = j->gid,
        .entry = archive_entry_cb,
        .arg = j,
    };
    return cairn_layer_add_archive(j->w, src, &x, b->err);
}

static int copy_entry(void *arg, const struct ck_context_entry *e)
{
    struct copy_job *j = arg;
    struct build *b = j->b;
    char target[8192];
    if (ck_exclude_entry(j->exclude, e))
        return 0;
    const char *unpack = ck_instr_flag(j->step->instr, "unpack", NULL);
    if (j->step->instr->kind == CK_INSTR_ADD && e->type == 'f' &&
        !e->match_is_dir && !(unpack && strcmp(unpack, "false") == 0)) {
        /* --unpack=false (Dockerfile 1.17) copies an archive as a file. */
        char path[8192];
        bool tar = false;
        snprintf(path, sizeof path, "%s/%s", j->srcroot, e->disk);
        cairn_layer_is_archive(path, &tar);
        if (tar)
            return copy_archive(j, path);
    }
    /* Where the entry lands: a directory match copies its contents into
     * dest; a file goes to dest itself, or into it when dest is a dir.
     * With --parents the match keeps its path (below a "/./" pivot). */
    size_t pl = strlen(j->pivot);
    const char *kept = e->match;
    if (pl && strncmp(kept, j->pivot, pl) == 0 && kept[pl] == '/')
        kept += pl + 1;
    if (j->step->parents && strcmp(kept, ".") != 0) {
        if (strcmp(e->rel, ".") == 0 || !e->match_is_dir)
            snprintf(target, sizeof target, "%s/%s", j->dest, kept);
        else
            snprintf(target, sizeof target, "%s/%s/%s", j->dest, kept, e->rel);
    } else if (e->match_is_dir) {
        if (strcmp(e->rel, ".") == 0)
            snprintf(target, sizeof target, "%s", j->dest);
        else
            snprintf(target, sizeof target, "%s/%s", j->dest, e->rel);
    } else if (j->dest_is_dir) {
        snprintf(target, sizeof target, "%s/%s", j->dest, base_name(e->match));
    } else {
        snprintf(target, sizeof target, "%s", j->dest);
    }
    const char *rel = target;
    while (*rel == '/')
        rel++;
    if (*rel == '\0')
        return 0; /* the root itself: never an entry */
    int rc = ensure_parents(j, rel);
    if (rc)
        return rc;
    char src[8192];
    snprintf(src, sizeof src, "%s/%s", j->srcroot, e->disk);
    struct stat st;
    if (lstat(src, &st) != 0)
        return cairn_err_set(b->err, -errno, "cannot read %s: %s", e->disk,
                             strerror(errno));
    mode_t perm = (mode_t)(e->mode & 07777);
    if (j->has_chmod && e->type != 'l')
        perm = j->chmod;
    struct cairn_layer_entry le = {
        .path = rel,
        .uid = j->uid,
        .gid = j->gid,
        .mtime = clamp_time(b, st.st_mtime),
        .link_target = e->link_target,
    };
    j->entries++;
    if (e->type == 'd') {
        if (emitted_has(j, rel))
            return 0;
        le.mode = S_IFDIR | perm;
        rc = cairn_layer_add(j->w, &le, b->err);
        if (!rc)
            rc = cairn_strvec_push(&j->emitted, rel);
        return rc;
    }
    if (e->type == 'l') {
        le.mode = S_IFLNK | 0777;
        return cairn_layer_add(j->w, &le, b->err);
    }
    le.mode = S_IFREG | perm;
    int fd = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return cairn_err_set(b->err, -errno, "cannot open %s: %s", e->disk,
                             strerror(errno));
    rc = cairn_layer_add_file(j->w, &le, fd, (int64_t)st.st_size, b->err);
    close(fd);
    return rc;
}

static int count_match(void *arg, const struct ck_context_entry *e)
{
    struct cairn_strvec *m = arg;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i], e->match) == 0)
            return 0;
    return cairn_strvec_push(m, e->match);
}

/* COPY/ADD --link (or --link=true). */
static bool copy_is_link(const struct ck_step *s)
{
    bool present = false;
    const char *v = ck_instr_flag(s->instr, "link", &present);
    return present && (v == NULL || strcmp(v, "true") == 0);
}

/* Whether the snapshot of step s's layer will be wanted in this build: a
 * later RUN, COPY or ADD of its stage (a COPY looks at the parent's
 * files for parents and --chown names), or a needed stage built FROM it
 * or copying from it. A COPY then writes the snapshot as it writes the
 * layer, instead of unpacking the layer again later; a snapshot nobody
 * wants is not worth its file creations. */
static bool copy_wants_snapshot(const struct build *b, const struct ck_step *s)
{
    const struct ck_plan *p = b->plan;
    for (size_t i = (size_t)(s - p->steps) + 1; i < p->nsteps; i++) {
        const struct ck_step *t = &p->steps[i];
        if (!p->stages[t->stage].needed)
            continue;
        enum ck_instr_kind k = t->instr->kind;
        bool layer_step =
            k == CK_INSTR_RUN || k == CK_INSTR_COPY || k == CK_INSTR_ADD;
        /* A COPY --link reads the parent only for --chown names. */
        bool reads_parent =
            layer_step && k != CK_INSTR_RUN &&
            (!copy_is_link(t) || (t->chown != NULL && t->chown[0] != '\0'));
        if (t->stage == s->stage && (k == CK_INSTR_RUN || reads_parent))
            return true;
        if (t->stage != s->stage && layer_step &&
            t->from_kind == CK_FROM_STAGE && t->from_stage == s->stage)
            return true;
    }
    for (size_t k = 0; k < p->nstages; k++)
        if (k != s->stage && p->stages[k].needed &&
            p->stages[k].base_kind == CK_BASE_STAGE &&
            p->stages[k].base_stage == s->stage)
            return true;
    return false;
}

/* Writes a COPY/ADD layer. *empty is set when it added nothing. When the
 * layer's snapshot will be wanted, it is written in the same pass
 * (cairn_layer_writer_mirror) and *snap gets its path (malloc'd), else
 * NULL. */
static int run_copy(struct build *b, const struct ck_step *s,
                    struct stage_out *so, struct cairn_layer_desc *desc,
                    char **blob, bool *empty, char **snap)
{
    struct copy_job j;
    memset(&j, 0, sizeof j);
    j.b = b;
    j.step = s;
    j.parent = so;
    j.link = copy_is_link(s);
    cairn_strvec_init(&j.emitted);
    struct ck_context *src_ctx = b->ctx;
    char mnt[4096] = "";
    char mirror[4096] = "";
    const char **lowers = NULL;
    *snap = NULL;
    int rc = resolve_chown(b, so, s, &j.uid, &j.gid);
    if (rc)
        return rc;
    if (s->chmod) {
        char *end = NULL;
        unsigned long m = strtoul(s->chmod, &end, 8);
        if (*end != '\0' || m > 07777)
            return step_fail(b, s, CAIRN_E_PARSE, "invalid --chmod value");
        j.has_chmod = true;
        j.chmod = (mode_t)m;
    }
    if (s->nexcludes) {
        rc = ck_exclude_new(s->excludes, s->nexcludes, &j.exclude, b->err);
        if (rc)
            return step_fail(b, s, rc, b->err->msg);
    }

    /* The destination, absolute, relative to WORKDIR otherwise. */
    const char *dest = s->words[s->nwords - 1];
    size_t dl = strlen(dest);
    bool trailing = dl > 0 && dest[dl - 1] == '/';
    if (dest[0] == '/')
        snprintf(j.dest, sizeof j.dest, "%s", dest);
    else
        snprintf(j.dest, sizeof j.dest, "%s/%s", s->workdir, dest);
    /* Clean "." segments and trailing slashes enough for joining. */
    size_t n = strlen(j.dest);
    while (n > 1 && (j.dest[n - 1] == '/' ||
                     (n > 1 && j.dest[n - 1] == '.' && j.dest[n - 2] == '/'))) {
        j.dest[--n] = '\0';
    }
    if (strcmp(j.dest, "/.") == 0 || n == 0)
        snprintf(j.dest, sizeof j.dest, "/");

    /* Sources in another stage or image: a read-only view of its root. */
    struct stage_out img;
    memset(&img, 0, sizeof img);
    if (s->from_kind != CK_FROM_CONTEXT) {
        struct stage_out *from = &img;
        if (s->from_kind == CK_FROM_STAGE) {
            from = &b->stages[s->from_stage];
        } else {
            struct cairn_manifest m;
            memset(&m, 0, sizeof m);
            rc = load_image(b, s->from_image.digest, &m, &img.cfg);
            for (size_t i = 0; !rc && i < m.nlayers; i++)
                rc = layers_push(&img, &m.layers[i]);
            cairn_manifest_clear(&m);
            if (rc)
                goto out;
        }
        if (from->nlayers == 0) {
            rc = step_fail(b, s, CAIRN_E_NOTFOUND,
                           "the stage or image copied from has no files");
            goto out;
        }
        rc = stage_lowers(b, from, &lowers);
        if (rc)
            goto out;
        snprintf(mnt, sizeof mnt, "%s/from-XXXXXX", cairn_store_tmpdir(b->st));
        if (mkdtemp(mnt) == NULL) {
            rc = cairn_err_set(b->err, -errno, "mkdtemp: %s", strerror(errno));
            mnt[0] = '\0';
            goto out;
        }
        rc = cairn_sandbox_mount_ro(lowers, from->nlayers, mnt, b->err);
        if (rc) {
            rmdir(mnt);
            mnt[0] = '\0';
            goto out;
        }
        struct ck_context_opts co = {.threads = 0};
        rc = ck_context_open(mnt, &co, &src_ctx, b->err);
        if (rc) {
            src_ctx = NULL;
            goto out;
        }
    }
    j.srcroot = ck_context_dir(src_ctx);

    /* Several sources, or a wildcard with several matches, or a trailing
     * slash: dest is a directory (Docker's rule). */
    size_t nsrc = 0;
    struct cairn_strvec matches;
    cairn_strvec_init(&matches);
    for (size_t i = 0; i + 1 < s->nwords; i++) {
        if (strncmp(s->words[i], "<<", 2) == 0) {
            nsrc++;
            continue;
        }
        if (s->instr->kind == CK_INSTR_ADD && add_is_remote(s->words[i])) {
            char msg[600];
            snprintf(msg, sizeof msg,
                     "ADD from a URL is not supported yet: %.500s",
                     s->words[i]);
            cairn_strvec_free(&matches);
            rc = step_fail(b, s, CAIRN_E_UNSUPPORTED, msg);
            goto out;
        }
        rc = ck_context_source_each(src_ctx, s->words[i], count_match,
                                    &matches, b->err);
        if (rc) {
            cairn_strvec_free(&matches);
            cairn_err_prefix(b->err, "step %d/%d (%s:%d %s)", s->number,
                             b->total, b->df->name, s->instr->line,
                             ck_instr_name(s->instr->kind));
            goto out;
        }
    }
    nsrc += matches.n;
    cairn_strvec_free(&matches);
    j.dest_is_dir =
        trailing || nsrc > 1 || strcmp(j.dest, "/") == 0 || s->parents;
    rc = dest_follow(&j);
    if (rc) {
        cairn_err_prefix(b->err, "step %d/%d (%s:%d %s)", s->number, b->total,
                         b->df->name, s->instr->line,
                         ck_instr_name(s->instr->kind));
        goto out;
    }

    struct cairn_layer_opts lo = {.compression = b->o->compression,
                                  .source_date_epoch = b->o->source_date_epoch};
    struct layer_progress lp;
    layer_progress_start(b, &lo, &lp);
    rc = cairn_layer_writer_new(cairn_store_tmpdir(b->st), &lo, &j.w, b->err);
    if (rc)
        goto out;
    if (copy_wants_snapshot(b, s)) {
        /* Without a mirror the snapshot is unpacked when wanted, as for
         * any layer: a mirror that cannot start is not an error. */
        struct cairn_err scratch;
        cairn_err_clear(&scratch);
        if (cairn_store_snapshot_stage(b->st, mirror, sizeof mirror,
                                       &scratch) != 0)
            mirror[0] = '\0';
        else if (cairn_layer_writer_mirror(j.w, mirror, &scratch) != 0) {
            cairn_store_snapshot_discard(b->st, mirror);
            mirror[0] = '\0';
        }
    }
    for (size_t i = 0; !rc && i + 1 < s->nwords; i++) {
        const char *src = s->words[i];
        if (strncmp(src, "<<", 2) == 0) {
            /* Heredoc source: a file named after the delimiter. */
            const struct ck_heredoc *h = NULL;
            for (size_t k = 0; k < s->instr->nheredocs; k++)
                if (strstr(src, s->instr->heredocs[k].name))
                    h = &s->instr->heredocs[k];
            if (h == NULL)
                continue;
            char target[8192];
            if (j.dest_is_dir)
                snprintf(target, sizeof target, "%s/%s", j.dest, h->name);
            else
                snprintf(target, sizeof target, "%s", j.dest);
            const char *rel = target;
            while (*rel == '/')
                rel++;
            rc = ensure_parents(&j, rel);
            struct cairn_layer_entry le = {
                .path = rel,
                .mode = S_IFREG | (j.has_chmod ? j.chmod : 0644),
                .uid = j.uid,
                .gid = j.gid,
                .mtime = clamp_time(b, b->now),
            };
            if (!rc)
                rc = cairn_layer_add_data(j.w, &le, h->content,
                                          strlen(h->content), b->err);
            j.entries++;
            continue;
        }
        /* --parents keeps the path below a "/./" pivot (Dockerfile 1.7). */
        const char *pv = strstr(src, "/./");
        j.pivot[0] = '\0';
        if (s->parents && pv != NULL) {
            const char *p0 = src;
            while (*p0 == '/' || (p0[0] == '.' && p0[1] == '/'))
                p0 += *p0 == '/' ? 1 : 2;
            if (pv > p0)
                snprintf(j.pivot, sizeof j.pivot, "%.*s", (int)(pv - p0), p0);
        }
        rc = ck_context_source_each(src_ctx, src, copy_entry, &j, b->err);
    }
    if (rc) {
        cairn_layer_writer_abort(j.w);
        layer_progress_end(&lp);
        goto out;
    }
    *empty = j.entries == 0;
    bool mirrored = false;
    cairn_layer_writer_mirror_end(j.w, &mirrored);
    rc = cairn_layer_writer_finish(j.w, desc, blob, b->err);
    layer_progress_end(&lp);
    if (!rc && mirrored && !*empty) {
        /* The tree is complete: it becomes the layer's snapshot (or the
         * one another build made first is used). Failing to move it only
         * costs an unpack later. */
        char path[4096];
        struct cairn_err scratch;
        cairn_err_clear(&scratch);
        if (cairn_store_snapshot_adopt(b->st, desc, mirror, path, sizeof path,
                                       &scratch) == 0)
            *snap = strdup(path);
        mirror[0] = '\0'; /* adopted or removed by adopt */
    }
out:
    if (mirror[0])
        cairn_store_snapshot_discard(b->st, mirror);
    if (src_ctx != b->ctx)
        ck_context_close(src_ctx);
    if (mnt[0]) {
        cairn_sandbox_unmount(mnt, NULL);
        rmdir(mnt);
    }
    free(lowers);
    stage_out_free(&img);
    cairn_strvec_free(&j.emitted);
    ck_exclude_free(j.exclude);
    return rc;
}

/* ---- RUN ----------------------------------------------------------------- */

/* Below this much free space the store's file system counts as full. */
#define BUILD_FULL_FREE ((uint64_t)1 << 20)

/* A full store shows in a RUN as a failing write inside the command
 * (through overlayfs even as EIO, not ENOSPC): add that to the step's
 * error, or the user hunts for a bug in the command. */
static void note_full_disk(struct build *b)
{
    struct statvfs sv;
    const char *dir = cairn_store_tmpdir(b->st);
    if (statvfs(dir, &sv) != 0)
        return;
    uint64_t avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    bool no_inodes = sv.f_files > 0 && sv.f_favail == 0;
    if (avail >= BUILD_FULL_FREE && !no_inodes)
        return;
    size_t n = strnlen(b->err->msg, sizeof b->err->msg);
    snprintf(b->err->msg + n, sizeof b->err->msg - n,
             " (no space left on device: the store's file system at %s has "
             "%llu kB%s free)",
             dir, (unsigned long long)(avail / 1024),
             no_inodes ? " and no inodes" : "");
}

/* True when dir holds anything but the paths in skip. */
static bool upper_has_changes(const char *dir, const char *prefix,
                              char *const *skip)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    struct dirent *de;
    bool found = false;
    while (!found && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char rel[4096], full[8192];
        snprintf(rel, sizeof rel, "%s%s%s", prefix, prefix[0] ? "/" : "",
                 de->d_name);
        snprintf(full, sizeof full, "%s/%s", dir, de->d_name);
        bool skipped = false;
        for (size_t i = 0; skip && skip[i]; i++)
            if (strcmp(skip[i], rel) == 0)
                skipped = true;
        struct stat st;
        if (!skipped) {
            found = true;
        } else if (lstat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
            found = upper_has_changes(full, rel, skip);
        }
    }
    closedir(d);
    return found;
}

/* cairn_runmount_lowers_fn: the snapshots of a mount's from= (an earlier
 * stage, built by now, or an image in the store). */
struct mount_lowers {
    struct build *b;
    struct stage_out imgs[CAIRN_RUN_MAX_MOUNTS];
    size_t nimgs;
};

static int mount_lowers(void *arg, const struct ck_run_mount *rm,
                        const char ***out, size_t *n, struct cairn_err *err)
{
    struct mount_lowers *ml = arg;
    struct build *b = ml->b;
    struct stage_out *from = NULL;
    int rc = 0;
    (void)err; /* the helpers report through b->err, the same one */
    if (rm->from_kind == CK_FROM_STAGE) {
        from = &b->stages[rm->from_stage];
    } else {
        from = &ml->imgs[ml->nimgs++];
        struct cairn_manifest m;
        memset(&m, 0, sizeof m);
        rc = load_image(b, rm->from_image.digest, &m, &from->cfg);
        for (size_t i = 0; !rc && i < m.nlayers; i++)
            rc = layers_push(from, &m.layers[i]);
        cairn_manifest_clear(&m);
    }
    if (!rc)
        rc = stage_lowers(b, from, out);
    if (!rc)
        *n = from->nlayers;
    return rc;
}

static int run_run(struct build *b, const struct ck_step *s,
                   struct stage_out *so, struct cairn_layer_desc *desc,
                   char **blob, bool *empty)
{
    char tmp[4096], upper[4200], work[4200];
    snprintf(tmp, sizeof tmp, "%s/run-XXXXXX", cairn_store_tmpdir(b->st));
    if (mkdtemp(tmp) == NULL)
        return cairn_err_set(b->err, -errno, "mkdtemp: %s", strerror(errno));
    snprintf(upper, sizeof upper, "%s/upper", tmp);
    snprintf(work, sizeof work, "%s/work", tmp);
    const char **lowers = NULL;
    struct cairn_strvec argv, env;
    cairn_strvec_init(&argv);
    cairn_strvec_init(&env);
    struct cairn_run_result res;
    memset(&res, 0, sizeof res);
    const void *stdin_data = NULL;
    size_t stdin_len = 0;
    char *script = NULL;
    struct cairn_runmounts *mounts = NULL;
    struct mount_lowers ml;
    memset(&ml, 0, sizeof ml);
    ml.b = b;
    int rc = 0;
    if (s->insecure) {
        rc = step_fail(b, s, CAIRN_E_UNSUPPORTED,
                       "RUN --security=insecure is not supported: it needs "
                       "the security.insecure entitlement, which cairn does "
                       "not grant");
        goto out;
    }
    if (mkdir(upper, 0755) != 0 || mkdir(work, 0700) != 0) {
        rc = cairn_err_set(b->err, -errno, "mkdir: %s", strerror(errno));
        goto out;
    }
    rc = stage_lowers(b, so, &lowers);
    if (rc)
        goto out;

    const struct ck_instr *in = s->instr;
    if (in->json) {
        for (size_t i = 0; !rc && i < s->nwords; i++)
            rc = cairn_strvec_push(&argv, s->words[i]);
    } else {
        for (size_t i = 0; !rc && i < s->nshell; i++)
            rc = cairn_strvec_push(&argv, s->shell[i]);
        const char *cmd = s->nwords ? s->words[0] : "";
        if (!rc && in->nheredocs == 1 && strncmp(cmd, "<<", 2) == 0 &&
            strchr(cmd, ' ') == NULL) {
            /* RUN <<EOF: the heredoc is the script (BuildKit's rule). */
            rc = cairn_strvec_push(&argv, in->heredocs[0].content);
        } else if (!rc && in->nheredocs > 0) {
            /* Heredocs as redirections: the shell reads them itself. */
            struct cairn_buf sb;
            cairn_buf_init(&sb, 0);
            cairn_buf_puts(&sb, cmd);
            for (size_t i = 0; i < in->nheredocs; i++)
                cairn_buf_printf(&sb, "\n%s%s", in->heredocs[i].content,
                                 in->heredocs[i].name);
            cairn_buf_putc(&sb, '\n');
            script = cairn_buf_take(&sb);
            rc = script ? cairn_strvec_push(&argv, script) : CAIRN_E_NOMEM;
        } else if (!rc) {
            rc = cairn_strvec_push(&argv, cmd);
        }
    }
    bool has_home = false;
    for (size_t i = 0; !rc && i < s->nenv; i++) {
        rc = cairn_strvec_push(&env, s->env[i]);
        has_home = has_home || strncmp(s->env[i], "HOME=", 5) == 0;
    }
    /* Docker (runc) sets HOME from the user's passwd entry when the
     * environment has none. It is derived from the parent's files, which
     * the key already covers, so it stays out of the key and the image. */
    if (!rc && !has_home) {
        char home[1024], var[1100];
        passwd_home(b, so, s->user, home, sizeof home);
        snprintf(var, sizeof var, "HOME=%s", home);
        rc = cairn_strvec_push(&env, var);
    }
    /* Proxy settings reach the command but never the key or the image. */
    for (size_t i = 0; !rc && i < b->o->nbuild_args; i++) {
        const char *a = b->o->build_args[i];
        static const char *const proxies[] = {
            "HTTP_PROXY=", "http_proxy=", "HTTPS_PROXY=", "https_proxy=",
            "FTP_PROXY=", "ftp_proxy=", "NO_PROXY=", "no_proxy=",
            "ALL_PROXY=", "all_proxy="};
        for (size_t k = 0; k < sizeof proxies / sizeof proxies[0]; k++)
            if (strncmp(a, proxies[k], strlen(proxies[k])) == 0)
                rc = cairn_strvec_push(&env, a);
    }
    if (rc)
        goto out;
    enum cairn_run_network net = b->o->network;
    if (strcmp(s->network, "none") == 0)
        net = CAIRN_RUN_NET_NONE;
    else if (strcmp(s->network, "host") == 0)
        net = CAIRN_RUN_NET_HOST;
    struct cairn_runmount_env menv = {
        .store_root = cairn_store_root(b->st),
        .tmpdir = tmp,
        .ctx = b->ctx,
        .secrets = b->o->secrets,
        .nsecrets = b->o->nsecrets,
        .lowers = mount_lowers,
        .lowers_arg = &ml,
        .out = b->out,
    };
    if (s->nmounts) {
        rc = cairn_runmounts_prepare(s, &menv, &mounts, b->err);
        if (rc) {
            cairn_err_prefix(b->err, "step %d/%d (%s:%d RUN)", s->number,
                             b->total, b->df->name, s->instr->line);
            goto out;
        }
    }
    size_t nmounts = 0;
    const struct cairn_run_mount *mlist =
        cairn_runmounts_list(mounts, &nmounts);
    struct cairn_run_spec spec = {
        .lowerdirs = lowers,
        .nlowerdirs = so->nlayers,
        .upperdir = upper,
        .workdir = work,
        .argv = (const char *const *)argv.v,
        .argc = argv.n,
        .env = (const char *const *)env.v,
        .nenv = env.n,
        .cwd = s->workdir,
        .user = s->user,
        .network = net,
        .stdin_data = stdin_data,
        .stdin_len = stdin_len,
        .out_fd = fileno(b->out),
        .mounts = mlist,
        .nmounts = nmounts,
    };
    fflush(b->out);
    rc = cairn_sandbox_run(&spec, &res, b->err);
    /* Cache locks are held for the command only; the views and copies
     * are not needed for the layer. */
    cairn_runmounts_release(mounts);
    mounts = NULL;
    if (rc) {
        cairn_err_prefix(b->err, "step %d/%d (%s:%d RUN)", s->number,
                         b->total, b->df->name, s->instr->line);
        goto out;
    }
    if (res.exit_code != 0) {
        struct cairn_buf cmdline;
        cairn_buf_init(&cmdline, 4096);
        for (size_t i = 0; i < argv.n; i++)
            cairn_buf_printf(&cmdline, "%s%s", i ? " " : "", argv.v[i]);
        rc = cairn_err_set(b->err, CAIRN_E_FAILED,
                           "step %d/%d (%s:%d RUN): The command '%s' returned "
                           "a non-zero code: %d",
                           s->number, b->total, b->df->name, s->instr->line,
                           cmdline.data ? cmdline.data : "", res.exit_code);
        cairn_buf_free(&cmdline);
        note_full_disk(b);
        goto out;
    }
    *empty = !upper_has_changes(upper, "", res.created);
    if (*empty)
        goto out;
    struct cairn_layer_writer *w = NULL;
    struct cairn_layer_opts lo = {.compression = b->o->compression,
                                  .source_date_epoch = b->o->source_date_epoch};
    struct layer_progress lp;
    layer_progress_start(b, &lo, &lp);
    rc = cairn_layer_writer_new(cairn_store_tmpdir(b->st), &lo, &w, b->err);
    if (!rc)
        rc = cairn_layer_add_upper(w, upper, (const char *const *)res.created,
                                   b->err);
    if (rc) {
        cairn_layer_writer_abort(w);
        layer_progress_end(&lp);
        goto out;
    }
    rc = cairn_layer_writer_finish(w, desc, blob, b->err);
    layer_progress_end(&lp);
out:
    cairn_runmounts_release(mounts);
    for (size_t i = 0; i < ml.nimgs; i++)
        stage_out_free(&ml.imgs[i]);
    cairn_run_result_clear(&res);
    free(script);
    free(lowers);
    cairn_strvec_free(&argv);
    cairn_strvec_free(&env);
    rm_tree(tmp);
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
            rc = layers_push(so, &base->layers[i]);
        break;
    }
    case CK_BASE_IMAGE: {
        struct cairn_manifest m;
        memset(&m, 0, sizeof m);
        rc = load_image(b, st->base.digest, &m, &so->cfg);
        for (size_t i = 0; !rc && i < m.nlayers; i++)
            rc = layers_push(so, &m.layers[i]);
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

static int do_layer_step(struct build *b, size_t i, struct stage_out *so,
                         bool *cached)
{
    const struct ck_step *s = &b->plan->steps[i];
    const struct ck_step_key *k = &b->keys->keys[i];
    struct cairn_layer_rec rec;
    memset(&rec, 0, sizeof rec);
    char *snap = NULL; /* the snapshot a COPY wrote with its layer */
    int rc;
    if (!b->o->no_cache && (cairn_store_key_get(b->st, k->hex, &rec) == 0 ||
                            remote_rec(b, i, &rec))) {
        *cached = true;
        if (b->remote_hit && b->remote_hit[i])
            b->stats->remote++;
        else
            b->stats->cached++;
    } else {
        *cached = false;
        explain_step(b, i, true);
        char *blob = NULL;
        bool empty = false;
        if (s->instr->kind == CK_INSTR_RUN)
            rc = run_run(b, s, so, &rec.layer, &blob, &empty);
        else
            rc = run_copy(b, s, so, &rec.layer, &blob, &empty, &snap);
        if (rc)
            return rc;
        b->stats->run++;
        rec.empty = empty;
        if (blob != NULL && empty) {
            unlink(blob);
        } else if (blob != NULL) {
            rc = cairn_store_blob_add_file(b->st, blob, rec.layer.digest, b->err);
            b->stats->layer_bytes += (uint64_t)rec.layer.size;
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
        rc = layers_push(so, &rec.layer);
        if (!rc && snap != NULL)
            rc = stage_snapshot_take(so, so->nlayers - 1, &snap);
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
        b->remote[i] = cs;
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
            if (!p->stages[s->stage].needed || !layer_step ||
                (b->remote[i] && b->remote[i]->hit) ||
                (k->computed && !k->unresolved &&
                 cairn_store_key_get(b->st, k->hex, &rec) == 0))
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

/* The fetch of remote_fetch, on demand: any layer of s whose blob is not
 * in the store but that a remote hit has is fetched now. remote_fetch
 * has already fetched whatever the build reads, so this finds nothing
 * to do unless that reasoning missed a case; a failure leaves the blob
 * missing, and the snapshot's error says so. */
static void remote_ensure_blobs(struct build *b, const struct stage_out *s)
{
    if (b->remote == NULL)
        return;
    for (size_t l = 0; l < s->nlayers; l++) {
        if (s->snapshots && s->snapshots[l])
            continue;
        if (cairn_store_blob_has(b->st, s->layers[l].digest))
            continue;
        for (size_t i = 0; i < b->plan->nsteps; i++) {
            struct cairn_cache_step *cs = b->remote[i];
            if (cs && cs->hit && !cs->fetched && !cs->rec.empty &&
                strcmp(cs->rec.layer.digest, s->layers[l].digest) == 0) {
                cairn_cache_fetch(b->o->cache, b->st, &cs, 1);
                break;
            }
        }
    }
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
        if (s->instr->kind == CK_INSTR_FROM) {
            rc = start_stage(b, st, so);
            if (!rc)
                explain_step(b, i, false);
        } else if (s->instr->kind == CK_INSTR_RUN ||
                   s->instr->kind == CK_INSTR_COPY ||
                   s->instr->kind == CK_INSTR_ADD) {
            rc = do_layer_step(b, i, so, &cached);
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
            return rc;
        }
        char id[13];
        short_id(b->keys->keys[i].hex, id);
        fprintf(b->out, " ---> %s\n", id);
        fflush(b->out);
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

/* Stores config and manifest of the target stage and records the image,
 * with its tags, the build's result under result_key and, when it has
 * tags, its --explain record, in one transaction (one disk flush). */
static int commit_image(struct build *b, const char *result_key,
                        char image_id[CAIRN_DIGEST_STR_LEN],
                        char manifest_out[CAIRN_DIGEST_STR_LEN])
{
    struct stage_out *so = &b->stages[b->plan->target];
    so->cfg.created = b->now;
    char *json = NULL;
    size_t len = 0;
    int rc = cairn_image_config_to_json(&so->cfg, &json, &len);
    if (rc)
        return rc;
    char config_digest[CAIRN_DIGEST_STR_LEN];
    rc = cairn_store_blob_add_data(b->st, json, len, config_digest, b->err);
    free(json);
    if (rc)
        return rc;
    struct cairn_manifest m = {
        .media_type = CAIRN_MEDIA_MANIFEST,
        .config_digest = config_digest,
        .config_size = (int64_t)len,
        .config_media_type = CAIRN_MEDIA_CONFIG,
        .layers = so->layers,
        .nlayers = so->nlayers,
    };
    rc = cairn_manifest_to_json(&m, &json, &len);
    if (rc)
        return rc;
    char manifest_digest[CAIRN_DIGEST_STR_LEN];
    rc = cairn_store_blob_add_data(b->st, json, len, manifest_digest, b->err);
    free(json);
    if (rc)
        return rc;
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    snprintf(row.manifest_digest, sizeof row.manifest_digest, "%s",
             manifest_digest);
    snprintf(row.config_digest, sizeof row.config_digest, "%s", config_digest);
    row.created = b->now;
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
    int rc = ck_dockerfile_parse_file(dockerfile, &b.df, err);
    if (rc)
        goto out;
    rc = ck_ignore_load(o->context, dockerfile, &ig, err);
    if (!rc)
        rc = cairn_store_statcache_open(st, &sc, err);
    /* A tagged build lists its COPY sources for --explain at the end:
     * from the walks its keys were made of, not a second walk. */
    struct ck_context_opts co = {
        .ignore = ig, .cache = sc, .keep_walks = o->ntags > 0};
    if (!rc)
        rc = ck_context_open(o->context, &co, &b.ctx, err);
    struct ck_plan_opts po = {
        .build_args = o->build_args,
        .nbuild_args = o->nbuild_args,
        .target = o->target,
        .resolve = resolve_image,
        .resolve_arg = &b,
        .allow_unresolved = true, /* checked for needed stages below */
    };
    if (!rc)
        rc = ck_plan_build(b.df, &po, &b.plan, err);
    if (!rc)
        rc = plan_check_resolved(&b);
    if (rc)
        goto out;
    if (b.plan->nunused_build_args > 0) {
        fprintf(b.out, "[Warning] One or more build-args [");
        for (size_t i = 0; i < b.plan->nunused_build_args; i++)
            fprintf(b.out, "%s%s", i ? " " : "", b.plan->unused_build_args[i]);
        fprintf(b.out, "] were not consumed\n");
    }
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
        rc = remote_lookup(&b);
        if (!rc)
            rc = remote_fetch(&b);
    }
    if (!rc)
        rc = walk(&b);
    /* A build whose final key already produced an image gives that same
     * image (so a fully cached rebuild keeps its ID, as in Docker); with a
     * source date epoch the image is reproducible anyway. */
    const struct ck_stage *ts = &b.plan->stages[b.plan->target];
    const char *final_key = b.keys->keys[ts->first_step + ts->nsteps - 1].hex;
    char manifest[CAIRN_DIGEST_STR_LEN];
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    bool remembered = false;
    if (!rc && !o->no_cache && o->source_date_epoch < 0 &&
        stats->run == 0 &&
        cairn_store_result_get(st, final_key, manifest) == 0 &&
        cairn_store_image_find(st, manifest, &row, NULL) == 0) {
        for (size_t i = 0; !rc && i < o->ntags; i++)
            rc = cairn_store_tag(st, o->tags[i], manifest, err);
        if (!rc)
            snprintf(image_id, CAIRN_DIGEST_STR_LEN, "%s", row.config_digest);
        cairn_store_image_row_clear(&row);
    } else if (!rc) {
        remote_ensure_blobs(&b, &b.stages[b.plan->target]);
        /* Remembers the build too (result and --explain record). */
        rc = commit_image(&b, final_key, image_id, manifest);
        remembered = true;
    }
    if (!rc && o->ntags > 0 && !remembered)
        remember(&b);
    if (o->cache) {
        /* Uploads read blobs from the store: they end before the lock. */
        struct cairn_cache_stats cst_;
        cairn_cache_finish(o->cache);
        cairn_cache_stats_get(o->cache, &cst_);
        stats->bytes_down = cst_.bytes_down;
        stats->bytes_up = cst_.bytes_up;
    }
    cairn_store_unlock(st);
out:
    free(b.remote_hit);
    free(b.remote);
    free(b.remote_steps);
    cairn_explain_build_clear(&b.last);
    if (b.stages)
        for (size_t i = 0; i < b.plan->nstages; i++)
            stage_out_free(&b.stages[i]);
    free(b.stages);
    ck_keys_free(b.keys);
    ck_plan_free(b.plan);
    ck_context_close(b.ctx);
    ck_statcache_close(sc);
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
