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

#define SBX_MAX_LOWERS 499
#define SBX_MAX_GROUPS 256
/* /etc/passwd and /etc/group bigger than this are refused (EFBIG). */
#define SBX_MAX_DBFILE (64u << 20)
#define SBX_DEFAULT_PATH                                                       \
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* The stub entries' mtime: no layer carries this (tar times are whole
 * seconds unless PAX says otherwise, and 1970 is unlikely). */
#define SBX_MARK_SEC 1
#define SBX_MARK_NSEC 424242424L
/* Exit status of C or G when setup failed (the message says why). */
#define SBX_EXIT_SETUP 125

/* Mount points, parents first. */
enum { MP_PROC, MP_DEV, MP_ETC, MP_HOSTS, MP_RESOLV, MP_COUNT };
static const struct {
    const char *path; /* relative to the root */
    int dir;
} sbx_mountpoints[MP_COUNT] = {
    {"proc", 1},
    {"dev", 1},
    {"etc", 1},
    {"etc/hosts", 0},
    {"etc/resolv.conf", 0},
};

/* Host files cloned into the sandbox: the devices, then /etc files. */
enum {
    SRC_NULL,
    SRC_ZERO,
    SRC_FULL,
    SRC_RANDOM,
    SRC_URANDOM,
    SRC_TTY,
    SRC_NDEV,
    SRC_HOSTS = SRC_NDEV,
    SRC_RESOLV,
    SRC_COUNT
};
static const char *const sbx_dev_names[SRC_NDEV] = {
    "null", "zero", "full", "random", "urandom", "tty",
};

/* /proc entries a RUN must not write or read, Docker's default list:
 * the kernel's tunables (core_pattern, whose "|program" the host kernel
 * runs as root on a crash) and triggers become read-only; files and
 * directories that leak host state (kernel memory, keys, timers) are
 * masked, a file by /dev/null bound over it, a directory by an empty
 * read-only tmpfs. Entries this kernel lacks are skipped. /sys is not
 * mounted at all (the image's /sys stays as it is, usually empty). */
static const struct {
    const char *path;
    int mask; /* 1: masked, 0: read-only */
} sbx_proc_guard[] = {
    {"/proc/bus", 0},           {"/proc/fs", 0},
    {"/proc/irq", 0},           {"/proc/sys", 0},
    {"/proc/sysrq-trigger", 0}, {"/proc/asound", 1},
    {"/proc/acpi", 1},          {"/proc/kcore", 1},
    {"/proc/keys", 1},          {"/proc/latency_stats", 1},
    {"/proc/timer_list", 1},    {"/proc/timer_stats", 1},
    {"/proc/sched_debug", 1},   {"/proc/scsi", 1},
};
#define SBX_NPROC_GUARD (sizeof sbx_proc_guard / sizeof sbx_proc_guard[0])

/* Setup steps, for the messages. */
#define SBX_STEPS(X)                                                           \
    X(SBX_STEP_FDS, "prepare file descriptors")                                \
    X(SBX_STEP_PDEATHSIG, "set the parent-death signal")                       \
    X(SBX_STEP_SETSID, "start a new session")                                  \
    X(SBX_STEP_NETNS, "join the RUN network namespace")                        \
    X(SBX_STEP_UNSHARE, "create namespaces (unshare)")                         \
    X(SBX_STEP_FORK, "fork the sandbox init")                                  \
    X(SBX_STEP_PRIVATE, "make the mount tree private")                         \
    X(SBX_STEP_HOSTNAME, "set the hostname")                                   \
    X(SBX_STEP_LOOPBACK, "bring up the loopback interface")                    \
    X(SBX_STEP_RUNDIR, "enter the run directory")                              \
    X(SBX_STEP_OVERLAY, "mount the overlay root")                              \
    X(SBX_STEP_CLONE, "clone host file")                                       \
    X(SBX_STEP_PIVOT, "pivot_root into the overlay")                           \
    X(SBX_STEP_MOUNTPOINT, "create mount point")                               \
    X(SBX_STEP_PROC, "mount /proc")                                            \
    X(SBX_STEP_DEV, "mount a tmpfs on /dev")                                   \
    X(SBX_STEP_DEVNODE, "bind-mount device")                                   \
    X(SBX_STEP_DEVPTS, "mount /dev/pts")                                       \
    X(SBX_STEP_SHM, "mount /dev/shm")                                          \
    X(SBX_STEP_DEVLINK, "create the /dev symlinks")                            \
    X(SBX_STEP_PROCMASK, "protect")                                            \
    X(SBX_STEP_BIND, "bind-mount")                                             \
    X(SBX_STEP_RUNMOUNT, "RUN --mount at")                                     \
    X(SBX_STEP_STDIO, "set up stdin, stdout and stderr")                       \
    X(SBX_STEP_PASSWD, "read /etc/passwd")                                     \
    X(SBX_STEP_GROUP, "read /etc/group")                                       \
    X(SBX_STEP_USER_NOTFOUND, "look up the user")                              \
    X(SBX_STEP_GROUP_NOTFOUND, "look up the group")                            \
    X(SBX_STEP_CWD, "create the working directory")                            \
    X(SBX_STEP_CHDIR, "enter the working directory")                           \
    X(SBX_STEP_SECCOMP, "install the seccomp filter")                          \
    X(SBX_STEP_CAPS, "drop capabilities")                                      \
    X(SBX_STEP_SETGROUPS, "set the supplementary groups")                      \
    X(SBX_STEP_SETGID, "set the group id")                                     \
    X(SBX_STEP_SETUID, "set the user id")                                      \
    X(SBX_STEP_EXEC_NOTFOUND, "look up the command")                           \
    X(SBX_STEP_EXEC, "exec the command")

