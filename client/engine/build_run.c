/* RUN steps of a build (client/engine/build.h): the command in the
 * sandbox over the parent's snapshots, with its mounts, and its upper
 * directory written as one layer. The build driver is
 * client/engine/build.c. */
#include "client/engine/build_run.h"
#include "client/engine/build_members.h"
#include "client/engine/build_state.h"
#include "client/engine/report.h"
#include "client/engine/stage.h"

#include "cachekey/dockerfile.h"
#include "cachekey/plan.h"
#include "cachekey/statcache.h"
#include "client/store/image.h"
#include "client/sandbox/sandbox.h"
#include "common/buf.h"
#include "common/strvec.h"

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
#include <unistd.h>

/* ---- RUN ----------------------------------------------------------------- */

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
static void build_tree_remove(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

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
        rc = build_image_load(b, rm->from_image.digest, &m, &from->cfg);
        for (size_t i = 0; !rc && i < m.nlayers; i++)
            rc = build_layers_push(from, &m.layers[i]);
        cairn_manifest_clear(&m);
    }
    if (!rc)
        rc = build_stage_lowers(b, from, out);
    if (!rc)
        *n = from->nlayers;
    return rc;
}

/* RUN --mount: what the sandbox mounts for step s, prepared under tmp. */
static int run_mounts_prepare(struct build *b, const struct ck_step *s,
                              const char *tmp, struct mount_lowers *ml,
                              struct cairn_runmounts **mounts)
{
    struct cairn_runmount_env menv = {
        .store_root = cairn_store_root(b->st),
        .tmpdir = tmp,
        .ctx = b->ctx,
        .secrets = b->o->secrets,
        .nsecrets = b->o->nsecrets,
        .lowers = mount_lowers,
        .lowers_arg = ml,
        .out = b->out,
    };
    int rc = cairn_runmounts_prepare(s, &menv, mounts, b->err);
    if (rc)
        cairn_err_prefix(b->err, "step %d/%d (%s:%d RUN)", s->number,
                         b->total, b->df->name, s->instr->line);
    return rc;
}

/* The command of RUN step s: exec form as written, shell form through
 * the stage's SHELL, heredocs as the script or as redirections. *script
 * (malloc'd, NULL if none) holds text argv points into. */
static int run_argv(const struct ck_step *s, struct cairn_strvec *argv,
                    char **script)
{
    const struct ck_instr *in = s->instr;
    int rc = 0;
    if (in->json) {
        for (size_t i = 0; !rc && i < s->nwords; i++)
            rc = cairn_strvec_push(argv, s->words[i]);
        return rc;
    }
    for (size_t i = 0; !rc && i < s->nshell; i++)
        rc = cairn_strvec_push(argv, s->shell[i]);
    const char *cmd = s->nwords ? s->words[0] : "";
    if (rc)
        return rc;
    if (in->nheredocs == 1 && strncmp(cmd, "<<", 2) == 0 &&
        strchr(cmd, ' ') == NULL) {
        /* RUN <<EOF: the heredoc is the script (BuildKit's rule). */
        return cairn_strvec_push(argv, in->heredocs[0].content);
    }
    if (in->nheredocs > 0) {
        /* Heredocs as redirections: the shell reads them itself. */
        struct cairn_buf sb;
        cairn_buf_init(&sb, 0);
        cairn_buf_puts(&sb, cmd);
        for (size_t i = 0; i < in->nheredocs; i++)
            cairn_buf_printf(&sb, "\n%s%s", in->heredocs[i].content,
                             in->heredocs[i].name);
        cairn_buf_putc(&sb, '\n');
        *script = cairn_buf_take(&sb);
        return *script ? cairn_strvec_push(argv, *script) : CAIRN_E_NOMEM;
    }
    return cairn_strvec_push(argv, cmd);
}

/* The environment of RUN step s: the step's, HOME, and proxy settings. */
static int run_env(struct build *b, const struct ck_step *s,
                   struct stage_out *so, struct cairn_strvec *env)
{
    int rc = 0;
    bool has_home = false;
    for (size_t i = 0; !rc && i < s->nenv; i++) {
        rc = cairn_strvec_push(env, s->env[i]);
        has_home = has_home || strncmp(s->env[i], "HOME=", 5) == 0;
    }
    /* Docker (runc) sets HOME from the user's passwd entry when the
     * environment has none. It is derived from the parent's files, which
     * the key already covers, so it stays out of the key and the image. */
    if (!rc && !has_home) {
        char home[1024], var[1100];
        build_passwd_home(b, so, s->user, home, sizeof home);
        snprintf(var, sizeof var, "HOME=%s", home);
        rc = cairn_strvec_push(env, var);
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
                rc = cairn_strvec_push(env, a);
    }
    return rc;
}

