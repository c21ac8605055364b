/* sandbox_probe: reports what a process may do from inside a sandbox, so
 * tests can run it in a cairn RUN step and in `docker run` and compare.
 *
 *   sandbox_probe check [--netns INODE] [--tcp PORT] [--unix NAME]
 *                       [--sid SID] [--mknod-dir DIR]...
 *   sandbox_probe serve NAME
 *   sandbox_probe listen-tcp|connect-tcp|listen-abstract|... (probe_net.h)
 *
 * check prints one line per check, "NAME allowed DETAIL" or "NAME denied
 * DETAIL", where allowed means the sandbox let the (risky) thing happen.
 * Every check runs in a child process of its own, so one that changes the
 * process (a new namespace, a personality) cannot affect the next; a child
 * killed by a signal (a seccomp kill) counts as denied.
 *
 * Nothing here does harm when it is allowed: /proc/sys files and
 * /proc/sysrq-trigger are opened for writing and closed, never written;
 * TIOCSTI is called with a NULL character pointer, so the kernel's
 * permission checks run but it fails with EFAULT before it reads a
 * character (EFAULT therefore means "permitted"); kexec_load gets one
 * segment more than the kernel accepts (EINVAL after the permission
 * check); add_key names a key type that does not exist; bpf makes a
 * one-entry map; new namespaces and mounts are made only in the child,
 * with the mount tree made private first; the device nodes made are
 * opened read-only and non-blocking, never read, and removed (c 1 3 is
 * /dev/null; c 10 259 is the example, a dynamic misc minor, on
 * the machine it was found on /dev/cpu_dma_latency, whose open only
 * registers a request at the default latency until the close).
 *
 * serve listens on 127.0.0.1 (an ephemeral TCP port, printed on stdout)
 * and on the abstract unix socket NAME, and accepts and closes connections
 * until it is killed: the host side of the --tcp and --unix checks.
 *
 * The network tools (probe_net.h) listen, connect and answer DNS for
 * tests/integration/test_build_network.sh, on the host and in a RUN.
 *
 * Built statically (no libraries needed in the image) and without the
 * sanitizers (they would need /proc and a writable environment and would
 * change what the process may do).
 */
#include "probe_net.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define PROBE_MAX_DIRS 8
#define PROBE_DETAIL 200

struct probe_args {
    const char *netns; /* the host's net namespace inode, decimal */
    int tcp_port;      /* 0: not asked */
    const char *unix_name;
    long sid; /* -1: not given */
    const char *dirs[PROBE_MAX_DIRS];
    size_t ndirs;
};

/* A check's outcome, written by the child. */
struct probe_res {
    int allowed;
    char detail[PROBE_DETAIL];
};

static void probe_say(struct probe_res *r, int allowed, const char *fmt, ...)
{
    va_list ap;
    r->allowed = allowed;
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
}

/* errno values that mean "refused" (a permission check, seccomp's
 * ERRNO(EPERM) or ENOSYS). */
static int probe_refused(int e)
{
    return e == EPERM || e == EACCES || e == ENOSYS;
}

/* ---------------------------------------------------------------- */
/* /proc and /sys */

static void probe_open_write(const char *path, struct probe_res *r)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        probe_say(r, 0, "open(%s, O_WRONLY): %s", path, strerror(errno));
        return;
    }
    close(fd); /* never written */
    probe_say(r, 1, "opened %s for writing", path);
}

static void probe_read(const char *path, struct probe_res *r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        probe_say(r, 0, "open(%s): %s", path, strerror(errno));
        return;
    }
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf);
    int e = errno;
    close(fd);
    if (n > 0)
        probe_say(r, 1, "read %zd bytes of %s", n, path);
    else if (n == 0)
        probe_say(r, 0, "%s reads empty (masked)", path);
    else
        probe_say(r, 0, "read(%s): %s", path, strerror(e));
}

static void probe_list(const char *path, struct probe_res *r)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        probe_say(r, 0, "opendir(%s): %s", path, strerror(errno));
        return;
    }
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    probe_say(r, n > 0, "%s lists %d entries", path, n);
}

