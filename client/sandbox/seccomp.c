/* The RUN steps' seccomp filter (see seccomp.h).
 *
 * The tables below are moby's profiles/seccomp/default.json (as of moby
 * commit 00f3d189, with the AF_VSOCK rule) read for a container with Docker's
 * default capability set: CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD,
 * NET_RAW, SETGID, SETUID, SETFCAP, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT,
 * KILL and AUDIT_WRITE (client/sandbox/sandbox.c keeps exactly these). Of the
 * profile's capability-dependent rules that leaves chroot (CAP_SYS_CHROOT)
 * allowed, clone allowed only without namespace flags and clone3 failing
 * with ENOSYS (the rules Docker applies when CAP_SYS_ADMIN is missing); the
 * calls Docker grants only with another capability (mount, unshare, setns,
 * bpf, perf_event_open, kcmp, pidfd_getfd, reboot, the module calls, acct,
 * iopl, settimeofday, syslog, the NUMA calls, vhangup, open_by_handle_at
 * ...) fall to the default action, EPERM, as under Docker. Like Docker, the
 * sandbox does not set no_new_privs: that would disarm every setuid
 * program (su, sudo, ping) in the RUN.
 *
 * The filter is built with libseccomp, exported as classic BPF into a
 * memfd and read back into memory that lives as long as the process, so
 * the sandbox's init can install it after fork without allocating.
 * libseccomp's binary-tree layout (optimisation level 2) finds a system
 * call in a few comparisons instead of a walk along ~350 rules.
 */
#include "client/sandbox/seccomp.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Allowed whatever their arguments. Names the native architecture lacks
 * (the 32-bit and time64 variants on x86_64) are skipped; a name
 * libseccomp does not know at all is an error, so a typo cannot go
 * unnoticed. Packed, not one a line (360 lines): clang-format is off. */
/* clang-format off */
static const char *const sec_allow[] = {
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk",
    "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime",
    "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
    "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close",
    "close_range", "connect", "copy_file_range", "creat", "dup", "dup2",
    "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
    "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd",
    "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat",
    "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark",
    "fchdir", "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl",
    "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
    "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
    "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_time64",
    "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
    "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
    "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid",
    "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
    "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list",
    "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
    "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
    "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents",
    "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup",
    "io_submit", "io_uring_enter", "io_uring_register", "io_uring_setup",
    "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link",
    "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr",
    "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "membarrier",
    "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod",
    "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
    "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
    "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
    "newfstatat", "_newselect", "open", "openat", "openat2", "pause",
    "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc",
    "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl",
    "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease",
    "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages",
    "removexattr", "rename", "renameat", "renameat2", "restart_syscall",
    "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
    "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
    "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
    "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid",
    "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
    "setgroups32", "setitimer", "setpgid", "setpriority", "setregid",
    "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32",
    "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
    "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32",
    "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown",
    "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn",
    "socketcall", "socketpair", "splice", "stat", "stat64", "statfs",
    "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
    "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64",
    "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
    "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname",
    "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
    "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
    /* Docker allows these from kernel 4.8 on, where ptrace can no longer
     * be used to skip the filter; the sandbox needs Linux 5.12 anyway
     * (mount_setattr). */
    "ptrace", "process_vm_readv", "process_vm_writev",
    /* CAP_SYS_CHROOT is in the default set. */
    "chroot",
    /* x86 only (Docker lists them for amd64, x32 and x86). */
    "arch_prctl", "modify_ldt",
};
/* clang-format on */

/* Namespace flags of clone: 0x7E020000, Docker's mask (2114060288). */
#define SEC_CLONE_NS_FLAGS                                                     \
    (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |             \
     CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET)
_Static_assert(SEC_CLONE_NS_FLAGS == 2114060288,
               "clone's namespace mask differs from Docker's");

/* Rules with a condition on the first argument, or another action. */
static const struct {
    const char *name;
    int err;              /* 0: allow; else fail with this errno */
    enum scmp_compare op; /* 0: whatever the arguments */
    uint64_t a, b;        /* op's operands; MASKED_EQ: (arg0 & a) == b */
} sec_rules[] = {
    /* vsock reaches the hypervisor's host; Docker refuses it. */
    {"socket", 0, SCMP_CMP_NE, AF_VSOCK, 0},
    /* Only the personalities Docker allows: not ADDR_NO_RANDOMIZE,
     * READ_IMPLIES_EXEC and other execution domains. 0xffffffff reads the
     * current one. */
    {"personality", 0, SCMP_CMP_EQ, PER_LINUX, 0},
    {"personality", 0, SCMP_CMP_EQ, PER_LINUX32, 0},
    {"personality", 0, SCMP_CMP_EQ, UNAME26, 0},
    {"personality", 0, SCMP_CMP_EQ, UNAME26 | PER_LINUX32, 0},
    {"personality", 0, SCMP_CMP_EQ, 0xffffffffu, 0},
    /* fork, vfork, threads: clone without namespace flags. */
    {"clone", 0, SCMP_CMP_MASKED_EQ, SEC_CLONE_NS_FLAGS, 0},
    /* clone3's flags are behind a pointer, out of a filter's reach: ENOSYS
     * makes libc fall back to clone. */
    {"clone3", ENOSYS, 0, 0, 0},
};

static pthread_mutex_t sec_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sock_fprog sec_prog; /* .filter set once built */

/* Adds one rule and raises *newest to its system call's number. Returns
 * 0, or a negative errno or CAIRN_E_UNSUPPORTED with err set. */
