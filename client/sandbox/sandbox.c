/* The RUN sandbox.
 *
 * Process layout. The caller (P) forks a helper (C). C resets signals,
 * joins the RUN's network namespace (the default network: netns.h) or
 * unshares one (none), unshares the mount, PID, UTS and IPC namespaces and
 * forks the init (G), which is PID 1 of the new PID namespace; G sets up
 * the root and execs the command, so the command itself is PID 1 (as with
 * `docker run` without --init). C waits for G and exits with G's status (128+N
 * for a signal). C dies with P (PR_SET_PDEATHSIG), G dies with C, and when G,
 * the namespace init, dies the kernel kills everything else in the namespace.
 *
 * Fork safety. P may be multi-threaded and built with ASan, so C and G do
 * nothing but system calls and plain memory work on data P prepared before
 * forking (struct sbx_prep): no malloc, no stdio, no locks. G forks with
 * _Fork(), the async-signal-safe fork. /etc/passwd and /etc/group are read
 * by G through mmap and parsed in place. A step that fails sends a record
 * {step, errno, arg} to P through a close-on-exec pipe, which P turns into
 * the error message; a successful exec closes the pipe.
 *
 * The root. An overlay mount of the lowers (top-most first), then a "stub"
 * lower directory we make, then upperdir and workdir, on rundir/root in the
 * new mount namespace (made private first, so nothing propagates back). The
 * stub holds the mount points (proc, dev, etc, etc/hosts, etc/resolv.conf)
 * so that mounting over them never writes to the upper directory; stub
 * entries carry a marker mtime, so after the mount a merged entry with the
 * marker is one the image does not have (reported in result->created).
 * When an image hides a stub entry (a whiteout or an opaque directory),
 * the mount point is created in the merged tree instead and removed from
 * upperdir after the run. The mounts on top of the root (proc, the /dev
 * tmpfs, devpts, shm, the /etc binds) receive every write below them, so
 * none of it reaches the upper directory.
 *
 * Long overlay options. mount(2) takes at most a page of options and
 * fsconfig's "lowerdir+" needs Linux 6.8, so G chdirs into rundir and
 * names every layer by a short relative symlink: lowerdir=l/0:l/1:...:stub,
 * upperdir=u, workdir=w. 499 lowers (overlayfs's limit is 500 with the
 * stub) fit in about 3 KiB. mount_ro does the same in a forked child,
 * because chdir would change every thread's working directory.
 *
 * Host files (/dev/null ... /dev/tty, the hosts and resolv.conf sources)
 * are cloned with open_tree() before pivot_root and attached with
 * move_mount() afterwards, so every target path is resolved inside the new
 * root (an image's symlinks cannot point a mount at the host).
 *
 * Capabilities: the bounding set is cut to Docker's default set before the
 * exec, so root in the sandbox cannot mount, load modules and the like.
 *
 * Seccomp: Docker's default filter (client/sandbox/seccomp.h), built by P
 * before forking and installed by G just before the capabilities are cut.
 *
 * What a RUN may touch of the host, next to Docker's default: /proc's
 * tunables are read-only and its leaks masked (sbx_proc_guard); the root
 * and /dev are nodev, so a node made by the command (CAP_MKNOD stays, for
 * layers that ship nodes) cannot be opened, while the host's devices are
 * binds with their own flags (Docker uses a cgroup device list instead);
 * G starts a new session and P relays the command's output from a pipe,
 * so no terminal of the caller's is reachable (docs/security.md).
 */
#include "client/sandbox/sandbox.h"
#include "client/sandbox/sandbox_child.h"

#include "client/sandbox/netns.h"
#include "client/sandbox/seccomp.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <grp.h>
#include <time.h>
#include <unistd.h>

static const char *const sbx_step_text[SBX_STEP_COUNT] = {
#define SBX_STEP_TEXT(name, text) text,
    SBX_STEPS(SBX_STEP_TEXT)
#undef SBX_STEP_TEXT
};

/* Sandboxes running in this process, for cairn_sandbox_kill_all. */
#define SBX_MAX_RUNNING 64
static _Atomic pid_t sbx_running[SBX_MAX_RUNNING];

/* ------------------------------------------------------------------ */
/* The caller's side. */

static char *sbx_join(const char *a, const char *b)
{
    struct cairn_buf buf;
    cairn_buf_init(&buf, PATH_MAX);
    if (cairn_buf_printf(&buf, "%s/%s", a, b) != 0) {
        cairn_buf_free(&buf);
        return NULL;
    }
    return cairn_buf_take(&buf);
}

/* Creates a uniquely named directory under $TMPDIR (or /tmp). */
static int sbx_mkdtemp(const char *prefix, char **out, struct cairn_err *err)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] != '/')
        tmp = "/tmp";
    struct cairn_buf b;
    cairn_buf_init(&b, PATH_MAX);
    if (cairn_buf_printf(&b, "%s/%s-XXXXXX", tmp, prefix) != 0) {
        cairn_buf_free(&b);
        return cairn_err_set(err, CAIRN_E_NOMEM, "sandbox: out of memory");
    }
    if (mkdtemp(b.data) == NULL) {
        int e = -errno;
        cairn_err_set(err, e, "sandbox: create a directory in %s: %s", tmp,
                      strerror(-e));
        cairn_buf_free(&b);
        return e;
    }
    *out = cairn_buf_take(&b);
    return *out ? 0 : CAIRN_E_NOMEM;
}