static void chk_core_pattern(const struct probe_args *a, struct probe_res *r)
{
    probe_open_write("/proc/sys/kernel/core_pattern", r);
}
static void chk_ip_forward(const struct probe_args *a, struct probe_res *r)
{
    probe_open_write("/proc/sys/net/ipv4/ip_forward", r);
}
static void chk_sysrq(const struct probe_args *a, struct probe_res *r)
{
    probe_open_write("/proc/sysrq-trigger", r);
}
static void chk_irq(const struct probe_args *a, struct probe_res *r)
{
    probe_open_write("/proc/irq/default_smp_affinity", r);
}
static void chk_kcore(const struct probe_args *a, struct probe_res *r)
{
    probe_read("/proc/kcore", r);
}
static void chk_keys(const struct probe_args *a, struct probe_res *r)
{
    probe_read("/proc/keys", r);
}
static void chk_timer_list(const struct probe_args *a, struct probe_res *r)
{
    probe_read("/proc/timer_list", r);
}
static void chk_sched_debug(const struct probe_args *a, struct probe_res *r)
{
    probe_read("/proc/sched_debug", r);
}
static void chk_scsi(const struct probe_args *a, struct probe_res *r)
{
    probe_list("/proc/scsi", r);
}
static void chk_firmware(const struct probe_args *a, struct probe_res *r)
{
    probe_list("/sys/firmware", r);
}

/* ---------------------------------------------------------------- */
/* Devices */

/* mknod dir/probe-dev-PID c maj min, open it read-only, remove it. */
static void probe_mknod(const char *dir, unsigned maj, unsigned min,
                        struct probe_res *r)
{
    char path[4096];
    int w = snprintf(path, sizeof path, "%s/probe-dev-%d", dir, (int)getpid());
    if (w < 0 || (size_t)w >= sizeof path) {
        probe_say(r, 0, "path too long");
        return;
    }
    if (mknod(path, S_IFCHR | 0600, makedev(maj, min)) != 0) {
        probe_say(r, 0, "mknod(%s, c %u %u): %s", path, maj, min,
                  strerror(errno));
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    int e = errno;
    if (fd >= 0)
        close(fd);
    unlink(path);
    if (fd >= 0)
        probe_say(r, 1, "made and opened c %u %u at %s", maj, min, path);
    else
        probe_say(r, 0, "made c %u %u at %s, open: %s", maj, min, path,
                  strerror(e));
}

/* ---------------------------------------------------------------- */
/* System calls Docker's seccomp profile refuses */

static void chk_keyctl(const struct probe_args *a, struct probe_res *r)
{
    long id =
        syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0);
    if (id < 0) {
        probe_say(r, 0, "KEYCTL_GET_KEYRING_ID(user): %s", strerror(errno));
        return;
    }
    char buf[256];
    long n = syscall(SYS_keyctl, KEYCTL_READ, id, buf, sizeof buf);
    if (n < 0)
        probe_say(r, 0, "KEYCTL_READ(%ld): %s", id, strerror(errno));
    else
        probe_say(r, 1, "read the user keyring %ld (%ld bytes of key ids)", id,
                  n);
}

static void chk_add_key(const struct probe_args *a, struct probe_res *r)
{
    long k = syscall(SYS_add_key, "cairn_probe_no_such_type", "probe", "x",
                     (size_t)1, KEY_SPEC_PROCESS_KEYRING);
    int e = errno;
    if (k < 0 && probe_refused(e))
        probe_say(r, 0, "add_key: %s", strerror(e));
    else
        probe_say(r, 1, "add_key reached the key type lookup (%s)",
                  k < 0 ? strerror(e) : "added");
}

static void chk_unshare_user(const struct probe_args *a, struct probe_res *r)
{
    if (unshare(CLONE_NEWUSER) != 0)
        probe_say(r, 0, "unshare(CLONE_NEWUSER): %s", strerror(errno));
    else
        probe_say(r, 1, "unshare(CLONE_NEWUSER) worked");
}

/* unshare(flags), the mount tree made private (so nothing propagates
 * out), then a tmpfs on /tmp, all in this child only. */
