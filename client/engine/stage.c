/* What a stage has made so far (stage.h): its layers, their
 * snapshots, the base image it starts from, and lookups in its file
 * system (lstat through the layers, HOME, --chown names). The build
 * driver (build.c) and the steps (build_run.c, build_copy.c) use it; it
 * uses neither. */
#include "client/engine/stage.h"

#include "client/engine/report.h"

#include "client/remote/cache.h"
#include "client/store/image.h"
#include "client/store/store.h"
#include "common/strvec.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

void build_stage_out_free(struct stage_out *s)
{
    cairn_image_config_clear(&s->cfg);
    free(s->layers);
    if (s->snapshots)
        cairn_strv_free(s->snapshots, s->nlayers);
    memset(s, 0, sizeof *s);
}

int build_layers_push(struct stage_out *s, const struct cairn_layer_desc *d)
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

int build_image_load(struct build *b, const char *manifest_digest,
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

/* The fetch of remote_fetch, on demand: any layer of s whose blob is not
 * in the store but that a remote hit has is fetched now. remote_fetch
 * has already fetched whatever the build reads, so this finds nothing
 * to do unless that reasoning missed a case; a failure leaves the blob
 * missing, and the snapshot's error says so. */
void build_remote_ensure_blobs(struct build *b, const struct stage_out *s)
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

/* Makes sure every layer of s has its snapshot directory. */
static int stage_snapshots(struct build *b, struct stage_out *s)
{
    build_remote_ensure_blobs(b, s);
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
int build_stage_snapshot_take(struct stage_out *s, size_t i, char **path)
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
int build_stage_lowers(struct build *b, struct stage_out *s, const char ***out)
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
int build_stage_lstat(struct build *b, struct stage_out *s, const char *rel,
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
    if (build_stage_lstat(b, s, file, &st, path, sizeof path) != 0)
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
void build_passwd_home(struct build *b, struct stage_out *s, const char *user,
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
    if (build_stage_lstat(b, s, "etc/passwd", &st, path, sizeof path) != 0)
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
int build_chown_resolve(struct build *b, struct stage_out *s,
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
        return build_step_fail(b, step, CAIRN_E_INVAL,
                               "--chown value too long");
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
        if (build_stage_lstat(b, s, "etc/passwd", &st, path,
                              sizeof path) == 0) {
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
        return build_step_fail(b, step, CAIRN_E_NOTFOUND, msg);
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
            return build_step_fail(b, step, CAIRN_E_NOTFOUND, msg);
        }
    }
    return 0;
}