/* Writes a whole file (0644) at dir/name. */
static int sbx_write_file(const char *dir, const char *name, const char *text,
                          char **out)
{
    char *path = sbx_join(dir, name);
    if (path == NULL)
        return CAIRN_E_NOMEM;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (fd < 0) {
        rc = -errno;
    } else {
        size_t n = strlen(text);
        if (write(fd, text, n) != (ssize_t)n)
            rc = -EIO;
        close(fd);
    }
    if (rc != 0) {
        free(path);
        return rc;
    }
    *out = path;
    return 0;
}

/* The default network's resolv.conf in rundir, made from the host's
 * (netns.h); *forward: pasta must relay DNS. */
static int sbx_resolv_conf(struct sbx_prep *p, bool *forward)
{
    struct cairn_buf host, conf;
    cairn_buf_init(&host, CAIRN_NETNS_MAX_RESOLV + 1);
    cairn_buf_init(&conf, CAIRN_NETNS_MAX_RESOLV * 2);
    int rc = 0;
    int fd = open("/etc/resolv.conf", O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT)
        rc = -errno;
    while (fd >= 0 && rc == 0) {
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : 0;
            break;
        }
        rc = cairn_buf_append(&host, chunk, (size_t)n);
    }
    if (fd >= 0)
        close(fd);
    if (rc == 0)
        rc = cairn_netns_resolv_conf(host.data, host.len, &conf, forward);
    char *text = rc == 0 ? cairn_buf_take(&conf) : NULL;
    if (rc == 0 && text == NULL)
        rc = CAIRN_E_NOMEM;
    if (rc == 0)
        rc = sbx_write_file(p->rundir, "resolv.conf", text, &p->own_resolv);
    free(text);
    cairn_buf_free(&host);
    cairn_buf_free(&conf);
    return rc;
}

/* Symlinks dir/<i> (or dir/l/<i> via sub) to each lowerdir and appends
 * "<sub><i>:" to opts for each. */
static int sbx_link_lowers(const char *dir, const char *sub,
                           const char *const *lowers, size_t n,
                           struct cairn_buf *opts)
{
    struct cairn_buf link;
    cairn_buf_init(&link, PATH_MAX);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        cairn_buf_reset(&link);
        rc = cairn_buf_printf(&link, "%s/%s%zu", dir, sub, i);
        if (rc == 0 && symlink(lowers[i], link.data) != 0)
            rc = -errno;
        if (rc == 0)
            rc = cairn_buf_printf(opts, "%s%s%zu", i ? ":" : "", sub, i);
    }
    cairn_buf_free(&link);
    return rc;
}

static void sbx_unlink_lowers(const char *dir, const char *sub, size_t n)
{
    struct cairn_buf link;
    cairn_buf_init(&link, PATH_MAX);
    for (size_t i = 0; i < n; i++) {
        cairn_buf_reset(&link);
        if (cairn_buf_printf(&link, "%s/%s%zu", dir, sub, i) == 0)
            unlink(link.data);
    }
    cairn_buf_free(&link);
}

/* Makes rel (and its parents) under stub: a directory, or an empty file. */
static int sbx_stub_path(const char *stub, const char *rel, int file)
{
    char *path = sbx_join(stub, rel);
    if (path == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    char *slash = strrchr(path, '/');
    *slash = '\0';
    rc = -sbx_mkdir_p(path);
    *slash = '/';
    if (rc == 0 && file) {
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            rc = -errno;
        else
            close(fd);
    } else if (rc == 0 && mkdir(path, 0755) != 0 && errno != EEXIST) {
        rc = -errno;
    }
    free(path);
    return rc;
}

/* The stub lower: every mount point, with the marker mtime, and the
 * targets of the RUN --mount mounts (without it: only the fixed mount
 * points are ever reported as created). */
static int sbx_make_stub(const char *rundir,
                         const struct cairn_run_mount *mounts, size_t nmounts,
                         const char *cwd)
{
    char *stub = sbx_join(rundir, "stub");
    if (stub == NULL)
        return CAIRN_E_NOMEM;
    int rc = 0;
    if (mkdir(stub, 0755) != 0)
        rc = -errno;
    for (int i = 0; i < MP_COUNT && rc == 0; i++) {
        char *path = sbx_join(stub, sbx_mountpoints[i].path);
        if (path == NULL) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        if (sbx_mountpoints[i].dir) {
            if (mkdir(path, 0755) != 0)
                rc = -errno;
        } else {
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (fd < 0)
                rc = -errno;
            else
                close(fd);
        }
        free(path);
    }
    for (size_t i = 0; i < nmounts && rc == 0; i++)
        if (!sbx_target_holds_cwd(mounts[i].target, cwd))
            rc = sbx_stub_path(stub, mounts[i].target + 1, mounts[i].file);
    /* Children first, so no later creation moves a directory's mtime. */
    for (int i = MP_COUNT - 1; i >= 0 && rc == 0; i--) {
        char *path = sbx_join(stub, sbx_mountpoints[i].path);
        if (path == NULL) {
            rc = CAIRN_E_NOMEM;
            break;
        }
        struct timespec ts[2] = {{SBX_MARK_SEC, SBX_MARK_NSEC},
                                 {SBX_MARK_SEC, SBX_MARK_NSEC}};
        if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0)
            rc = -errno;
        free(path);
    }
    free(stub);
    return rc;
}