static void probe_ns_mount(int flags, struct probe_res *r)
{
    if (unshare(flags) != 0) {
        probe_say(r, 0, "unshare: %s", strerror(errno));
        return;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        probe_say(r, 0, "unshare worked, making / private: %s",
                  strerror(errno));
        return;
    }
    if (mount("tmpfs", "/tmp", "tmpfs", 0, "size=4k") != 0) {
        probe_say(r, 0, "unshare worked, mount tmpfs: %s", strerror(errno));
        return;
    }
    probe_say(r, 1, "unshare and mount worked");
}

static void chk_unshare_ns(const struct probe_args *a, struct probe_res *r)
{
    probe_ns_mount(CLONE_NEWNS, r);
}
static void chk_userns_mount(const struct probe_args *a, struct probe_res *r)
{
    probe_ns_mount(CLONE_NEWUSER | CLONE_NEWNS, r);
}

/* The child of a fork-like clone exits at once. */
static void probe_clone_result(long pid, const char *what, struct probe_res *r)
{
    if (pid == 0)
        syscall(SYS_exit_group, 0);
    if (pid < 0) {
        probe_say(r, 0, "%s: %s", what, strerror(errno));
        return;
    }
    waitpid((pid_t)pid, NULL, 0);
    probe_say(r, 1, "%s made a process in a new user namespace", what);
}

static void chk_clone_user(const struct probe_args *a, struct probe_res *r)
{
    /* No new stack: the child runs on a copy of ours, like fork. */
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    probe_clone_result(pid, "clone(CLONE_NEWUSER)", r);
}

static void chk_clone3_user(const struct probe_args *a, struct probe_res *r)
{
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_NEWUSER;
    ca.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    probe_clone_result(pid, "clone3(CLONE_NEWUSER)", r);
}

static void chk_bpf(const struct probe_args *a, struct probe_res *r)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    if (fd < 0) {
        probe_say(r, 0, "bpf(BPF_MAP_CREATE): %s", strerror(errno));
        return;
    }
    close((int)fd);
    probe_say(r, 1, "bpf made a map");
}

static void chk_perf(const struct probe_args *a, struct probe_res *r)
{
    struct perf_event_attr pa;
    memset(&pa, 0, sizeof pa);
    pa.type = PERF_TYPE_SOFTWARE;
    pa.size = sizeof pa;
    pa.config = PERF_COUNT_SW_CPU_CLOCK;
    pa.disabled = 1;
    pa.exclude_kernel = 1;
    pa.exclude_hv = 1;
    long fd = syscall(SYS_perf_event_open, &pa, 0, -1, -1, 0);
    if (fd < 0) {
        probe_say(r, 0, "perf_event_open: %s", strerror(errno));
        return;
    }
    close((int)fd);
    probe_say(r, 1, "perf_event_open gave a counter");
}

static void chk_userfaultfd(const struct probe_args *a, struct probe_res *r)
{
    long fd = syscall(SYS_userfaultfd, O_CLOEXEC);
    if (fd < 0) {
        probe_say(r, 0, "userfaultfd: %s", strerror(errno));
        return;
    }
    close((int)fd);
    probe_say(r, 1, "userfaultfd gave a descriptor");
}

static void chk_kexec(const struct probe_args *a, struct probe_res *r)
{
    /* 17 segments is one past KEXEC_SEGMENT_MAX: EINVAL once the
     * permission checks have passed, so nothing is ever loaded. */
    long rc = syscall(SYS_kexec_load, 0UL, 17UL, NULL, 0UL);
    int e = errno;
    if (rc < 0 && probe_refused(e))
        probe_say(r, 0, "kexec_load: %s", strerror(e));
    else
        probe_say(r, 1, "kexec_load passed the permission check (%s)",
                  rc < 0 ? strerror(e) : "returned 0");
}

