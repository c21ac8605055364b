/* COPY and ADD steps of a build (client/engine/build.h): sources from the
 * context, a stage or an image, local archives and URLs written as one
 * layer. The build driver is client/engine/build.c. */
#include "client/engine/build_copy.h"
#include "client/engine/build_members.h"
#include "client/engine/build_state.h"
#include "client/engine/report.h"
#include "client/engine/stage.h"

#include "cachekey/context.h"
#include "cachekey/dockerfile.h"
#include "cachekey/exclude.h"
#include "cachekey/plan.h"
#include "cachekey/statcache.h"
#include "client/store/image.h"
#include "client/sandbox/sandbox.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

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
                build_stage_lstat(j->b, j->parent, buf, &st, NULL, 0) == 0 &&
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
        int rc =
            build_stage_lstat(j->b, j->parent, res, &st, found, sizeof found);
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
    if (to[0] == '\0' ||
        (build_stage_lstat(j->b, j->parent, to, &st, NULL, 0) == 0 &&
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

/* The parts of j that come from step s's flags and destination: --chown,
 * --chmod, --exclude and the destination, absolute (relative to WORKDIR
 * otherwise) and cleaned. *trailing is set when the destination ends in
 * "/". On failure j->exclude may be set: the caller frees it. */
static int copy_job_setup(struct copy_job *j, const struct ck_step *s,
                          bool *trailing)
{
    struct build *b = j->b;
    int rc = build_chown_resolve(b, j->parent, s, &j->uid, &j->gid);
    if (rc)
        return rc;
    if (s->chmod) {
        char *end = NULL;
        unsigned long m = strtoul(s->chmod, &end, 8);
        if (*end != '\0' || m > 07777)
            return build_step_fail(b, s, CAIRN_E_PARSE,
                                   "invalid --chmod value");
        j->has_chmod = true;
        j->chmod = (mode_t)m;
    }
    if (s->nexcludes) {
        rc = ck_exclude_new(s->excludes, s->nexcludes, &j->exclude, b->err);
        if (rc)
            return build_step_fail(b, s, rc, b->err->msg);
    }

    const char *dest = s->words[s->nwords - 1];
    size_t dl = strlen(dest);
    *trailing = dl > 0 && dest[dl - 1] == '/';
    if (dest[0] == '/')
        snprintf(j->dest, sizeof j->dest, "%s", dest);
    else
        snprintf(j->dest, sizeof j->dest, "%s/%s", s->workdir, dest);
    /* Clean "." segments and trailing slashes enough for joining. */
    size_t n = strlen(j->dest);
    while (n > 1 &&
           (j->dest[n - 1] == '/' ||
            (n > 1 && j->dest[n - 1] == '.' && j->dest[n - 2] == '/'))) {
        j->dest[--n] = '\0';
    }
    if (strcmp(j->dest, "/.") == 0 || n == 0)
        snprintf(j->dest, sizeof j->dest, "/");
    return 0;
}

/* Where a COPY's sources are: the build context, or (--from) a read-only
 * view of another stage's or an image's root. */
struct copy_src {
    struct ck_context *ctx; /* b->ctx, or the view's (owned) */
    struct stage_out img;   /* --from=image: the image's layers */
    char mnt[4096];         /* the view's mount point, "" when none */
    const char **lowers;    /* the view's overlay lower directories */
};

/* Opens step s's sources into cs (zeroed by the caller); whatever was
 * opened, also on failure, is released by copy_src_close. */
static int copy_src_open(struct build *b, const struct ck_step *s,
                         struct copy_src *cs)
{
    cs->ctx = b->ctx;
    if (s->from_kind == CK_FROM_CONTEXT)
        return 0;
    struct stage_out *from = &cs->img;
    int rc;
    if (s->from_kind == CK_FROM_STAGE) {
        from = &b->stages[s->from_stage];
    } else {
        struct cairn_manifest m;
        memset(&m, 0, sizeof m);
        rc = build_image_load(b, s->from_image.digest, &m, &cs->img.cfg);
        for (size_t i = 0; !rc && i < m.nlayers; i++)
            rc = build_layers_push(&cs->img, &m.layers[i]);
        cairn_manifest_clear(&m);
        if (rc)
            return rc;
    }
    if (from->nlayers == 0)
        return build_step_fail(b, s, CAIRN_E_NOTFOUND,
                               "the stage or image copied from has no files");
    rc = build_stage_lowers(b, from, &cs->lowers);
    if (rc)
        return rc;
    snprintf(cs->mnt, sizeof cs->mnt, "%s/from-XXXXXX",
             cairn_store_tmpdir(b->st));
    if (mkdtemp(cs->mnt) == NULL) {
        cs->mnt[0] = '\0';
        return cairn_err_set(b->err, -errno, "mkdtemp: %s", strerror(errno));
    }
    rc = cairn_sandbox_mount_ro(cs->lowers, from->nlayers, cs->mnt, b->err);
    if (rc) {
        rmdir(cs->mnt);
        cs->mnt[0] = '\0';
        return rc;
    }
    struct ck_context_opts co = {.threads = 0};
    struct ck_context *ctx = NULL;
    rc = ck_context_open(cs->mnt, &co, &ctx, b->err);
    if (!rc)
        cs->ctx = ctx;
    return rc;
}

static void copy_src_close(struct build *b, struct copy_src *cs)
{
    if (cs->ctx != NULL && cs->ctx != b->ctx)
        ck_context_close(cs->ctx);
    if (cs->mnt[0]) {
        cairn_sandbox_unmount(cs->mnt, NULL);
        rmdir(cs->mnt);
    }
    free(cs->lowers);
    build_stage_out_free(&cs->img);
}

static void copy_err_prefix(struct build *b, const struct ck_step *s)
{
    cairn_err_prefix(b->err, "step %d/%d (%s:%d %s)", s->number, b->total,
                     b->df->name, s->instr->line,
                     ck_instr_name(s->instr->kind));
}

/* Several sources, or a wildcard with several matches, or a trailing
 * slash: dest is a directory (Docker's rule). Sets j->dest_is_dir and
 * follows the destination (dest_follow). */
static int copy_dest_kind(struct copy_job *j, struct ck_context *src_ctx,
                          bool trailing)
{
    struct build *b = j->b;
    const struct ck_step *s = j->step;
    size_t nsrc = 0;
    int rc = 0;
    struct cairn_strvec matches;
    cairn_strvec_init(&matches);
    for (size_t i = 0; !rc && i + 1 < s->nwords; i++) {
        if (strncmp(s->words[i], "<<", 2) == 0) {
            nsrc++;
            continue;
        }
        if (s->instr->kind == CK_INSTR_ADD && add_is_remote(s->words[i])) {
            char msg[600];
            snprintf(msg, sizeof msg,
                     "ADD from a URL is not supported yet: %.500s",
                     s->words[i]);
            rc = build_step_fail(b, s, CAIRN_E_UNSUPPORTED, msg);
            break;
        }
        rc = ck_context_source_each(src_ctx, s->words[i], count_match,
                                    &matches, b->err);
        if (rc)
            copy_err_prefix(b, s);
    }
    nsrc += matches.n;
    cairn_strvec_free(&matches);
    if (rc)
        return rc;
    j->dest_is_dir =
        trailing || nsrc > 1 || strcmp(j->dest, "/") == 0 || s->parents;
    rc = dest_follow(j);
    if (rc)
        copy_err_prefix(b, s);
    return rc;
}

/* A heredoc source: a file named after the delimiter. */
static int copy_heredoc(struct copy_job *j, const char *src)
{
    const struct ck_step *s = j->step;
    const struct ck_heredoc *h = NULL;
    for (size_t k = 0; k < s->instr->nheredocs; k++)
        if (strstr(src, s->instr->heredocs[k].name))
            h = &s->instr->heredocs[k];
    if (h == NULL)
        return 0;
    char target[8192];
    if (j->dest_is_dir)
        snprintf(target, sizeof target, "%s/%s", j->dest, h->name);
    else
        snprintf(target, sizeof target, "%s", j->dest);
    const char *rel = target;
    while (*rel == '/')
        rel++;
    int rc = ensure_parents(j, rel);
    struct cairn_layer_entry le = {
        .path = rel,
        .mode = S_IFREG | (j->has_chmod ? j->chmod : 0644),
        .uid = j->uid,
        .gid = j->gid,
        .mtime = clamp_time(j->b, j->b->now),
    };
    if (!rc)
        rc = cairn_layer_add_data(j->w, &le, h->content, strlen(h->content),
                                  j->b->err);
    j->entries++;
    return rc;
}

/* Adds every source of the step to the layer being written. */
static int copy_sources(struct copy_job *j, struct ck_context *src_ctx)
{
    const struct ck_step *s = j->step;
    int rc = 0;
    for (size_t i = 0; !rc && i + 1 < s->nwords; i++) {
        const char *src = s->words[i];
        if (strncmp(src, "<<", 2) == 0) {
            rc = copy_heredoc(j, src);
            continue;
        }
        /* --parents keeps the path below a "/./" pivot (Dockerfile 1.7). */
        const char *pv = strstr(src, "/./");
        j->pivot[0] = '\0';
        if (s->parents && pv != NULL) {
            const char *p0 = src;
            while (*p0 == '/' || (p0[0] == '.' && p0[1] == '/'))
                p0 += *p0 == '/' ? 1 : 2;
            if (pv > p0)
                snprintf(j->pivot, sizeof j->pivot, "%.*s", (int)(pv - p0),
                         p0);
        }
        rc = ck_context_source_each(src_ctx, src, copy_entry, j, j->b->err);
    }
    return rc;
}

/* Starts writing the layer's tree into a staged snapshot directory as
 * well (mirror, len bytes), when the snapshot will be wanted. Without
 * a mirror the snapshot is unpacked when wanted, as for any layer: a
 * mirror that cannot start is not an error. */
static void copy_mirror_start(struct copy_job *j, char *mirror, size_t len)
{
    if (!copy_wants_snapshot(j->b, j->step))
        return;
    struct cairn_err scratch;
    cairn_err_clear(&scratch);
    if (cairn_store_snapshot_stage(j->b->st, mirror, len, &scratch) != 0)
        mirror[0] = '\0';
    else if (cairn_layer_writer_mirror(j->w, mirror, &scratch) != 0) {
        cairn_store_snapshot_discard(j->b->st, mirror);
        mirror[0] = '\0';
    }
}

int build_copy_step(struct build *b, const struct ck_step *s,
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
    struct copy_src cs;
    memset(&cs, 0, sizeof cs);
    char mirror[4096] = "";
    *snap = NULL;
    bool trailing = false;
    int rc = copy_job_setup(&j, s, &trailing);
    if (!rc)
        rc = copy_src_open(b, s, &cs);
    if (rc)
        goto out;
    j.srcroot = ck_context_dir(cs.ctx);
    rc = copy_dest_kind(&j, cs.ctx, trailing);
    if (rc)
        goto out;

    struct cairn_layer_opts lo = {.compression = b->o->compression,
                                  .source_date_epoch = b->o->source_date_epoch};
    struct layer_progress lp;
    build_progress_start(b, &lo, &lp);
    build_members_opts(b, &lo);
    rc = cairn_layer_writer_new(cairn_store_tmpdir(b->st), &lo, &j.w, b->err);
    if (rc)
        goto out;
    copy_mirror_start(&j, mirror, sizeof mirror);
    rc = copy_sources(&j, cs.ctx);
    if (rc) {
        cairn_layer_writer_abort(j.w);
        build_progress_end(&lp);
        goto out;
    }
    *empty = j.entries == 0;
    bool mirrored = false;
    cairn_layer_writer_mirror_end(j.w, &mirrored);
    rc = cairn_layer_writer_finish(j.w, desc, blob, b->err);
    build_progress_end(&lp);
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
    copy_src_close(b, &cs);
    cairn_strvec_free(&j.emitted);
    ck_exclude_free(j.exclude);
    return rc;
}