/* Removes what sbx_prep_init made in rundir (never following links: l/N,
 * u and w point at the caller's directories). */
static void sbx_prep_free(struct sbx_prep *p, size_t nlowers)
{
    if (p->rundir != NULL) {
        static const char *const names[] = {
            "stub/etc/resolv.conf",
            "stub/etc/hosts",
            "stub/etc",
            "stub/dev",
            "stub/proc",
            "stub",
            "root",
            "sec",
            "u",
            "w",
            "l",
            "hosts",
            "resolv.conf",
        };
        sbx_unlink_lowers(p->rundir, "l/", nlowers);
        /* The RUN --mount targets in the stub, deepest first, then their
         * parents while empty (some are shared, some are fixed ones). */
        for (size_t i = p->nmounts; i-- > 0;) {
            char *path = sbx_join(p->rundir, "stub");
            char *t = path ? sbx_join(path, p->mounts[i].target + 1) : NULL;
            free(path);
            size_t stub_len = strlen(p->rundir) + 5;
            while (t != NULL && strlen(t) > stub_len) {
                if (unlink(t) != 0 && errno == EISDIR && rmdir(t) != 0)
                    break;
                *strrchr(t, '/') = '\0';
            }
            free(t);
        }
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char *path = sbx_join(p->rundir, names[i]);
            if (path != NULL && unlink(path) != 0 && errno == EISDIR)
                rmdir(path);
            free(path);
        }
        rmdir(p->rundir);
    }
    free(p->rundir);
    free(p->opts);
    free(p->own_hosts);
    free(p->own_resolv);
    free(p->argv);
    free(p->envp);
    free(p->user_copy);
    for (size_t i = 0; i < CAIRN_RUN_MAX_MOUNTS; i++) {
        free(p->mnt_path[i]);
        free(p->mnt_opts[i]);
    }
    memset(p, 0, sizeof *p);
}

static int sbx_parse_user(struct sbx_prep *p, const char *user,
                          struct cairn_err *err)
{
    if (user == NULL || user[0] == '\0')
        return 0;
    if (strlen(user) > 255)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "sandbox: user name too "
                             "long");
    p->user_copy = strdup(user);
    if (p->user_copy == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "sandbox: out of memory");
    char *colon = strchr(p->user_copy, ':');
    if (colon != NULL) {
        *colon = '\0';
        p->group = colon + 1;
        p->group_num = sbx_parse_id(p->group, strlen(p->group), &p->gid) == 0;
        if (p->group[0] == '\0')
            p->group = NULL;
    }
    if (p->user_copy[0] != '\0') {
        p->user = p->user_copy;
        p->user_num = sbx_parse_id(p->user, strlen(p->user), &p->uid) == 0;
    }
    return 0;
}

/* Makes dir/name: a directory with mode, or, when link_target is not
 * NULL, a symlink to it. Returns 0, CAIRN_E_NOMEM or a negative errno. */
static int sbx_make_in(const char *dir, const char *name, mode_t mode,
                       const char *link_target)
{
    char *path = sbx_join(dir, name);
    if (path == NULL)
        return CAIRN_E_NOMEM;
    int rc = link_target ? symlink(link_target, path) : mkdir(path, mode);
    rc = rc != 0 ? -errno : 0;
    free(path);
    return rc;
}

/* The paths and options of the RUN --mount mounts that need them: a
 * secret's file under sec/, a tmpfs's options. */
static int sbx_prep_mounts(struct sbx_prep *p,
                           const struct cairn_run_spec *spec)
{
    int rc = sbx_make_in(p->rundir, "sec", 0700, NULL);
    for (size_t i = 0; i < spec->nmounts && rc == 0; i++) {
        const struct cairn_run_mount *m = &spec->mounts[i];
        struct cairn_buf b;
        cairn_buf_init(&b, PATH_MAX);
        if (m->kind == CAIRN_RUN_MOUNT_DATA) {
            rc = cairn_buf_printf(&b, "sec/%zu", i);
            p->mnt_path[i] = rc ? NULL : cairn_buf_take(&b);
        } else if (m->kind == CAIRN_RUN_MOUNT_TMPFS) {
            rc = m->size ? cairn_buf_printf(&b, "mode=1777,size=%llu",
                                            (unsigned long long)m->size)
                         : cairn_buf_puts(&b, "mode=1777");
            p->mnt_opts[i] = rc ? NULL : cairn_buf_take(&b);
        }
        cairn_buf_free(&b);
    }
    return rc;
}

/* The overlay's options (p->opts), with the layers linked under l/ and
 * the upper and work directories as u and w, so they fit in a page. */