static void chk_open_by_handle(const struct probe_args *a, struct probe_res *r)
{
    int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    union {
        struct file_handle fh;
        char b[sizeof(struct file_handle) + 8];
    } h;
    memset(&h, 0, sizeof h);
    h.fh.handle_bytes = 8;
    h.fh.handle_type = 1; /* FILEID_INO32_GEN, with a made-up inode */
    long fd = syscall(SYS_open_by_handle_at, root, &h.fh, O_RDONLY);
    int e = errno;
    if (root >= 0)
        close(root);
    if (fd >= 0)
        close((int)fd);
    if (fd < 0 && probe_refused(e))
        probe_say(r, 0, "open_by_handle_at: %s", strerror(e));
    else
        probe_say(r, 1, "open_by_handle_at passed the permission check (%s)",
                  fd < 0 ? strerror(e) : "opened");
}

static void chk_personality(const struct probe_args *a, struct probe_res *r)
{
    /* Docker allows only a handful of exact values; this one affects
     * nothing but this child. */
    int old = personality(PER_LINUX | ADDR_NO_RANDOMIZE);
    if (old == -1)
        probe_say(r, 0, "personality(ADDR_NO_RANDOMIZE): %s", strerror(errno));
    else
        probe_say(r, 1, "personality(ADDR_NO_RANDOMIZE) worked");
}

/* ---------------------------------------------------------------- */
/* Network */

/* The net namespace's inode, or 0. */
static unsigned long probe_netns(void)
{
    struct stat st;
    return stat("/proc/self/ns/net", &st) == 0 ? (unsigned long)st.st_ino : 0;
}

static int probe_host_net(const struct probe_args *a)
{
    char mine[32];
    snprintf(mine, sizeof mine, "%lu", probe_netns());
    return strcmp(mine, a->netns) == 0;
}

static void chk_netns(const struct probe_args *a, struct probe_res *r)
{
    unsigned long mine = probe_netns();
    probe_say(r, probe_host_net(a), "net namespace %lu, the host's %s", mine,
              a->netns);
}

static void chk_packet(const struct probe_args *a, struct probe_res *r)
{
    int s = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (s < 0) {
        probe_say(r, 0, "socket(AF_PACKET): %s", strerror(errno));
        return;
    }
    close(s);
    int host = probe_host_net(a);
    probe_say(r, host, "made an AF_PACKET socket in %s net namespace",
              host ? "the host's" : "a private");
}

static void chk_tcp(const struct probe_args *a, struct probe_res *r)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        probe_say(r, 0, "socket: %s", strerror(errno));
        return;
    }
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)a->tcp_port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int e = probe_net_connect(s, (struct sockaddr *)&sin, sizeof sin);
    close(s);
    if (e == 0)
        probe_say(r, 1, "connected to 127.0.0.1:%d", a->tcp_port);
    else
        probe_say(r, 0, "connect 127.0.0.1:%d: %s", a->tcp_port, strerror(e));
}

static void chk_unix(const struct probe_args *a, struct probe_res *r)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        probe_say(r, 0, "socket: %s", strerror(errno));
        return;
    }
    struct sockaddr_un sun;
    socklen_t len = probe_net_abstract(a->unix_name, &sun);
    int e = len == 0 ? ENAMETOOLONG
                     : probe_net_connect(s, (struct sockaddr *)&sun, len);
    close(s);
    if (e == 0)
        probe_say(r, 1, "connected to @%s", a->unix_name);
    else
        probe_say(r, 0, "connect @%s: %s", a->unix_name, strerror(e));
}

/* ---------------------------------------------------------------- */
/* The terminal */

static void chk_dev_tty(const struct probe_args *a, struct probe_res *r)
{
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        probe_say(r, 0, "open(/dev/tty): %s", strerror(errno));
        return;
    }
    close(fd);
    probe_say(r, 1, "opened /dev/tty");
}

static void chk_tty_fd(const struct probe_args *a, struct probe_res *r)
{
    for (int fd = 0; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 && isatty(fd)) {
            probe_say(r, 1, "descriptor %d is a terminal", fd);
            return;
        }
    }
    probe_say(r, 0, "no inherited descriptor is a terminal");
}

/* TIOCSTI with a NULL character: the kernel checks the permission first,
 * then fails to read the character with EFAULT, so nothing is pushed. */
