/* The RUN seccomp filter: each check forks a child that installs the
 * filter as the sandbox's init does (root, CAP_SYS_ADMIN, no
 * no_new_privs) and then makes real system calls. Every refused call is
 * one that root would otherwise get through (or get a different error
 * from), so EPERM can only come from the filter. Needs root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/sandbox/seccomp.h"
#include "common/error.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static const struct sock_fprog *prog;

/* A check run in a filtered child: NULL when it held, else what failed
 * (a static string). */
typedef const char *(*check_fn)(void);

static char why[256];

/* Forks, installs the filter in the child, runs fn there and returns the
 * child's wait status; the child's complaint, if any, lands in why. */
static int run_filtered(check_fn fn)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        int e = cairn_seccomp_filter_install(prog);
        const char *msg = e != 0 ? "install failed" : fn();
        if (msg != NULL) {
            ssize_t w = write(p[1], msg, strlen(msg));
            (void)w;
            _exit(1);
        }
        _exit(0);
    }
    close(p[1]);
    ssize_t n = read(p[0], why, sizeof why - 1);
    why[n > 0 ? n : 0] = '\0';
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}

static void expect_ok(check_fn fn)
{
    int st = run_filtered(fn);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("filtered child: %s (status %#x)", why[0] ? why : "died", st);
}

/* r must be -1 with errno e. */
#define EXPECT_ERR(call, e)                                                    \
    do {                                                                       \
        errno = 0;                                                             \
        long r_ = (long)(call);                                                \
        if (r_ != -1 || errno != (e))                                          \
            return #call " was not refused with " #e;                          \
    } while (0)

static const char *refused_keyrings(void)
{
    /* The call of the report: root's user keyring, readable unfiltered. */
    EXPECT_ERR(
        syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0),
        EPERM);
    EXPECT_ERR(syscall(SYS_add_key, "user", "cairn-test", "x", 1,
                       KEY_SPEC_PROCESS_KEYRING),
               EPERM);
    EXPECT_ERR(syscall(SYS_request_key, "user", "cairn-test", NULL,
                       KEY_SPEC_PROCESS_KEYRING),
               EPERM);
    return NULL;
}

static const char *refused_namespaces(void)
{
    EXPECT_ERR(unshare(CLONE_NEWUSER), EPERM);
    EXPECT_ERR(unshare(CLONE_NEWNS), EPERM);
    EXPECT_ERR(unshare(CLONE_NEWUSER | CLONE_NEWNS), EPERM);
    EXPECT_ERR(unshare(CLONE_NEWNET), EPERM);
    EXPECT_ERR(setns(-1, 0), EPERM); /* EBADF unfiltered */
    /* clone with a namespace flag; a child made anyway leaves at once. */
    static const int flags[] = {CLONE_NEWUSER,  CLONE_NEWNS,  CLONE_NEWPID,
                                CLONE_NEWNET,   CLONE_NEWUTS, CLONE_NEWIPC,
                                CLONE_NEWCGROUP};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        errno = 0;
        long r = syscall(SYS_clone, flags[i] | SIGCHLD, NULL, NULL, NULL, 0);
        if (r == 0)
            _exit(0);
        if (r > 0)
            waitpid((pid_t)r, NULL, 0);
        if (r != -1 || errno != EPERM)
            return "clone with a namespace flag was not refused";
    }
    return NULL;
}

static const char *refused_mounts(void)
{
    /* ENOENT unfiltered: the target does not exist. */
    EXPECT_ERR(mount("none", "/nonexistent/cairn", "tmpfs", 0, NULL), EPERM);
    EXPECT_ERR(umount2("/nonexistent/cairn", 0), EPERM);
    EXPECT_ERR(syscall(SYS_open_tree, -1, "", 0), EPERM);
    EXPECT_ERR(syscall(SYS_fsopen, "tmpfs", 0), EPERM);
    EXPECT_ERR(syscall(SYS_move_mount, -1, "", -1, "", 0), EPERM);
    EXPECT_ERR(syscall(SYS_pivot_root, "/nonexistent", "/nonexistent"), EPERM);
    return NULL;
}