static int sbx_prep_overlay(struct sbx_prep *p,
                            const struct cairn_run_spec *spec)
{
    struct cairn_buf opts;
    cairn_buf_init(&opts, (size_t)sysconf(_SC_PAGESIZE) - 1);
    int rc;
    if ((rc = cairn_buf_puts(&opts, "lowerdir=")) != 0 ||
        (rc = sbx_link_lowers(p->rundir, "l/", spec->lowerdirs,
                              spec->nlowerdirs, &opts)) != 0 ||
        (rc = cairn_buf_puts(&opts, spec->nlowerdirs ? ":stub" : "stub")) != 0)
        goto out;
    if ((rc = sbx_make_in(p->rundir, "u", 0, spec->upperdir)) != 0 ||
        (rc = sbx_make_in(p->rundir, "w", 0, spec->workdir)) != 0)
        goto out;
    /* redirect_dir and metacopy off: every change in the upper directory
     * must be plain files, directories and whiteouts the layer writer can
     * put in a tar (Docker's overlay2 does the same). */
    if ((rc = cairn_buf_puts(&opts, ",upperdir=u,workdir=w,redirect_dir=off,"
                                    "metacopy=off,index=off")) != 0)
        goto out;
    p->opts = cairn_buf_take(&opts);
    if (p->opts == NULL)
        rc = CAIRN_E_NOMEM;
out:
    cairn_buf_free(&opts);
    return rc;
}

/* The host files the root gets: the devices, and /etc/hosts and
 * /etc/resolv.conf (the host's with --network host, else our own). */
static int sbx_prep_host_files(struct sbx_prep *p,
                               const struct cairn_run_spec *spec)
{
    for (int i = 0; i < SRC_NDEV; i++) {
        static const char *const devs[SRC_NDEV] = {
            "/dev/null",   "/dev/zero",    "/dev/full",
            "/dev/random", "/dev/urandom", "/dev/tty",
        };
        p->src[i] = devs[i];
    }
    p->src[SRC_HOSTS] = "/etc/hosts";
    p->src[SRC_RESOLV] = "/etc/resolv.conf";
    bool own_net = spec->network != CAIRN_RUN_NET_HOST;
    int rc;
    if (own_net || access("/etc/hosts", F_OK) != 0) {
        rc = sbx_write_file(p->rundir, "hosts",
                            spec->network == CAIRN_RUN_NET_DEFAULT
                                ? "127.0.0.1\tlocalhost\n::1\tlocalhost "
                                  "ip6-localhost ip6-loopback\n"
                                : "127.0.0.1\tlocalhost\n",
                            &p->own_hosts);
        if (rc != 0)
            return rc;
        p->src[SRC_HOSTS] = p->own_hosts;
    }
    if (own_net || access("/etc/resolv.conf", F_OK) != 0) {
        rc = spec->network == CAIRN_RUN_NET_DEFAULT
                 ? sbx_resolv_conf(p, &p->dns_forward)
                 : sbx_write_file(p->rundir, "resolv.conf", "", &p->own_resolv);
        if (rc != 0)
            return rc;
        p->src[SRC_RESOLV] = p->own_resolv;
    }
    return 0;
}

/* The command: argv, the environment (and the PATH the exec searches),
 * cwd, hostname. */
static int sbx_prep_command(struct sbx_prep *p,
                            const struct cairn_run_spec *spec)
{
    p->argv = calloc(spec->argc + 1, sizeof *p->argv);
    p->envp = calloc(spec->nenv + 1, sizeof *p->envp);
    if (p->argv == NULL || p->envp == NULL)
        return CAIRN_E_NOMEM;
    for (size_t i = 0; i < spec->argc; i++)
        p->argv[i] = spec->argv[i];
    p->path = SBX_DEFAULT_PATH;
    for (size_t i = 0; i < spec->nenv; i++) {
        p->envp[i] = spec->env[i];
        if (strncmp(spec->env[i], "PATH=", 5) == 0)
            p->path = spec->env[i] + 5;
    }
    p->cwd = spec->cwd != NULL ? spec->cwd : "/";
    p->hostname = spec->hostname != NULL ? spec->hostname : "cairn";
    p->network_none = spec->network == CAIRN_RUN_NET_NONE;
    p->parent_pid = getpid();
    return 0;
}

static int sbx_prep_init(struct sbx_prep *p, const struct cairn_run_spec *spec,
                         struct cairn_err *err)
{
    memset(p, 0, sizeof *p);
    p->msg_fd = p->stdin_fd = p->out_fd = p->netns_fd = -1;
    int rc = sbx_parse_user(p, spec->user, err);
    if (rc == 0)
        rc = cairn_seccomp_filter_get(&p->seccomp, err);
    if (rc == 0)
        rc = sbx_mkdtemp("cairn-run", &p->rundir, err);
    if (rc != 0) {
        sbx_prep_free(p, 0);
        return rc;
    }
    const char *step = "prepare the run directory";
    if ((rc = sbx_make_in(p->rundir, "root", 0755, NULL)) != 0 ||
        (rc = sbx_make_in(p->rundir, "l", 0755, NULL)) != 0)
        goto out;
    p->mounts = spec->mounts;
    p->nmounts = spec->nmounts;
    if ((rc = sbx_make_stub(p->rundir, spec->mounts, spec->nmounts,
                            spec->cwd ? spec->cwd : "/")) != 0)
        goto out;
    step = "prepare the RUN --mount mounts";
    if ((rc = sbx_prep_mounts(p, spec)) != 0)
        goto out;
    step = "link the layer directories";
    if ((rc = sbx_prep_overlay(p, spec)) != 0)
        goto out;
    step = "write the network files";
    if ((rc = sbx_prep_host_files(p, spec)) != 0)
        goto out;
    step = "prepare the command";
    rc = sbx_prep_command(p, spec);
out:
    if (rc != 0) {
        cairn_err_set(err, rc, "sandbox: %s in %s: %s", step, p->rundir,
                      cairn_strerror(rc));
        sbx_prep_free(p, spec->nlowerdirs);
    }
    return rc;
}