static int probe_tiocsti(int fd)
{
    return ioctl(fd, TIOCSTI, NULL) != 0 && errno == EFAULT;
}

static void chk_tiocsti(const struct probe_args *a, struct probe_res *r)
{
    for (int fd = 0; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 && isatty(fd) && probe_tiocsti(fd)) {
            probe_say(r, 1, "TIOCSTI permitted on descriptor %d", fd);
            return;
        }
    }
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {
        int ok = probe_tiocsti(fd);
        close(fd);
        if (ok) {
            probe_say(r, 1, "TIOCSTI permitted on /dev/tty");
            return;
        }
    }
    probe_say(r, 0, "TIOCSTI not permitted on any terminal we have");
}

static void chk_session(const struct probe_args *a, struct probe_res *r)
{
    /* getsid is 0 when the session's leader lives outside our PID
     * namespace: we are in someone else's session. */
    pid_t sid = getsid(0);
    int shared = sid == 0 || (a->sid >= 0 && sid == (pid_t)a->sid);
    probe_say(r, shared, "sid %d, pid %d", (int)sid, (int)getpid());
}

/* ---------------------------------------------------------------- */

static void probe_run(const char *name,
                      void (*fn)(const struct probe_args *, struct probe_res *),
                      const struct probe_args *a, const char *dir, unsigned maj,
                      unsigned min)
{
    int p[2];
    if (pipe(p) != 0) {
        printf("%s denied pipe: %s\n", name, strerror(errno));
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        struct probe_res r;
        memset(&r, 0, sizeof r);
        if (fn != NULL)
            fn(a, &r);
        else
            probe_mknod(dir, maj, min, &r);
        ssize_t w = write(p[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 1);
    }
    close(p[1]);
    struct probe_res r;
    ssize_t n = pid < 0 ? -1 : read(p[0], &r, sizeof r);
    close(p[0]);
    int st = 0;
    if (pid > 0)
        waitpid(pid, &st, 0);
    if (n != (ssize_t)sizeof r) {
        printf("%s denied no answer (%s)\n", name,
               WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "exited");
        return;
    }
    r.detail[sizeof r.detail - 1] = '\0';
    printf("%s %s %s\n", name, r.allowed ? "allowed" : "denied", r.detail);
}

static const struct {
    const char *name;
    void (*fn)(const struct probe_args *, struct probe_res *);
} probe_checks[] = {
    {"procsys_core_pattern_write", chk_core_pattern},
    {"procsys_ip_forward_write", chk_ip_forward},
    {"proc_sysrq_trigger_write", chk_sysrq},
    {"proc_irq_write", chk_irq},
    {"proc_kcore_read", chk_kcore},
    {"proc_keys_read", chk_keys},
    {"proc_timer_list_read", chk_timer_list},
    {"proc_sched_debug_read", chk_sched_debug},
    {"proc_scsi_list", chk_scsi},
    {"sys_firmware_list", chk_firmware},
    {"keyctl_user_keyring_read", chk_keyctl},
    {"add_key", chk_add_key},
    {"unshare_newuser", chk_unshare_user},
    {"unshare_newns_mount", chk_unshare_ns},
    {"unshare_newuser_newns_mount", chk_userns_mount},
    {"clone_newuser", chk_clone_user},
    {"clone3_newuser", chk_clone3_user},
    {"bpf", chk_bpf},
    {"perf_event_open", chk_perf},
    {"userfaultfd", chk_userfaultfd},
    {"kexec_load", chk_kexec},
    {"open_by_handle_at", chk_open_by_handle},
    {"personality_odd", chk_personality},
    {"dev_tty_open", chk_dev_tty},
    {"tty_fd_inherited", chk_tty_fd},
    {"tiocsti", chk_tiocsti},
    {"session_shared", chk_session},
};

static int probe_check(const struct probe_args *a)
{
    for (size_t i = 0; i < sizeof probe_checks / sizeof probe_checks[0]; i++)
        probe_run(probe_checks[i].name, probe_checks[i].fn, a, NULL, 0, 0);
    probe_run("mknod_c10_259:/tmp", NULL, a, "/tmp", 10, 259);
    static const char *const fixed[] = {"/tmp", "/dev"};
    char name[4200];
    for (size_t i = 0; i < 2 + a->ndirs; i++) {
        const char *dir = i < 2 ? fixed[i] : a->dirs[i - 2];
        snprintf(name, sizeof name, "mknod_c1_3:%s", dir);
        probe_run(name, NULL, a, dir, 1, 3);
    }
    if (a->netns != NULL) {
        probe_run("netns_host", chk_netns, a, NULL, 0, 0);
        probe_run("af_packet_host_net", chk_packet, a, NULL, 0, 0);
    }
    if (a->tcp_port > 0)
        probe_run("tcp_host_loopback", chk_tcp, a, NULL, 0, 0);
    if (a->unix_name != NULL)
        probe_run("abstract_unix_host", chk_unix, a, NULL, 0, 0);
    fflush(stdout);
    return 0;
}

static int probe_usage(void)
{
    fprintf(stderr, "usage: sandbox_probe check [--netns INODE] [--tcp PORT] "
                    "[--unix NAME] [--sid SID] [--mknod-dir DIR]...\n"
                    "       sandbox_probe serve NAME\n"
                    "       sandbox_probe listen-tcp|connect-tcp ADDR PORT\n"
                    "       sandbox_probe listen-abstract|connect-abstract "
                    "NAME\n"
                    "       sandbox_probe listen-dns ADDR NAME IP\n"
                    "       sandbox_probe packet\n");
    return 2;
}

/* The host side: listeners for the --tcp and --unix checks. */
static int probe_serve(const char *name)
{
    int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct sockaddr_un sun;
    socklen_t ulen = probe_net_abstract(name, &sun);
    socklen_t slen = sizeof sin;
    if (ulen == 0)
        return probe_usage();
    if (t < 0 || u < 0 || bind(t, (struct sockaddr *)&sin, sizeof sin) != 0 ||
        listen(t, 16) != 0 || bind(u, (struct sockaddr *)&sun, ulen) != 0 ||
        listen(u, 16) != 0 ||
        getsockname(t, (struct sockaddr *)&sin, &slen) != 0) {
        fprintf(stderr, "sandbox_probe serve: %s\n", strerror(errno));
        return 1;
    }
    printf("%d\n", ntohs(sin.sin_port));
    fflush(stdout);
    for (;;) {
        struct pollfd pf[2] = {{t, POLLIN, 0}, {u, POLLIN, 0}};
        if (poll(pf, 2, -1) < 0 && errno != EINTR)
            return 1;
        for (int i = 0; i < 2; i++) {
            if (pf[i].revents & POLLIN) {
                int c = accept4(pf[i].fd, NULL, NULL, SOCK_CLOEXEC);
                if (c >= 0)
                    close(c);
            }
        }
    }
}

static long probe_num(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno != 0 || *s == '\0' || *end != '\0' || v < 0 ? -1 : v;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return probe_serve(argv[2]);
    int rc = probe_net_tool(argc, argv);
    if (rc >= 0)
        return rc == 2 ? probe_usage() : rc;
    if (argc < 2 || strcmp(argv[1], "check") != 0)
        return probe_usage();
    struct probe_args a;
    memset(&a, 0, sizeof a);
    a.sid = -1;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            return probe_usage();
        const char *opt = argv[i], *val = argv[++i];
        if (strcmp(opt, "--netns") == 0) {
            a.netns = val;
        } else if (strcmp(opt, "--tcp") == 0) {
            long v = probe_num(val);
            if (v <= 0 || v > 65535)
                return probe_usage();
            a.tcp_port = (int)v;
        } else if (strcmp(opt, "--unix") == 0) {
            a.unix_name = val;
        } else if (strcmp(opt, "--sid") == 0) {
            a.sid = probe_num(val);
        } else if (strcmp(opt, "--mknod-dir") == 0 &&
                   a.ndirs < PROBE_MAX_DIRS) {
            a.dirs[a.ndirs++] = val;
        } else {
            return probe_usage();
        }
    }
    return probe_check(&a);
}