enum sbx_step {
#define SBX_STEP_ENUM(name, text) name,
    SBX_STEPS(SBX_STEP_ENUM)
#undef SBX_STEP_ENUM
        SBX_STEP_COUNT
};

static const char *const sbx_step_text[SBX_STEP_COUNT] = {
#define SBX_STEP_TEXT(name, text) text,
    SBX_STEPS(SBX_STEP_TEXT)
#undef SBX_STEP_TEXT
};

/* Records on the message pipe (each well under PIPE_BUF, so atomic). */
enum { SBX_MSG_ERROR = 1, SBX_MSG_MOUNTPOINTS = 2 };
struct sbx_msg {
    int32_t kind;
    int32_t step; /* ERROR: enum sbx_step */
    int32_t err;  /* ERROR: errno (0 for the *_NOTFOUND steps) */
    int32_t arg;  /* ERROR: index into the step's table, or -1;
                     MOUNTPOINTS: bits of the mount points created */
    int32_t arg2; /* MOUNTPOINTS: bits of those made in the merged tree */
    int32_t made; /* MOUNTPOINTS: bits of the spec's mounts whose target
                     was made in the merged tree */
};

/* Everything C and G need, prepared by the caller before forking. */
struct sbx_prep {
    char *rundir;
    char *opts;                 /* overlay mount options */
    const char *src[SRC_COUNT]; /* host files to clone */
    char *own_hosts;            /* rundir files when generated */
    char *own_resolv;
    const char **argv; /* NULL-terminated; strings borrowed */
    const char **envp;
    const char *path; /* PATH for the command lookup */
    const char *cwd;
    const char *hostname;
    char *user_copy;         /* spec->user, split at ':' */
    const char *user;        /* NULL: "" (root by uid 0) */
    const char *group;       /* NULL: none given */
    int user_num, group_num; /* the part is numeric */
    uint32_t uid, gid;
    int network_none;
    int netns_fd;     /* the default network's namespace, or -1 */
    bool dns_forward; /* the default network: pasta relays DNS */
    pid_t parent_pid;
    int msg_fd, stdin_fd, out_fd;
    const struct sock_fprog *seccomp;     /* the RUN filter, process-wide */
    const struct cairn_run_mount *mounts; /* spec->mounts */
    size_t nmounts;
    char *mnt_path[CAIRN_RUN_MAX_MOUNTS]; /* DATA: "sec/N" in rundir */
    char *mnt_opts[CAIRN_RUN_MAX_MOUNTS]; /* TMPFS: mount options */
};

/* Sandboxes running in this process, for cairn_sandbox_kill_all. */
#define SBX_MAX_RUNNING 64
static _Atomic pid_t sbx_running[SBX_MAX_RUNNING];

/* ------------------------------------------------------------------ */
/* Small helpers usable in the children (no allocation, no locks). */

/* Parses a decimal id (no sign, no spaces, below 2^32-1). */
static int sbx_parse_id(const char *s, size_t n, uint32_t *out)
{
    if (n == 0 || n > 10)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v >= UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static _Noreturn void sbx_fail(int fd, enum sbx_step step, int e, int arg)
{
    struct sbx_msg m = {SBX_MSG_ERROR, (int32_t)step, e, arg, 0, 0};
    ssize_t w = write(fd, &m, sizeof m);
    (void)w;
    _exit(SBX_EXIT_SETUP);
}

/* One text field of a colon-separated line. */
struct sbx_field {
    const char *p;
    size_t n;
};

static int sbx_field_eq(const struct sbx_field *f, const char *s)
{
    size_t n = strlen(s);
    return f->n == n && memcmp(f->p, s, n) == 0;
}

/* Splits [p, end) into up to max fields at ':'; returns how many. */
static size_t sbx_split(const char *p, const char *end, struct sbx_field *f,
                        size_t max)
{
    size_t n = 0;
    const char *start = p;
    for (;; p++) {
        if (p == end || *p == ':') {
            if (n < max) {
                f[n].p = start;
                f[n].n = (size_t)(p - start);
            }
            n++;
            if (p == end)
                break;
            start = p + 1;
        }
    }
    return n < max ? n : max;
}

/* A read-only view of a small file (mmap); len 0 and map NULL when the
 * file is missing or empty. */
struct sbx_map {
    const char *map;
    size_t len;
};

static int sbx_map_open(const char *path, struct sbx_map *m)
{
    m->map = NULL;
    m->len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : errno;
    struct stat st;
    int e = 0;
    if (fstat(fd, &st) != 0) {
        e = errno;
    } else if (!S_ISREG(st.st_mode)) {
        e = EINVAL;
    } else if ((uint64_t)st.st_size > SBX_MAX_DBFILE) {
        e = EFBIG;
    } else if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            e = errno;
        } else {
            m->map = p;
            m->len = (size_t)st.st_size;
        }
    }
    close(fd);
    return e;
}