static void sbx_register(pid_t pid, int add)
{
    for (int i = 0; i < SBX_MAX_RUNNING; i++) {
        pid_t expect = add ? 0 : pid;
        if (atomic_compare_exchange_strong(&sbx_running[i], &expect,
                                           add ? pid : 0))
            return;
    }
}

void cairn_sandbox_kill_all(void)
{
    int saved = errno;
    for (int i = 0; i < SBX_MAX_RUNNING; i++) {
        pid_t pid = atomic_load(&sbx_running[i]);
        if (pid > 0)
            kill(pid, SIGKILL);
    }
    errno = saved;
}

/* Turns an error record from C or G into err. */
static int sbx_report(const struct sbx_msg *m, const struct sbx_prep *p,
                      const struct cairn_run_spec *spec, struct cairn_err *err)
{
    int step = m->step >= 0 && m->step < SBX_STEP_COUNT ? m->step : 0;
    switch (step) {
    case SBX_STEP_USER_NOTFOUND:
        return cairn_err_set(err, CAIRN_E_NOTFOUND,
                             "unable to find user %s: no matching entries "
                             "in passwd file",
                             p->user ? p->user : "root");
    case SBX_STEP_GROUP_NOTFOUND:
        return cairn_err_set(err, CAIRN_E_NOTFOUND,
                             "unable to find group %s: no matching entries "
                             "in group file",
                             p->group ? p->group : "");
    case SBX_STEP_EXEC_NOTFOUND:
        return cairn_err_set(err, CAIRN_E_NOTFOUND,
                             "exec: \"%s\": executable file not found in "
                             "$PATH",
                             spec->argv[0]);
    case SBX_STEP_EXEC:
        return cairn_err_set(err, m->err == ENOENT ? CAIRN_E_NOTFOUND : -m->err,
                             "exec %s: %s", spec->argv[0], strerror(m->err));
    default:
        break;
    }
    const char *what = "";
    const char *sep = "";
    if (step == SBX_STEP_CLONE && m->arg >= 0 && m->arg < SRC_COUNT) {
        what = p->src[m->arg];
        sep = " ";
    } else if ((step == SBX_STEP_MOUNTPOINT || step == SBX_STEP_BIND) &&
               m->arg >= 0 && m->arg < MP_COUNT) {
        what = sbx_mountpoints[m->arg].path;
        sep = " /";
    } else if (step == SBX_STEP_PROCMASK && m->arg >= 0 &&
               (size_t)m->arg < SBX_NPROC_GUARD) {
        what = sbx_proc_guard[m->arg].path;
        sep = " ";
    } else if (step == SBX_STEP_DEVNODE && m->arg >= 0 && m->arg < SRC_NDEV) {
        what = sbx_dev_names[m->arg];
        sep = " /dev/";
    } else if (step == SBX_STEP_RUNMOUNT && m->arg >= 0 &&
               (size_t)m->arg < spec->nmounts) {
        what = spec->mounts[m->arg].target;
        sep = " ";
    } else if (step == SBX_STEP_CWD || step == SBX_STEP_CHDIR) {
        what = p->cwd;
        sep = " ";
    }
    int code = m->err > 0 ? -m->err : CAIRN_E_FAILED;
    return cairn_err_set(err, code, "sandbox: %s%s%s: %s", sbx_step_text[step],
                         sep, what, m->err > 0 ? strerror(m->err) : "failed");
}

/* Copies what the command wrote from the pipe out_rd to out_fd; returns
 * 0 at the end of the output, 1 while more may come. Output out_fd does
 * not take is dropped, so the command never blocks on it. A call reads
 * at most 256 KiB, so a chatty command cannot starve the stdin feed;
 * with drain set it reads what the pipe holds now and ends the output,
 * so a writer outside the sandbox cannot keep us here. */
static int sbx_relay(int out_rd, int out_fd, int drain)
{
    char buf[16384];
    size_t budget = 16 * sizeof buf;
    int avail = 0;
    if (drain)
        budget = ioctl(out_rd, FIONREAD, &avail) == 0 && avail > 0
                     ? (size_t)avail
                     : 0;
    while (budget > 0) {
        ssize_t r =
            read(out_rd, buf, budget < sizeof buf ? budget : sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            break;
        if (r <= 0)
            return 0;
        budget -= (size_t)r;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out_fd, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += w;
        }
    }
    return !drain;
}

/* Feeds stdin, relays the output and collects the records until all are
 * done. The output ends at its EOF, or once the helper C has exited
 * (pidfd readable: the whole PID namespace is gone then) and the pipe is
 * drained, in case something outside holds its write end. */