static const char *refused_kernel(void)
{
    /* Arguments that fail or do nothing (EFAULT, EINVAL, EBADF, ENOENT, a
     * read-only query) if the filter lets the call through: a broken
     * filter must not change the host. */
    EXPECT_ERR(syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, NULL, 0), EPERM);
    EXPECT_ERR(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0), EPERM);
    EXPECT_ERR(syscall(SYS_kexec_load, 0, 0, NULL, 0xffff0000UL), EPERM);
    EXPECT_ERR(syscall(SYS_finit_module, -1, "", 0), EPERM);
    EXPECT_ERR(syscall(SYS_delete_module, "cairn_no_such_module", O_NONBLOCK),
               EPERM);
    EXPECT_ERR(syscall(SYS_reboot, 0, 0, 0, NULL), EPERM);
    EXPECT_ERR(syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0), EPERM);
    struct timespec ts = {0, 0};
    EXPECT_ERR(syscall(SYS_clock_settime, CLOCK_MONOTONIC, &ts), EPERM);
    EXPECT_ERR(syscall(SYS_open_by_handle_at, -1, NULL, 0), EPERM);
    EXPECT_ERR(syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0), EPERM);
    EXPECT_ERR(syscall(SYS_iopl, 0), EPERM);
    EXPECT_ERR(syscall(SYS_acct, "/nonexistent/cairn"), EPERM);
    EXPECT_ERR(syscall(SYS_userfaultfd, 0), EPERM);
    EXPECT_ERR(syscall(SYS_sethostname, "x", (size_t)-1), EPERM);
    EXPECT_ERR(socket(AF_VSOCK, SOCK_STREAM, 0), EPERM);
    EXPECT_ERR(personality(ADDR_NO_RANDOMIZE), EPERM);
    EXPECT_ERR(personality(READ_IMPLIES_EXEC), EPERM);
    return NULL;
}

static const char *clone3_enosys(void)
{
    uint64_t args[11] = {0};
    args[4] = SIGCHLD; /* exit_signal */
    errno = 0;
    long r = syscall(SYS_clone3, args, sizeof args);
    if (r == 0)
        _exit(0);
    if (r > 0)
        waitpid((pid_t)r, NULL, 0);
    return r == -1 && errno == ENOSYS ? NULL
                                      : "clone3 did not fail with ENOSYS";
}

static void *thread_main(void *arg)
{
    return arg;
}

static const char *allowed(void)
{
    /* fork, then fork and exec: clone without namespace flags. */
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 7)
        return "fork";
    pid = fork();
    if (pid == 0) {
        char *const argv[] = {"/bin/sh", "-c", "exit 3", NULL};
        char *const envp[] = {NULL};
        execve(argv[0], argv, envp);
        _exit(100);
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 3)
        return "fork and execve /bin/sh";
    /* Threads: libc tries clone3, gets ENOSYS and falls back to clone. */
    pthread_t t;
    void *res = NULL;
    int marker = 0;
    if (pthread_create(&t, NULL, thread_main, &marker) != 0 ||
        pthread_join(t, &res) != 0 || res != &marker)
        return "pthread_create";
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return "socket(AF_INET)";
    close(s);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return "socketpair(AF_UNIX)";
    close(sv[0]);
    close(sv[1]);
    if (personality(0xffffffff) < 0 || personality(PER_LINUX) < 0 ||
        personality(PER_LINUX32) < 0 || personality(PER_LINUX) < 0)
        return "personality(PER_LINUX / PER_LINUX32 / query)";
    /* CAP_SYS_CHROOT is in Docker's default set, and so is chroot. */
    if (chroot("/") != 0)
        return "chroot";
    /* What the sandbox's init does after installing the filter: cut
     * capabilities, change ids. */
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0)
        return "prctl(PR_CAPBSET_DROP)";
    if (setgroups(0, NULL) != 0 || setgid(1000) != 0 || setuid(1000) != 0)
        return "setgroups, setgid, setuid";
    return NULL;
}

