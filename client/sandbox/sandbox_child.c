/* The RUN sandbox inside the children (see sandbox.c's opening comment
 * for the process layout): C, the helper, which joins or makes the
 * namespaces and forks G; G, the init, which builds the root, mounts,
 * drops privileges and execs the command. Everything here runs between
 * fork and exec: no allocation, no locks; a failure is a message on the
 * pipe to P (sbx_fail). The caller's side is client/sandbox/sandbox.c. */
#include "client/sandbox/sandbox_child.h"
#include "client/sandbox/sandbox_state.h"

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

/* The tables of sandbox_child.h. */
const struct sbx_mountpoint sbx_mountpoints[MP_COUNT] = {
    {"proc", 1},
    {"dev", 1},
    {"etc", 1},
    {"etc/hosts", 0},
    {"etc/resolv.conf", 0},
};

const char *const sbx_dev_names[SRC_NDEV] = {
    "null", "zero", "full", "random", "urandom", "tty",
};

const struct sbx_guard sbx_proc_guard[] = {
    {"/proc/bus", 0},           {"/proc/fs", 0},
    {"/proc/irq", 0},           {"/proc/sys", 0},
    {"/proc/sysrq-trigger", 0}, {"/proc/asound", 1},
    {"/proc/acpi", 1},          {"/proc/kcore", 1},
    {"/proc/keys", 1},          {"/proc/latency_stats", 1},
    {"/proc/timer_list", 1},    {"/proc/timer_stats", 1},
    {"/proc/sched_debug", 1},   {"/proc/scsi", 1},
};
const size_t sbx_nproc_guard = sizeof sbx_proc_guard / sizeof sbx_proc_guard[0];

/* ------------------------------------------------------------------ */
/* Small helpers usable in the children (no allocation, no locks). */

/* Parses a decimal id (no sign, no spaces, below 2^32-1). */
int sbx_parse_id(const char *s, size_t n, uint32_t *out)
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
int sbx_mkdir_p(const char *path)
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
int sbx_target_holds_cwd(const char *t, const char *cwd)
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

/* G: clones the trees of p->src (devices, /etc/hosts, /etc/resolv.conf)
 * into tree, before the pivot hides them; the files read-only. A device
 * the host lacks is -1. */
static void sbx_trees_clone(const struct sbx_prep *p, int tree[SRC_COUNT])
{
    int fd = p->msg_fd;
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
}

/* G: makes the overlay in the current directory's "root" the root. */
static void sbx_pivot(int fd)
{
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
}

/* G: makes the mount points the image lacks and tells the parent which
 * (struct sbx_msg: arg the mount points created, a stub of an earlier
 * run's included; arg2 those made here). */
static void sbx_mountpoints_make(int fd, struct sbx_msg *mp)
{
    /* Which mount points the image lacks: the stub's marker shows. */
    for (int i = 0; i < MP_COUNT; i++) {
        const char *path = sbx_mountpoints[i].path;
        struct stat st;
        if (lstat(path, &st) == 0) {
            if (st.st_mtim.tv_sec == SBX_MARK_SEC &&
                st.st_mtim.tv_nsec == SBX_MARK_NSEC)
                mp->arg |= 1 << i;
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
        mp->arg |= 1 << i;
        mp->arg2 |= 1 << i;
    }
    if (write(fd, mp, sizeof *mp) != (ssize_t)sizeof *mp)
        sbx_fail(fd, SBX_STEP_MOUNTPOINT, errno, -1);
}

/* G: /proc, a /dev of its own (the host's devices bound in from tree,
 * pts, shm, the usual links), then /proc's risky files covered. */
static void sbx_dev_mount(int fd, int tree[SRC_COUNT])
{
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
}

/* G: binds /etc/hosts and /etc/resolv.conf from tree. */
static void sbx_etc_attach(int fd, int tree[SRC_COUNT])
{
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
}

/* G: the command's stdin, stdout and stderr. */
static void sbx_stdio(const struct sbx_prep *p)
{
    int fd = p->msg_fd;
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
    sbx_trees_clone(p, tree);

    int mtree[CAIRN_RUN_MAX_MOUNTS];
    sbx_mounts_clone(p, mtree);

    sbx_pivot(fd);

    struct sbx_msg mp = {SBX_MSG_MOUNTPOINTS, 0, 0, 0, 0, 0};
    sbx_mountpoints_make(fd, &mp);

    sbx_dev_mount(fd, tree);

    sbx_etc_attach(fd, tree);

    sbx_mounts_attach(p, mtree, &mp);

    sbx_stdio(p);

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
_Noreturn void sbx_helper(struct sbx_prep *p)
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