static void sbx_pump(int msg_fd, int in_fd, const char *data, size_t len,
                     int out_rd, int out_fd, int pidfd,
                     struct sbx_msg *first_err, struct sbx_msg *mounts)
{
    union {
        struct sbx_msg m;
        char b[sizeof(struct sbx_msg)];
    } rec;
    size_t have = 0, off = 0;
    while (msg_fd >= 0 || in_fd >= 0 || out_rd >= 0) {
        struct pollfd pf[4] = {{msg_fd, POLLIN, 0},
                               {in_fd, POLLOUT, 0},
                               {out_rd, POLLIN, 0},
                               {out_rd >= 0 ? pidfd : -1, POLLIN, 0}};
        if (poll(pf, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (out_rd >= 0 && (pf[2].revents || pf[3].revents) &&
            !sbx_relay(out_rd, out_fd, pf[3].revents != 0)) {
            close(out_rd);
            out_rd = -1;
        }
        if (pf[0].revents) {
            ssize_t r = read(msg_fd, rec.b + have, sizeof rec - have);
            if (r < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (r <= 0) {
                close(msg_fd);
                msg_fd = -1;
                continue;
            }
            have += (size_t)r;
            if (have == sizeof rec) {
                have = 0;
                if (rec.m.kind == SBX_MSG_ERROR && first_err->kind == 0)
                    *first_err = rec.m;
                else if (rec.m.kind == SBX_MSG_MOUNTPOINTS)
                    *mounts = rec.m;
            }
        }
        if (in_fd >= 0 && pf[1].revents) {
            ssize_t w = off < len ? write(in_fd, data + off, len - off) : 0;
            if (w < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (w > 0)
                off += (size_t)w;
            if (w < 0 || off == len) {
                close(in_fd);
                in_fd = -1;
            }
        }
    }
    if (msg_fd >= 0)
        close(msg_fd);
    if (in_fd >= 0)
        close(in_fd);
    if (out_rd >= 0)
        close(out_rd);
}

/* Removes mount points made in the merged tree from upperdir and lists
 * the created ones that are not (or no longer) in upperdir. */
/* True when rel exists in the image the lower directories make: the
 * top-most lower that has it decides, and a whiteout there (a 0/0
 * character device) means deleted. */
static int sbx_in_lowers(const struct cairn_run_spec *spec, const char *rel)
{
    for (size_t i = 0; i < spec->nlowerdirs; i++) {
        char *path = sbx_join(spec->lowerdirs[i], rel);
        struct stat st;
        int found = path != NULL && lstat(path, &st) == 0;
        free(path);
        if (found)
            return !(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
    }
    return 0;
}

/* Removes from upperdir the RUN --mount targets made in the merged tree,
 * and their parents, while they are empty and the image does not have
 * them: they existed only for the run. */
static void sbx_unmake_targets(const struct cairn_run_spec *spec,
                               const struct sbx_msg *mounts)
{
    for (size_t i = spec->nmounts; i-- > 0;) {
        if (!(mounts->made & (1 << i)))
            continue;
        char *rel = strdup(spec->mounts[i].target + 1);
        if (rel == NULL)
            return;
        for (;;) {
            char *path = sbx_join(spec->upperdir, rel);
            struct stat st;
            int removed = 0;
            if (path != NULL && lstat(path, &st) == 0 &&
                !sbx_in_lowers(spec, rel)) {
                if (S_ISDIR(st.st_mode))
                    removed = rmdir(path) == 0;
                else if (S_ISREG(st.st_mode) && st.st_size == 0)
                    removed = unlink(path) == 0;
            }
            free(path);
            char *slash = strrchr(rel, '/');
            if (!removed || slash == NULL)
                break;
            *slash = '\0';
        }
        free(rel);
    }
}

static int sbx_created(const struct cairn_run_spec *spec,
                       const struct sbx_msg *mounts, char ***out)
{
    sbx_unmake_targets(spec, mounts);
    for (int i = MP_COUNT - 1; i >= 0; i--) {
        if (!(mounts->arg2 & (1 << i)))
            continue;
        char *path = sbx_join(spec->upperdir, sbx_mountpoints[i].path);
        if (path == NULL)
            return CAIRN_E_NOMEM;
        struct stat st;
        /* Only what is still as we made it: an empty file or directory. */
        if (lstat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                rmdir(path);
            else if (S_ISREG(st.st_mode) && st.st_size == 0)
                unlink(path);
        }
        free(path);
    }
    struct cairn_strvec sv;
    cairn_strvec_init(&sv);
    for (int i = 0; i < MP_COUNT; i++) {
        if (!(mounts->arg & (1 << i)))
            continue;
        char *path = sbx_join(spec->upperdir, sbx_mountpoints[i].path);
        if (path == NULL) {
            cairn_strvec_free(&sv);
            return CAIRN_E_NOMEM;
        }
        struct stat st;
        int gone = lstat(path, &st) != 0 && errno == ENOENT;
        free(path);
        if (gone && cairn_strvec_push(&sv, sbx_mountpoints[i].path) != 0) {
            cairn_strvec_free(&sv);
            return CAIRN_E_NOMEM;
        }
    }
    size_t n;
    *out = cairn_strvec_take(&sv, &n);
    return *out ? 0 : CAIRN_E_NOMEM;
}

/* The checks of a run spec before anything is made for it. */
static int sbx_spec_check(const struct cairn_run_spec *spec,
                          struct cairn_err *err)
{
    if (spec == NULL || spec->argc == 0 ||
        spec->argv == NULL || spec->argv[0] == NULL ||
        spec->argv[0][0] == '\0' || spec->upperdir == NULL ||
        spec->workdir == NULL || spec->out_fd < 0 ||
        (spec->nlowerdirs > 0 && spec->lowerdirs == NULL) ||
        (spec->cwd != NULL && spec->cwd[0] != '/'))
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "sandbox: incomplete run spec");
    if (spec->nlowerdirs > SBX_MAX_LOWERS)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "sandbox: %zu layers; at most %d fit in an "
                             "overlay mount",
                             spec->nlowerdirs, SBX_MAX_LOWERS);
    if (spec->nmounts > CAIRN_RUN_MAX_MOUNTS)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "sandbox: %zu RUN --mount mounts; at most %d",
                             spec->nmounts, CAIRN_RUN_MAX_MOUNTS);
    for (size_t i = 0; i < spec->nmounts; i++) {
        const char *t = spec->mounts[i].target;
        if (t == NULL || t[0] != '/' || t[1] == '\0' || strstr(t, "//") ||
            strstr(t, "/./") || strstr(t, "/../") || t[strlen(t) - 1] == '/' ||
            (strlen(t) >= 3 && strcmp(t + strlen(t) - 3, "/..") == 0) ||
            (strlen(t) >= 2 && strcmp(t + strlen(t) - 2, "/.") == 0) ||
            strlen(t) >= PATH_MAX / 2 ||
            (spec->mounts[i].kind == CAIRN_RUN_MOUNT_BIND &&
             spec->mounts[i].source == NULL))
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "sandbox: bad RUN --mount target %s",
                                 t ? t : "(none)");
    }
    return 0;
}

/* sbx_pump (which closes the descriptors it is given), with SIGPIPE held
 * off this thread. */
static void sbx_pump_nosigpipe(int msg_fd, int in_fd,
                               const struct cairn_run_spec *spec, int out_fd,
                               int pidfd, struct sbx_msg *first_err,
                               struct sbx_msg *mounts)
{
    /* A command that exits without reading its stdin makes our write fail
     * with EPIPE; the SIGPIPE that comes with it is kept pending here and
     * taken back below, unless one was pending already. */
    sigset_t pipe_set, old_mask, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
    sigpending(&pending);
    int pipe_was_pending = sigismember(&pending, SIGPIPE);