/* Calls back once per non-empty, non-comment line; stops when cb returns
 * non-zero. */
static void sbx_map_lines(const struct sbx_map *m,
                          int (*cb)(void *arg, const char *p, const char *end),
                          void *arg)
{
    const char *p = m->map, *end = m->map + m->len;
    while (p != NULL && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le > p && *p != '#' && cb(arg, p, le))
            return;
        p = le + 1;
    }
}

/* The user lookup, modelled on runc's GetExecUser. */
struct sbx_ids {
    const struct sbx_prep *prep;
    uint32_t uid, gid;
    int matched; /* a passwd entry matched */
    char name[256];
    int group_found;
    size_t ngroups;
    gid_t groups[SBX_MAX_GROUPS];
};

static int sbx_passwd_line(void *arg, const char *p, const char *end)
{
    struct sbx_ids *ids = arg;
    const struct sbx_prep *pr = ids->prep;
    struct sbx_field f[7];
    size_t n = sbx_split(p, end, f, 7);
    uint32_t uid, gid;
    if (n < 4 || sbx_parse_id(f[2].p, f[2].n, &uid) != 0 ||
        sbx_parse_id(f[3].p, f[3].n, &gid) != 0)
        return 0;
    int hit;
    if (pr->user == NULL)
        hit = uid == 0;
    else if (pr->user_num)
        hit = uid == pr->uid;
    else
        hit = sbx_field_eq(&f[0], pr->user);
    if (!hit || f[0].n >= sizeof ids->name)
        return 0;
    ids->uid = uid;
    ids->gid = gid;
    memcpy(ids->name, f[0].p, f[0].n);
    ids->name[f[0].n] = '\0';
    ids->matched = 1;
    return 1;
}

static int sbx_group_line(void *arg, const char *p, const char *end)
{
    struct sbx_ids *ids = arg;
    const struct sbx_prep *pr = ids->prep;
    struct sbx_field f[4];
    size_t n = sbx_split(p, end, f, 4);
    uint32_t gid;
    if (n < 3 || sbx_parse_id(f[2].p, f[2].n, &gid) != 0)
        return 0;
    if (pr->group != NULL) {
        int hit =
            pr->group_num ? gid == pr->gid : sbx_field_eq(&f[0], pr->group);
        if (hit) {
            ids->gid = gid;
            ids->group_found = 1;
        }
        return hit;
    }
    /* No group given: the groups that list the user are supplementary. */
    if (n < 4)
        return 0;
    const char *m = f[3].p, *mend = f[3].p + f[3].n;
    while (m < mend) {
        const char *c = memchr(m, ',', (size_t)(mend - m));
        const char *e = c ? c : mend;
        struct sbx_field member = {m, (size_t)(e - m)};
        if (sbx_field_eq(&member, ids->name)) {
            if (ids->ngroups < SBX_MAX_GROUPS)
                ids->groups[ids->ngroups++] = gid;
            break;
        }
        m = e + 1;
    }
    return 0;
}

/* Resolves the user inside the new root (G, before dropping root). */
static void sbx_resolve_user(const struct sbx_prep *p, struct sbx_ids *ids)
{
    memset(ids, 0, sizeof *ids);
    ids->prep = p;
    ids->uid = p->user != NULL && p->user_num ? p->uid : 0;
    struct sbx_map m;
    int e = sbx_map_open("/etc/passwd", &m);
    if (e != 0)
        sbx_fail(p->msg_fd, SBX_STEP_PASSWD, e, -1);
    sbx_map_lines(&m, sbx_passwd_line, ids);
    if (m.map != NULL)
        munmap((void *)m.map, m.len);
    if (!ids->matched && p->user != NULL && !p->user_num)
        sbx_fail(p->msg_fd, SBX_STEP_USER_NOTFOUND, 0, -1);
    if (p->group == NULL && !ids->matched)
        return;
    e = sbx_map_open("/etc/group", &m);
    if (e != 0)
        sbx_fail(p->msg_fd, SBX_STEP_GROUP, e, -1);
    sbx_map_lines(&m, sbx_group_line, ids);
    if (m.map != NULL)
        munmap((void *)m.map, m.len);
    if (p->group != NULL && !ids->group_found) {
        if (!p->group_num)
            sbx_fail(p->msg_fd, SBX_STEP_GROUP_NOTFOUND, 0, -1);
        ids->gid = p->gid;
    }
}

/* mkdir -p with 0755 directories owned by root (we are still root), in
 * the new root. Existing symlinks on the way are followed by the kernel;
 * a dangling one gets the directory it names made, as Docker's WORKDIR
 * does (the path goes on from the link's target, up to 40 links). */
static int sbx_mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf)
        return ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    unsigned links = 0;