static int sec_rule_add(scmp_filter_ctx ctx, const char *name, uint32_t action,
                        unsigned ncmp, const struct scmp_arg_cmp *cmp,
                        int *newest, struct cairn_err *err)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return cairn_err_set(err, CAIRN_E_UNSUPPORTED,
                             "seccomp filter: libseccomp does not know the "
                             "system call %s (version 2.5.4 or later needed)",
                             name);
    int rc = seccomp_rule_add_array(ctx, action, nr, ncmp, cmp);
    /* A negative nr is a system call of another architecture; libseccomp
     * accepts it and leaves it out of a native-only filter. */
    if (rc != 0)
        return cairn_err_set(err, rc, "seccomp filter: rule for %s: %s", name,
                             strerror(-rc));
    if (nr > *newest)
        *newest = nr;
    return 0;
}

/* The first instructions of the program, in front of libseccomp's: on the
 * native architecture, a number past the newest system call the profile
 * names (and below x32's bit, which libseccomp's part refuses) fails with
 * ENOSYS instead of EPERM. That is runc's rule, so Docker behaves so: a
 * libc that tries a new call first (fchmodat2, then fchmodat) takes its
 * fallback instead of failing. Everything else jumps to libseccomp's part,
 * which starts at the end of this one. */
#define SEC_PRELUDE_LEN 6
static void sec_prelude(struct sock_filter *f, uint32_t arch, uint32_t newest)
{
    const struct sock_filter prelude[SEC_PRELUDE_LEN] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, newest, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
    };
    memcpy(f, prelude, sizeof prelude);
}

/* Exports ctx as BPF and reads it back into *out (malloc'ed), after the
 * prelude. */
static int sec_export(scmp_filter_ctx ctx, int newest, struct sock_fprog *out,
                      struct cairn_err *err)
{
    struct sock_filter *insns = NULL;
    int fd = memfd_create("cairn-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return cairn_err_set(err, -errno, "seccomp filter: memfd: %s",
                             strerror(errno));
    int rc = seccomp_export_bpf(ctx, fd);
    if (rc != 0) {
        cairn_err_set(err, rc, "seccomp filter: export: %s", strerror(-rc));
        goto out;
    }
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % (off_t)sizeof *insns != 0 ||
        size / (off_t)sizeof *insns > BPF_MAXINSNS - SEC_PRELUDE_LEN) {
        rc = cairn_err_set(err, CAIRN_E_TOOBIG,
                           "seccomp filter: the exported program has %lld "
                           "bytes; at most %d instructions fit",
                           (long long)size, BPF_MAXINSNS);
        goto out;
    }
    insns = malloc((size_t)size + sizeof *insns * SEC_PRELUDE_LEN);
    if (insns == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "seccomp filter: out of memory");
        goto out;
    }
    sec_prelude(insns, seccomp_arch_native(), (uint32_t)newest);
    char *prog = (char *)(insns + SEC_PRELUDE_LEN);
    for (off_t off = 0; off < size;) {
        ssize_t r = pread(fd, prog + off, (size_t)(size - off), off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = cairn_err_set(err, r < 0 ? -errno : CAIRN_E_IO,
                               "seccomp filter: read back: %s",
                               r < 0 ? strerror(errno) : "short read");
            goto out;
        }
        off += r;
    }
    out->len = (unsigned short)(SEC_PRELUDE_LEN + size / (off_t)sizeof *insns);
    out->filter = insns;
    insns = NULL;
out:
    free(insns);
    close(fd);
    return rc;
}

static int sec_build(struct sock_fprog *out, struct cairn_err *err)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (ctx == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM,
                             "seccomp filter: seccomp_init failed");
    int rc =
        seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc == 0)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (rc != 0) {
        cairn_err_set(err, rc, "seccomp filter: attributes: %s", strerror(-rc));
        goto out;
    }
    int newest = 0;
    for (size_t i = 0; i < sizeof sec_allow / sizeof sec_allow[0]; i++) {
        rc = sec_rule_add(ctx, sec_allow[i], SCMP_ACT_ALLOW, 0, NULL, &newest,
                          err);
        if (rc != 0)
            goto out;
    }
    for (size_t i = 0; i < sizeof sec_rules / sizeof sec_rules[0]; i++) {
        struct scmp_arg_cmp cmp = {0, sec_rules[i].op, sec_rules[i].a,
                                   sec_rules[i].b};
        uint32_t action = sec_rules[i].err ? SCMP_ACT_ERRNO(sec_rules[i].err)
                                           : SCMP_ACT_ALLOW;
        rc = sec_rule_add(ctx, sec_rules[i].name, action,
                          sec_rules[i].op ? 1 : 0, &cmp, &newest, err);
        if (rc != 0)
            goto out;
    }
    rc = sec_export(ctx, newest, out, err);
out:
    seccomp_release(ctx);
    return rc;
}

int cairn_seccomp_filter_get(const struct sock_fprog **prog,
                             struct cairn_err *err)
{
    if (prog == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "seccomp filter: no output");
    int rc = 0;
    pthread_mutex_lock(&sec_lock);
    if (sec_prog.filter == NULL)
        rc = sec_build(&sec_prog, err);
    pthread_mutex_unlock(&sec_lock);
    if (rc == 0)
        *prog = &sec_prog;
    return rc;
}

int cairn_seccomp_filter_install(const struct sock_fprog *prog)
{
    if (prog == NULL || prog->filter == NULL)
        return -EINVAL;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) != 0)
        return -errno;
    return 0;
}