    sbx_pump(msg_fd, in_fd, spec->stdin_data, spec->stdin_len, out_fd,
             spec->out_fd, pidfd, first_err, mounts);

    if (!pipe_was_pending) {
        struct timespec zero = {0, 0};
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE))
            sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
}

/* Waits for the helper pid and reaps it; its wait status, or -1 when it
 * was lost. */
static int sbx_reap(pid_t pid)
{
    /* Waited for without reaping first: until it is reaped the pid
     * cannot be reused, so kill_all never hits a stranger. */
    siginfo_t si;
    int st = 0;
    while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) < 0 &&
           errno == EINTR)
        ;
    sbx_register(pid, 0);
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            st = -1;
            break;
        }
    }
    return st;
}

int cairn_sandbox_run(const struct cairn_run_spec *spec,
                      struct cairn_run_result *result, struct cairn_err *err)
{
    if (result == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "sandbox: incomplete run spec");
    int rc = sbx_spec_check(spec, err);
    if (rc != 0)
        return rc;
    struct sbx_prep p;
    rc = sbx_prep_init(&p, spec, err);
    if (rc != 0)
        return rc;

    /* The command's stdout and stderr are a pipe we relay to out_fd, never
     * out_fd itself: that may be the user's terminal (see sbx_init). */
    int msg[2] = {-1, -1}, in[2] = {-1, -1}, out[2] = {-1, -1};
    int pidfd = -1;
    struct cairn_netns *net = NULL;
    if (spec->network == CAIRN_RUN_NET_DEFAULT) {
        rc = cairn_netns_open(p.dns_forward, &net, err);
        if (rc != 0)
            goto out;
        p.netns_fd = cairn_netns_fd(net);
    }
    if (pipe2(msg, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
        (spec->stdin_data != NULL && pipe2(in, O_CLOEXEC) != 0)) {
        rc = -errno;
        cairn_err_set(err, rc, "sandbox: create pipes: %s", strerror(errno));
        goto out;
    }
    p.msg_fd = msg[1];
    p.stdin_fd = in[0];
    p.out_fd = out[1];

    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        cairn_err_set(err, rc, "sandbox: fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0)
        sbx_helper(&p);
    sbx_register(pid, 1);
    close(msg[1]);
    msg[1] = -1;
    close(out[1]);
    out[1] = -1;
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    /* Without pidfds (Linux < 5.3) the output ends at its EOF only. */
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (in[0] >= 0) {
        close(in[0]);
        in[0] = -1;
        fcntl(in[1], F_SETFL, O_NONBLOCK);
    }

    struct sbx_msg first_err = {0}, mounts = {0};
    sbx_pump_nosigpipe(msg[0], in[1], spec, out[0], pidfd, &first_err,
                       &mounts);
    msg[0] = in[1] = out[0] = -1;

    int st = sbx_reap(pid);

    char **created = NULL;
    if (first_err.kind == SBX_MSG_ERROR) {
        rc = sbx_report(&first_err, &p, spec, err);
        if (mounts.kind == SBX_MSG_MOUNTPOINTS &&
            sbx_created(spec, &mounts, &created) == 0) {
            struct cairn_run_result tmp = {0, created}; /* for the cleanup */
            cairn_run_result_clear(&tmp);
        }
        goto out;
    }
    if (st == -1) {
        rc = cairn_err_set(err, CAIRN_E_FAILED,
                           "sandbox: lost the helper "
                           "process");
        goto out;
    }
    rc = sbx_created(spec, &mounts, &created);
    if (rc != 0) {
        cairn_err_set(err, rc, "sandbox: out of memory");
        goto out;
    }
    result->exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    result->created = created;
out:
    for (int i = 0; i < 2; i++) {
        if (msg[i] >= 0)
            close(msg[i]);
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
    }
    if (pidfd >= 0)
        close(pidfd);
    cairn_netns_close(net);
    sbx_prep_free(&p, spec->nlowerdirs);
    return rc;
}

void cairn_run_result_clear(struct cairn_run_result *result)
{
    if (result == NULL || result->created == NULL)
        return;
    for (char **c = result->created; *c != NULL; c++)
        free(*c);
    free(result->created);
    result->created = NULL;
}

/* ------------------------------------------------------------------ */

int cairn_sandbox_mount_ro(const char *const *lowerdirs, size_t n,
                           const char *target, struct cairn_err *err)
{
    if (target == NULL || (n > 0 && lowerdirs == NULL))
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "sandbox: mount_ro: no "
                             "target");
    if (n > SBX_MAX_LOWERS + 1)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "sandbox: %zu layers; at most %d fit in an "
                             "overlay mount",
                             n, SBX_MAX_LOWERS + 1);
    if (n == 0) {
        if (mount("tmpfs", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV,
                  "size=4k,mode=755") != 0)
            return cairn_err_set(err, -errno,
                                 "sandbox: mount an empty "
                                 "tmpfs on %s: %s",
                                 target, strerror(errno));
        return 0;
    }
    if (n == 1) {
        if (mount(lowerdirs[0], target, NULL, MS_BIND, NULL) != 0)
            return cairn_err_set(err, -errno, "sandbox: bind %s on %s: %s",
                                 lowerdirs[0], target, strerror(errno));
        if (mount(NULL, target, NULL,
                  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                  NULL) != 0) {
            int e = errno;
            umount2(target, MNT_DETACH);
            return cairn_err_set(err, -e, "sandbox: make %s read-only: %s",
                                 target, strerror(e));
        }
        return 0;
    }