/* The error of a command that exited with code, in Docker's words. */
static int run_failed(struct build *b, const struct ck_step *s,
                      const struct cairn_strvec *argv, int code)
{
    struct cairn_buf cmdline;
    cairn_buf_init(&cmdline, 4096);
    for (size_t i = 0; i < argv->n; i++)
        cairn_buf_printf(&cmdline, "%s%s", i ? " " : "", argv->v[i]);
    int rc = cairn_err_set(b->err, CAIRN_E_FAILED,
                           "step %d/%d (%s:%d RUN): The command '%s' returned "
                           "a non-zero code: %d",
                           s->number, b->total, b->df->name, s->instr->line,
                           cmdline.data ? cmdline.data : "", code);
    cairn_buf_free(&cmdline);
    note_full_disk(b);
    return rc;
}

/* Writes the upper directory of a RUN as a layer (build_run_step's desc
 * and blob); *settled tells whether upper is now the layer's unpacked
 * tree. */
static int run_layer_write(struct build *b, const char *upper,
                           const struct cairn_run_result *res,
                           struct cairn_layer_desc *desc, char **blob,
                           bool *settled)
{
    struct cairn_layer_writer *w = NULL;
    struct cairn_layer_opts lo = {.compression = b->o->compression,
                                  .source_date_epoch = b->o->source_date_epoch};
    struct layer_progress lp;
    build_progress_start(b, &lo, &lp);
    build_members_opts(b, &lo);
    int rc =
        cairn_layer_writer_new(cairn_store_tmpdir(b->st), &lo, &w, b->err);
    if (!rc)
        rc = cairn_layer_add_upper_settle(
            w, upper, (const char *const *)res->created, settled, b->err);
    if (rc) {
        cairn_layer_writer_abort(w);
        build_progress_end(&lp);
        return rc;
    }
    rc = cairn_layer_writer_finish(w, desc, blob, b->err);
    build_progress_end(&lp);
    return rc;
}

/* The settled upper directory as the layer's snapshot: a rename, where
 * removing it would cost a synchronous unlink per file (with ext4's
 * discard option, seconds for a few thousand files) and the next step
 * would unpack the blob again. Not fatal: without it the next step
 * unpacks the blob as before. */
static void run_snapshot_adopt(struct build *b, const char *upper,
                               const struct cairn_layer_desc *desc,
                               char **snap)
{
    char path[4096];
    struct cairn_err e;
    cairn_err_clear(&e);
    if (cairn_store_snapshot_adopt(b->st, desc, upper, path, sizeof path,
                                   &e) == 0)
        *snap = strdup(path);
}

int build_run_step(struct build *b, const struct ck_step *s,
                   struct stage_out *so, struct cairn_layer_desc *desc,
                   char **blob, bool *empty, char **snap)
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
    char *script = NULL;
    struct cairn_runmounts *mounts = NULL;
    struct mount_lowers ml;
    memset(&ml, 0, sizeof ml);
    ml.b = b;
    int rc = 0;
    if (s->insecure) {
        rc = build_step_fail(b, s, CAIRN_E_UNSUPPORTED,
                       "RUN --security=insecure is not supported: it needs "
                       "the security.insecure entitlement, which cairn does "
                       "not grant");
        goto out;
    }
    if (mkdir(upper, 0755) != 0 || mkdir(work, 0700) != 0) {
        rc = cairn_err_set(b->err, -errno, "mkdir: %s", strerror(errno));
        goto out;
    }
    rc = build_stage_lowers(b, so, &lowers);
    if (rc)
        goto out;

    rc = run_argv(s, &argv, &script);
    if (!rc)
        rc = run_env(b, s, so, &env);
    if (rc)
        goto out;
    enum cairn_run_network net = b->o->network;
    if (strcmp(s->network, "none") == 0)
        net = CAIRN_RUN_NET_NONE;
    else if (strcmp(s->network, "host") == 0)
        net = CAIRN_RUN_NET_HOST;
    if (s->nmounts) {
        rc = run_mounts_prepare(b, s, tmp, &ml, &mounts);
        if (rc)
            goto out;
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
        rc = run_failed(b, s, &argv, res.exit_code);
        goto out;
    }
    *empty = !upper_has_changes(upper, "", res.created);
    bool settled = false;
    if (!*empty)
        rc = run_layer_write(b, upper, &res, desc, blob, &settled);
    if (!rc && settled)
        run_snapshot_adopt(b, upper, desc, snap);
out:
    cairn_runmounts_release(mounts);
    for (size_t i = 0; i < ml.nimgs; i++)
        build_stage_out_free(&ml.imgs[i]);
    cairn_run_result_clear(&res);
    free(script);
    free(lowers);
    cairn_strvec_free(&argv);
    cairn_strvec_free(&env);
    build_tree_remove(tmp);
    return rc;
}