restart:
    n = strlen(buf);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return errno;
        struct stat st;
        if (stat(buf, &st) != 0 && errno == ENOENT && lstat(buf, &st) == 0 &&
            S_ISLNK(st.st_mode)) {
            if (++links > 40)
                return ELOOP;
            char t[PATH_MAX], nb[PATH_MAX];
            ssize_t tl = readlink(buf, t, sizeof t - 1);
            if (tl < 0)
                return errno;
            t[tl] = '\0';
            const char *rest = c ? buf + i + 1 : "";
            char *slash = strrchr(buf, '/');
            int w;
            if (t[0] == '/') {
                w = snprintf(nb, sizeof nb, "%s/%s", t, rest);
            } else {
                *slash = '\0'; /* the link's directory */
                w = snprintf(nb, sizeof nb, "%s/%s/%s", buf, t, rest);
            }
            if (w < 0 || (size_t)w >= sizeof nb)
                return ENAMETOOLONG;
            memcpy(buf, nb, (size_t)w + 1);
            goto restart;
        }
        buf[i] = c;
    }
    return 0;
}

static int sbx_loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int e = 0;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
        e = errno;
    } else {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
            e = errno;
    }
    close(s);
    return e;
}

/* Docker's default capability set; everything else leaves the bounding
 * set, so not even root in the sandbox can get it back. */
static const int sbx_keep_caps[] = {
    CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,
    CAP_MKNOD,   CAP_NET_RAW,      CAP_SETGID,           CAP_SETUID,
    CAP_SETFCAP, CAP_SETPCAP,      CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
    CAP_KILL,    CAP_AUDIT_WRITE,
};

/* no_raw: CAP_NET_RAW goes too (the default network: netns.h says why). */
static int sbx_drop_caps(int no_raw)
{
    uint64_t keep = 0;
    for (size_t i = 0; i < sizeof sbx_keep_caps / sizeof sbx_keep_caps[0]; i++)
        keep |= UINT64_C(1) << sbx_keep_caps[i];
    if (no_raw)
        keep &= ~(UINT64_C(1) << CAP_NET_RAW);
    for (int cap = 0; cap < 64; cap++) {
        if (keep & (UINT64_C(1) << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EINVAL)
                break; /* past the kernel's last capability */
            return errno;
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 &&
        errno != EINVAL)
        return errno;
    /* Root's permitted set after exec is inheritable | bounding, so the
     * inheritable set is cut too. */
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &hdr, data) != 0)
        return errno;
    for (int i = 0; i < 2; i++) {
        uint32_t k = (uint32_t)(keep >> (32 * i));
        data[i].inheritable &= k;
        data[i].permitted &= k;
        data[i].effective &= k;
    }
    if (syscall(SYS_capset, &hdr, data) != 0)
        return errno;
    return 0;
}

/* Attaches a cloned host file (open_tree fd) at target in the root. */
static int sbx_attach(int tree, const char *target, unsigned flags)
{
    if (move_mount(tree, "", AT_FDCWD, target,
                   MOVE_MOUNT_F_EMPTY_PATH | flags) != 0)
        return errno;
    return 0;
}

/* G, once /proc and /dev/null are in place: applies sbx_proc_guard. A
 * read-only entry is bound on itself and the bind remounted read-only
 * (a remount of /proc itself would make every process's files
 * read-only too). The command has no CAP_SYS_ADMIN to undo any of it. */
static void sbx_proc_protect(int fd)
{
    const unsigned long ro =
        MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
    for (size_t i = 0; i < SBX_NPROC_GUARD; i++) {
        const char *path = sbx_proc_guard[i].path;
        struct stat st;
        if (lstat(path, &st) != 0) {
            if (errno == ENOENT)
                continue;
            sbx_fail(fd, SBX_STEP_PROCMASK, errno, (int)i);
        }
        int rc;
        if (!sbx_proc_guard[i].mask)
            rc = mount(path, path, NULL, MS_BIND | MS_REC, NULL) != 0 ||
                 mount(NULL, path, NULL, ro, NULL) != 0;
        else if (S_ISDIR(st.st_mode))
            rc = mount("tmpfs", path, "tmpfs",
                       MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                       "size=4k,mode=555") != 0;
        else
            rc = mount("/dev/null", path, NULL, MS_BIND, NULL) != 0;
        if (rc)
            sbx_fail(fd, SBX_STEP_PROCMASK, errno, (int)i);
    }
}

/* Execs argv[0], looked up in PATH when it has no '/'. Returns only on
 * failure, through sbx_fail. */
static _Noreturn void sbx_exec(const struct sbx_prep *p)
{
    const char *file = p->argv[0];
    char *const *argv = (char *const *)p->argv;
    char *const *envp = (char *const *)p->envp;
    if (strchr(file, '/') != NULL) {
        execve(file, argv, envp);
        sbx_fail(p->msg_fd, SBX_STEP_EXEC, errno, -1);
    }
    size_t flen = strlen(file);
    int eacces = 0;
    const char *s = p->path;
    for (;;) {
        const char *c = strchr(s, ':');
        size_t dlen = c ? (size_t)(c - s) : strlen(s);
        char buf[PATH_MAX];
        if (dlen == 0) {
            buf[0] = '.';
            dlen = 1;
        } else if (dlen + flen + 2 <= sizeof buf) {
            memcpy(buf, s, dlen);
        }
        if (dlen + flen + 2 <= sizeof buf) {
            buf[dlen] = '/';
            memcpy(buf + dlen + 1, file, flen + 1);
            execve(buf, argv, envp);
            if (errno == EACCES)
                eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR &&
                     errno != ENAMETOOLONG)
                sbx_fail(p->msg_fd, SBX_STEP_EXEC, errno, -1);
        }
        if (c == NULL)
            break;
        s = c + 1;
    }
    if (eacces)
        sbx_fail(p->msg_fd, SBX_STEP_EXEC, EACCES, -1);
    sbx_fail(p->msg_fd, SBX_STEP_EXEC_NOTFOUND, 0, -1);
}