static const char *status_says_filtered(void)
{
    char buf[8192];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return "open /proc/self/status";
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return "read /proc/self/status";
    buf[n] = '\0';
    return strstr(buf, "\nSeccomp:\t2\n") ? NULL : "Seccomp: is not 2";
}

static void test_refused(void **state)
{
    (void)state;
    expect_ok(refused_keyrings);
    expect_ok(refused_namespaces);
    expect_ok(refused_mounts);
    expect_ok(refused_kernel);
    expect_ok(clone3_enosys);
}

static void test_allowed(void **state)
{
    (void)state;
    expect_ok(allowed);
    expect_ok(status_says_filtered);
}

#if defined(__x86_64__)
static const char *call_i386(void)
{
    long r;
    /* getpid through the i386 ABI: another architecture for seccomp. */
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    return r > 0 ? "i386 getpid went through" : "i386 getpid failed";
}

static const char *call_x32(void)
{
    errno = 0;
    long r = syscall(0x40000000L | 39 /* getpid */);
    return r > 0 ? "x32 getpid went through" : "x32 getpid failed";
}

/* Past the newest call the profile names (futex_waitv, 449): ENOSYS, as
 * runc answers, so libc falls back; below it, unlisted calls get EPERM. */
static const char *newer_enosys(void)
{
    EXPECT_ERR(
        syscall(452 /* fchmodat2 */, AT_FDCWD, "/nonexistent/cairn", 0, 0),
        ENOSYS);
    EXPECT_ERR(syscall(462 /* mseal */, 0, 0, 0), ENOSYS);
    EXPECT_ERR(syscall(1000), ENOSYS);
    EXPECT_ERR(syscall(400 /* none on x86_64 */), EPERM);
    EXPECT_ERR(syscall(SYS_futex_waitv, NULL, 0, 0, NULL, 0), EINVAL);
    return NULL;
}

static void test_x86_64_numbers(void **state)
{
    (void)state;
    expect_ok(newer_enosys);
    /* Native architecture only: other ABIs kill the process. */
    int st = run_filtered(call_i386);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGSYS);
    st = run_filtered(call_x32);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGSYS);
}
#endif

/* Without no_new_privs the kernel wants CAP_SYS_ADMIN for a filter: the
 * reason the sandbox installs it before cutting capabilities. */
static void test_needs_sys_admin(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        if (syscall(SYS_capget, &hdr, data) != 0)
            _exit(2);
        data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective &=
            ~CAP_TO_MASK(CAP_SYS_ADMIN);
        if (syscall(SYS_capset, &hdr, data) != 0)
            _exit(3);
        _exit(cairn_seccomp_filter_install(prog) == -EACCES ? 0 : 4);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* Built once: every call returns the same program. */
static void test_built_once(void **state)
{
    (void)state;
    const struct sock_fprog *again = NULL;
    struct cairn_err err = {0};
    assert_int_equal(cairn_seccomp_filter_get(&again, &err), 0);
    assert_ptr_equal(again, prog);
    assert_true(prog->len > 0 && prog->len <= BPF_MAXINSNS);
    assert_int_equal(cairn_seccomp_filter_install(NULL), -EINVAL);
}

static int setup(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        fprintf(stderr, "test_seccomp needs root\n");
        return -1;
    }
    struct cairn_err err = {0};
    if (cairn_seccomp_filter_get(&prog, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_built_once),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_allowed),
#if defined(__x86_64__)
        cmocka_unit_test(test_x86_64_numbers),
#endif
        cmocka_unit_test(test_needs_sys_admin),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