    /* Two or more: an overlay with only lower directories is read-only.
     * The options name short symlinks relative to a temporary directory,
     * which a forked child enters before mounting (see the top). */
    char *abs = realpath(target, NULL);
    if (abs == NULL)
        return cairn_err_set(err, -errno, "sandbox: mount target %s: %s",
                             target, strerror(errno));
    char *dir = NULL;
    struct cairn_buf opts;
    cairn_buf_init(&opts, (size_t)sysconf(_SC_PAGESIZE) - 1);
    int rc = sbx_mkdtemp("cairn-ro", &dir, err);
    if (rc != 0)
        goto out;
    if ((rc = cairn_buf_puts(&opts, "lowerdir=")) != 0 ||
        (rc = sbx_link_lowers(dir, "", lowerdirs, n, &opts)) != 0) {
        cairn_err_set(err, rc, "sandbox: link the layers in %s: %s", dir,
                      cairn_strerror(rc));
        goto out;
    }
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        rc = cairn_err_set(err, -errno, "sandbox: pipe: %s", strerror(errno));
        goto out;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int e = 0;
        if (chdir(dir) != 0 ||
            mount("overlay", abs, "overlay", MS_RDONLY | MS_NOSUID | MS_NODEV,
                  opts.data) != 0)
            e = errno;
        ssize_t w = write(pfd[1], &e, sizeof e);
        (void)w;
        _exit(0);
    }
    close(pfd[1]);
    int e = EIO;
    if (pid < 0) {
        e = errno;
    } else {
        ssize_t r;
        do {
            r = read(pfd[0], &e, sizeof e);
        } while (r < 0 && errno == EINTR);
        if (r != (ssize_t)sizeof e)
            e = EIO;
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    close(pfd[0]);
    if (e != 0)
        rc = cairn_err_set(err, -e,
                           "sandbox: mount a read-only overlay of "
                           "%zu layers on %s: %s",
                           n, abs, strerror(e));
out:
    if (dir != NULL) {
        sbx_unlink_lowers(dir, "", n);
        rmdir(dir);
    }
    free(dir);
    free(abs);
    cairn_buf_free(&opts);
    return rc;
}

int cairn_sandbox_unmount(const char *target, struct cairn_err *err)
{
    if (target == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "sandbox: unmount: no "
                             "target");
    if (umount2(target, MNT_DETACH) != 0)
        return cairn_err_set(err, -errno, "sandbox: unmount %s: %s", target,
                             strerror(errno));
    return 0;
}