/* True when the mount target t is cwd or one of its parents: the run
 * creates cwd in the image when it is missing (Docker's WORKDIR rule), so
 * such a target is made for real, not on the stub, and stays. */
static int sbx_target_holds_cwd(const char *t, const char *cwd)
{
    size_t n = strlen(t);
    return cwd != NULL && strncmp(cwd, t, n) == 0 &&
           (cwd[n] == '\0' || cwd[n] == '/');
}

/* G, before pivot_root: the trees of the RUN --mount binds and data
 * files, cloned while host paths still resolve (DATA files are written to
 * a tmpfs of G's own mount namespace first, so a secret never touches a
 * disk). TMPFS mounts need nothing here (-1). */
static void sbx_mounts_clone(const struct sbx_prep *p, int *tree)
{
    int fd = p->msg_fd;
    int sec_mounted = 0;
    for (size_t i = 0; i < p->nmounts; i++) {
        const struct cairn_run_mount *m = &p->mounts[i];
        tree[i] = -1;
        const char *src = m->source;
        if (m->kind == CAIRN_RUN_MOUNT_TMPFS)
            continue;
        if (m->kind == CAIRN_RUN_MOUNT_DATA) {
            if (!sec_mounted &&
                mount("tmpfs", "sec", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      "mode=0700") != 0)
                sbx_fail(fd, SBX_STEP_RUNMOUNT, errno, (int)i);
            sec_mounted = 1;
            int f = open(p->mnt_path[i],
                         O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (f < 0)
                sbx_fail(fd, SBX_STEP_RUNMOUNT, errno, (int)i);
            const char *d = m->data;
            size_t off = 0;
            while (off < m->len) {
                ssize_t w = write(f, d + off, m->len - off);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    sbx_fail(fd, SBX_STEP_RUNMOUNT, w < 0 ? errno : EIO,
                             (int)i);
                off += (size_t)w;
            }
            if (fchown(f, m->uid, m->gid) != 0 ||
                fchmod(f, (mode_t)(m->mode & 07777)) != 0)
                sbx_fail(fd, SBX_STEP_RUNMOUNT, errno, (int)i);
            close(f);
            src = p->mnt_path[i];
        }
        tree[i] = open_tree(AT_FDCWD, src,
                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree[i] < 0)
            sbx_fail(fd, SBX_STEP_RUNMOUNT, errno, (int)i);
        struct mount_attr attr = {
            .attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        };
        if (m->readonly || m->kind == CAIRN_RUN_MOUNT_DATA)
            attr.attr_set |= MOUNT_ATTR_RDONLY;
        if (mount_setattr(tree[i], "", AT_EMPTY_PATH | AT_RECURSIVE, &attr,
                          sizeof attr) != 0)
            sbx_fail(fd, SBX_STEP_RUNMOUNT, errno, (int)i);
    }
}

/* G, inside the root: mounts each RUN --mount at its target, making the
 * target in the merged tree when the stub could not provide it, and
 * reports those (they are removed from upperdir after the run). */
static void sbx_mounts_attach(const struct sbx_prep *p, const int *tree,
                              struct sbx_msg *mp)
{
    int fd = p->msg_fd;
    struct sbx_msg made = {SBX_MSG_MOUNTPOINTS, 0, 0, mp->arg, mp->arg2, 0};
    for (size_t i = 0; i < p->nmounts; i++) {
        const struct cairn_run_mount *m = &p->mounts[i];
        struct stat st;
        if (lstat(m->target, &st) != 0) {
            if (errno != ENOENT)
                sbx_fail(fd, SBX_STEP_RUNMOUNT, errno, (int)i);
            char parent[PATH_MAX];
            size_t n = strlen(m->target);
            if (n >= sizeof parent)
                sbx_fail(fd, SBX_STEP_RUNMOUNT, ENAMETOOLONG, (int)i);
            memcpy(parent, m->target, n + 1);
            char *slash = strrchr(parent, '/');
            if (slash != NULL && slash != parent) {
                *slash = '\0';
                int e = sbx_mkdir_p(parent);
                if (e != 0)
                    sbx_fail(fd, SBX_STEP_RUNMOUNT, e, (int)i);
            }
            if (m->file) {
                int f = open(m->target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                             0644);
                if (f < 0)
                    sbx_fail(fd, SBX_STEP_RUNMOUNT, errno, (int)i);
                close(f);
            } else if (mkdir(m->target, 0755) != 0) {
                sbx_fail(fd, SBX_STEP_RUNMOUNT, errno, (int)i);
            }
            if (!sbx_target_holds_cwd(m->target, p->cwd))
                made.made |= 1 << i;
        }
        if (m->kind == CAIRN_RUN_MOUNT_TMPFS) {
            if (mount("tmpfs", m->target, "tmpfs", MS_NOSUID | MS_NODEV,
                      p->mnt_opts[i]) != 0)
                sbx_fail(fd, SBX_STEP_RUNMOUNT, errno, (int)i);
        } else {
            int e = sbx_attach(tree[i], m->target, 0);
            if (e != 0)
                sbx_fail(fd, SBX_STEP_RUNMOUNT, e, (int)i);
            close(tree[i]);
        }
    }
    if (made.made != 0 && write(fd, &made, sizeof made) != (ssize_t)sizeof made)
        sbx_fail(fd, SBX_STEP_RUNMOUNT, errno, -1);
}

/* G: PID 1 of the new namespaces. Sets up the root and execs. */
static _Noreturn void sbx_init(const struct sbx_prep *p, int alive_fd)
{
    int fd = p->msg_fd;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        sbx_fail(fd, SBX_STEP_PDEATHSIG, errno, -1);
    /* C may have died before the line above; its end of the pipe tells. */
    struct pollfd pf = {alive_fd, POLLIN, 0};
    if (poll(&pf, 1, 0) != 0)
        _exit(SBX_EXIT_SETUP);
    close(alive_fd);
    /* A session of its own, so no terminal is the command's controlling
     * one: /dev/tty cannot be opened (ENXIO), TIOCSTI is refused (EPERM)
     * and the terminal's signals do not reach it (C still gets them and
     * G dies with C). Its stdin, stdout and stderr are pipes or /dev/null
     * (cairn_sandbox_run), never the caller's terminal. */
    if (setsid() < 0)
        sbx_fail(fd, SBX_STEP_SETSID, errno, -1);
    umask(022);

    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        sbx_fail(fd, SBX_STEP_PRIVATE, errno, -1);
    if (sethostname(p->hostname, strlen(p->hostname)) != 0)
        sbx_fail(fd, SBX_STEP_HOSTNAME, errno, -1);
    if (p->network_none) {
        int e = sbx_loopback_up();
        if (e != 0)
            sbx_fail(fd, SBX_STEP_LOOPBACK, e, -1);
    }
    if (chdir(p->rundir) != 0)
        sbx_fail(fd, SBX_STEP_RUNDIR, errno, -1);
    /* nodev: a device node the command makes (it keeps CAP_MKNOD, as under
     * Docker, so the layer can record one) or a layer brings cannot be
     * opened. The host's devices in /dev are binds with their own flags. */
    if (mount("overlay", "root", "overlay", MS_NODEV, p->opts) != 0)
        sbx_fail(fd, SBX_STEP_OVERLAY, errno, -1);

    int tree[SRC_COUNT];
    for (int i = 0; i < SRC_COUNT; i++) {
        tree[i] =
            open_tree(AT_FDCWD, p->src[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        /* A host without some device (a minimal container) still runs. */
        if (tree[i] < 0 && i < SRC_NDEV && errno == ENOENT)
            continue;
        if (tree[i] < 0)
            sbx_fail(fd, SBX_STEP_CLONE, errno, i);
        if (i >= SRC_NDEV) {
            struct mount_attr attr = {
                .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                            MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            };
            if (mount_setattr(tree[i], "", AT_EMPTY_PATH, &attr, sizeof attr) !=
                0)
                sbx_fail(fd, SBX_STEP_CLONE, errno, i);
        }
    }

    int mtree[CAIRN_RUN_MAX_MOUNTS];
    sbx_mounts_clone(p, mtree);

    /* pivot_root(".", ".") stacks the old root on the new one; detaching
     * it leaves only the overlay. Where pivot_root is refused (an
     * initramfs root), moving the mount and chroot does the job. */
    if (chdir("root") != 0)
        sbx_fail(fd, SBX_STEP_PIVOT, errno, -1);
    if (syscall(SYS_pivot_root, ".", ".") == 0) {
        if (umount2(".", MNT_DETACH) != 0)
            sbx_fail(fd, SBX_STEP_PIVOT, errno, -1);
    } else if (mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0) {
        sbx_fail(fd, SBX_STEP_PIVOT, errno, -1);
    }
    if (chdir("/") != 0)
        sbx_fail(fd, SBX_STEP_PIVOT, errno, -1);

    /* Which mount points the image lacks: the stub's marker shows. */
    struct sbx_msg mp = {SBX_MSG_MOUNTPOINTS, 0, 0, 0, 0, 0};
    for (int i = 0; i < MP_COUNT; i++) {
        const char *path = sbx_mountpoints[i].path;
        struct stat st;
        if (lstat(path, &st) == 0) {
            if (st.st_mtim.tv_sec == SBX_MARK_SEC &&
                st.st_mtim.tv_nsec == SBX_MARK_NSEC)
                mp.arg |= 1 << i;
            continue;
        }
        if (errno != ENOENT)
            sbx_fail(fd, SBX_STEP_MOUNTPOINT, errno, i);
        if (sbx_mountpoints[i].dir) {
            if (mkdir(path, 0755) != 0)
                sbx_fail(fd, SBX_STEP_MOUNTPOINT, errno, i);
        } else {
            int f = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (f < 0)
                sbx_fail(fd, SBX_STEP_MOUNTPOINT, errno, i);
            close(f);
        }
        mp.arg |= 1 << i;
        mp.arg2 |= 1 << i;
    }
    if (write(fd, &mp, sizeof mp) != (ssize_t)sizeof mp)
        sbx_fail(fd, SBX_STEP_MOUNTPOINT, errno, -1);

    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              NULL) != 0)
        sbx_fail(fd, SBX_STEP_PROC, errno, -1);
    if (mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME,
              "mode=755,size=65536k") != 0)
        sbx_fail(fd, SBX_STEP_DEV, errno, -1);
    for (int i = 0; i < SRC_NDEV; i++) {
        if (tree[i] < 0)
            continue;
        char path[32];
        size_t n = strlen(sbx_dev_names[i]);
        memcpy(path, "/dev/", 5);
        memcpy(path + 5, sbx_dev_names[i], n + 1);
        int f = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f < 0)
            sbx_fail(fd, SBX_STEP_DEVNODE, errno, i);
        close(f);
        int e = sbx_attach(tree[i], path, 0);
        if (e != 0)
            sbx_fail(fd, SBX_STEP_DEVNODE, e, i);
        close(tree[i]);
    }
    if (mkdir("/dev/pts", 0755) != 0 ||
        mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,gid=5") != 0)
        sbx_fail(fd, SBX_STEP_DEVPTS, errno, -1);
    if (mkdir("/dev/shm", 01777) != 0 ||
        mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=1777,size=65536k") != 0)
        sbx_fail(fd, SBX_STEP_SHM, errno, -1);
    if (symlink("pts/ptmx", "/dev/ptmx") != 0 ||
        symlink("/proc/self/fd", "/dev/fd") != 0 ||
        symlink("/proc/self/fd/0", "/dev/stdin") != 0 ||
        symlink("/proc/self/fd/1", "/dev/stdout") != 0 ||
        symlink("/proc/self/fd/2", "/dev/stderr") != 0)
        sbx_fail(fd, SBX_STEP_DEVLINK, errno, -1);
    sbx_proc_protect(fd);

    /* /etc/hosts and /etc/resolv.conf: an image's symlink is followed
     * (inside the root); a dangling one is left alone. */
    for (int i = SRC_HOSTS; i < SRC_COUNT; i++) {
        int m = i == SRC_HOSTS ? MP_HOSTS : MP_RESOLV;
        const char *target = sbx_mountpoints[m].path;
        struct stat st;
        if (stat(target, &st) == 0) {
            int e = sbx_attach(tree[i], target, MOVE_MOUNT_T_SYMLINKS);
            if (e != 0)
                sbx_fail(fd, SBX_STEP_BIND, e, m);
        } else if (errno != ENOENT) {
            sbx_fail(fd, SBX_STEP_BIND, errno, m);
        }
        close(tree[i]);
    }

    sbx_mounts_attach(p, mtree, &mp);

    /* stdio: the descriptors are 3 or above (C moved them), so the dup2
     * calls cannot overwrite one another. */
    int in = p->stdin_fd;
    if (in < 0) {
        in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (in < 0)
            sbx_fail(fd, SBX_STEP_STDIO, errno, -1);
    }
    if (dup2(in, 0) < 0 || dup2(p->out_fd, 1) < 0 || dup2(p->out_fd, 2) < 0)
        sbx_fail(fd, SBX_STEP_STDIO, errno, -1);

    struct sbx_ids ids;
    sbx_resolve_user(p, &ids);

    int e = sbx_mkdir_p(p->cwd);
    if (e != 0)
        sbx_fail(fd, SBX_STEP_CWD, e, -1);
    if (chdir(p->cwd) != 0)
        sbx_fail(fd, SBX_STEP_CHDIR, errno, -1);

    /* The filter goes on while G still holds CAP_SYS_ADMIN: without it a
     * filter needs no_new_privs, which Docker does not set either (it
     * would disarm setuid programs in the RUN). Every call from here to
     * the exec (prctl, capget, capset, setgroups, setgid, setuid, execve,
     * and write and exit_group on failure) is one the filter allows. */
    e = cairn_seccomp_filter_install(p->seccomp);
    if (e != 0)
        sbx_fail(fd, SBX_STEP_SECCOMP, -e, -1);
    e = sbx_drop_caps(p->netns_fd >= 0);
    if (e != 0)
        sbx_fail(fd, SBX_STEP_CAPS, e, -1);
    if (setgroups(ids.ngroups, ids.groups) != 0)
        sbx_fail(fd, SBX_STEP_SETGROUPS, errno, -1);
    if (setgid(ids.gid) != 0)
        sbx_fail(fd, SBX_STEP_SETGID, errno, -1);
    if (setuid(ids.uid) != 0)
        sbx_fail(fd, SBX_STEP_SETUID, errno, -1);
    sbx_exec(p);
}

/* Moves fd to 3 or above (close-on-exec); the old one stays open. */
static int sbx_fd_high(int fd)
{
    return fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

/* Closes every descriptor from lo up except those in keep (sorted). */
static void sbx_close_except(unsigned lo, const int *keep, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (keep[i] < 0 || (unsigned)keep[i] < lo)
            continue;
        if ((unsigned)keep[i] > lo)
            close_range(lo, (unsigned)keep[i] - 1, 0);
        lo = (unsigned)keep[i] + 1;
    }
    close_range(lo, ~0U, 0);
}

/* C: namespaces, the init, and its exit status. */
static _Noreturn void sbx_helper(struct sbx_prep *p)
{
    /* P's handlers, ignored signals and mask must not reach the command
     * (and a terminal's SIGINT must kill this process). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) {
        if (s != SIGKILL && s != SIGSTOP)
            sigaction(s, &sa, NULL); /* glibc's internal ones fail: fine */
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    /* Before the descriptor is closed with the rest below. */
    if (p->netns_fd >= 0 && setns(p->netns_fd, CLONE_NEWNET) != 0)
        sbx_fail(p->msg_fd, SBX_STEP_NETNS, errno, -1);

    /* Keep only our three descriptors, all at 3 or above. */
    int msg = sbx_fd_high(p->msg_fd);
    if (msg < 0)
        sbx_fail(p->msg_fd, SBX_STEP_FDS, errno, -1);
    p->msg_fd = msg;
    p->out_fd = sbx_fd_high(p->out_fd);
    if (p->out_fd < 0)
        sbx_fail(msg, SBX_STEP_FDS, errno, -1);
    if (p->stdin_fd >= 0) {
        p->stdin_fd = sbx_fd_high(p->stdin_fd);
        if (p->stdin_fd < 0)
            sbx_fail(msg, SBX_STEP_FDS, errno, -1);
    }
    /* Sorted by hand: qsort may allocate. */
    int keep[3] = {p->msg_fd, p->out_fd, p->stdin_fd};
    for (int i = 1; i < 3; i++) {
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    }
    sbx_close_except(3, keep, 3);

    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        sbx_fail(msg, SBX_STEP_PDEATHSIG, errno, -1);
    if (getppid() != p->parent_pid)
        _exit(SBX_EXIT_SETUP);
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
    if (p->network_none)
        flags |= CLONE_NEWNET;
    if (unshare(flags) != 0)
        sbx_fail(msg, SBX_STEP_UNSHARE, errno, -1);
    int alive[2];
    if (pipe2(alive, O_CLOEXEC) != 0)
        sbx_fail(msg, SBX_STEP_FORK, errno, -1);
    pid_t g = _Fork();
    if (g < 0)
        sbx_fail(msg, SBX_STEP_FORK, errno, -1);
    if (g == 0) {
        close(alive[1]);
        sbx_init(p, alive[0]);
    }
    /* C keeps nothing but its end of the alive pipe, so P sees the
     * message pipe's EOF and the command its stdin's as soon as G is
     * done with them. */
    sbx_close_except(0, &alive[1], 1);
    int st;
    while (waitpid(g, &st, 0) < 0) {
        if (errno != EINTR)
            _exit(SBX_EXIT_SETUP);
    }
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

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
    struct cairn_buf opts;
    cairn_buf_init(&opts, (size_t)sysconf(_SC_PAGESIZE) - 1);
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
    if ((rc = sbx_make_in(p->rundir, "sec", 0700, NULL)) != 0)
        goto out;
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
    if (rc != 0)
        goto out;

    step = "link the layer directories";
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
    if (p->opts == NULL) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }

    step = "write the network files";
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
    if (own_net || access("/etc/hosts", F_OK) != 0) {
        rc = sbx_write_file(p->rundir, "hosts",
                            spec->network == CAIRN_RUN_NET_DEFAULT
                                ? "127.0.0.1\tlocalhost\n::1\tlocalhost "
                                  "ip6-localhost ip6-loopback\n"
                                : "127.0.0.1\tlocalhost\n",
                            &p->own_hosts);
        if (rc != 0)
            goto out;
        p->src[SRC_HOSTS] = p->own_hosts;
    }
    if (own_net || access("/etc/resolv.conf", F_OK) != 0) {
        rc = spec->network == CAIRN_RUN_NET_DEFAULT
                 ? sbx_resolv_conf(p, &p->dns_forward)
                 : sbx_write_file(p->rundir, "resolv.conf", "", &p->own_resolv);
        if (rc != 0)
            goto out;
        p->src[SRC_RESOLV] = p->own_resolv;
    }

    step = "prepare the command";
    p->argv = calloc(spec->argc + 1, sizeof *p->argv);
    p->envp = calloc(spec->nenv + 1, sizeof *p->envp);
    if (p->argv == NULL || p->envp == NULL) {
        rc = CAIRN_E_NOMEM;
        goto out;
    }
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
out:
    cairn_buf_free(&opts);
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

int cairn_sandbox_run(const struct cairn_run_spec *spec,
                      struct cairn_run_result *result, struct cairn_err *err)
{
    if (spec == NULL || result == NULL || spec->argc == 0 ||
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
    struct sbx_prep p;
    int rc = sbx_prep_init(&p, spec, err);
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

    /* A command that exits without reading its stdin makes our write fail
     * with EPIPE; the SIGPIPE that comes with it is kept pending here and
     * taken back below, unless one was pending already. */
    sigset_t pipe_set, old_mask, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
    sigpending(&pending);
    int pipe_was_pending = sigismember(&pending, SIGPIPE);

    struct sbx_msg first_err = {0}, mounts = {0};
    sbx_pump(msg[0], in[1], spec->stdin_data, spec->stdin_len, out[0],
             spec->out_fd, pidfd, &first_err, &mounts);
    msg[0] = in[1] = out[0] = -1;

    if (!pipe_was_pending) {
        struct timespec zero = {0, 0};
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE))
            sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);

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
