/* The RUN sandbox on a busybox root (tests/rootfs.sh). Needs root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "client/sandbox/sandbox.h"
#include "common/error.h"

static char base[64];        /* scratch directory for the whole run */
static char lower[PATH_MAX]; /* the busybox root */
static int counter;
static int mounts_at_start;
static int fds_at_start;

/* One sandbox run: fresh upper/work dirs, output captured in a memfd. */
struct box {
    char upper[PATH_MAX], work[PATH_MAX];
    const char *lowers[8];
    const char *argv[8];
    const char *env[8];
    struct cairn_run_spec spec;
    struct cairn_run_result res;
    struct cairn_err err;
    int out;
    char output[16384];
};

static void mkdir_ok(const char *path)
{
    assert_int_equal(mkdir(path, 0755), 0);
}

static void box_init(struct box *b, const char *script)
{
    memset(b, 0, sizeof *b);
    counter++;
    snprintf(b->upper, sizeof b->upper, "%s/u%d", base, counter);
    snprintf(b->work, sizeof b->work, "%s/w%d", base, counter);
    mkdir_ok(b->upper);
    mkdir_ok(b->work);
    b->lowers[0] = lower;
    b->argv[0] = "sh";
    b->argv[1] = "-c";
    b->argv[2] = script;
    b->env[0] = "PATH=/bin";
    b->out = memfd_create("out", MFD_CLOEXEC);
    assert_true(b->out >= 0);
    b->spec.lowerdirs = b->lowers;
    b->spec.nlowerdirs = 1;
    b->spec.upperdir = b->upper;
    b->spec.workdir = b->work;
    b->spec.argv = b->argv;
    b->spec.argc = 3;
    b->spec.env = b->env;
    b->spec.nenv = 1;
    b->spec.cwd = "/";
    b->spec.user = "";
    b->spec.out_fd = b->out;
}

static int box_run(struct box *b)
{
    int rc = cairn_sandbox_run(&b->spec, &b->res, &b->err);
    ssize_t n = pread(b->out, b->output, sizeof b->output - 1, 0);
    assert_true(n >= 0);
    b->output[n] = '\0';
    return rc;
}

/* Runs and expects the command to have run with exit code 0. */
static void box_run_ok(struct box *b)
{
    int rc = box_run(b);
    if (rc != 0)
        print_error("run failed: %s\n", b->err.msg);
    assert_int_equal(rc, 0);
    if (b->res.exit_code != 0)
        print_error("output: %s\n", b->output);
    assert_int_equal(b->res.exit_code, 0);
}

static void box_free(struct box *b)
{
    cairn_run_result_clear(&b->res);
    close(b->out);
}

/* buf = a/b, asserting it fits. */
static void join(char *buf, size_t size, const char *a, const char *b)
{
    int n = snprintf(buf, size, "%s/%s", a, b);
    assert_true(n > 0 && (size_t)n < size);
}

static bool exists_in(const char *dir, const char *rel)
{
    char path[PATH_MAX];
    join(path, sizeof path, dir, rel);
    struct stat st;
    return lstat(path, &st) == 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void read_file(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Open descriptors of this process, counted in-process (a popen'd `ls`
 * would count its own pipe); with show, each one and what it points at
 * goes to stderr, so a failure says what leaked. */
/* A descriptor number from /proc/self/fd (always decimal). */
static int fd_number(const char *s)
{
    return (int)strtol(s, NULL, 10);
}

static int count_fds(bool show)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || fd_number(e->d_name) == dirfd(d))
            continue;
        n++;
        if (show) {
            char link[300], target[PATH_MAX];
            snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
            ssize_t len = readlink(link, target, sizeof target - 1);
            target[len > 0 ? len : 0] = '\0';
            fprintf(stderr, "  fd %s -> %s\n", e->d_name, target);
        }
    }
    closedir(d);
    return n;
}

/* Mounts this test could have leaked: those under its own base directory,
 * where every run's directories live. Other tests running in parallel
 * (ctest -j) mount things too, so the whole table is no measure. */
static int count_mounts(void)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    assert_non_null(f);
    int n = 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        if (base[0] && strstr(line, base))
            n++;
    }
    fclose(f);
    return n;
}

static int setup(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        fprintf(stderr, "test_sandbox needs root\n");
        return -1;
    }
    snprintf(base, sizeof base, "/tmp/cairn-test-sandbox-XXXXXX");
    if (mkdtemp(base) == NULL)
        return -1;
    join(lower, sizeof lower, base, "rootfs");
    char cmd[PATH_MAX * 2];
    snprintf(cmd, sizeof cmd, "sh %s/tests/rootfs.sh %s", CAIRN_SOURCE_DIR,
             lower);
    if (system(cmd) != 0)
        return -1;
    /* Run directories go here, so the last test can see they are gone. */
    setenv("TMPDIR", base, 1);
    mounts_at_start = count_mounts();
    fds_at_start = count_fds(false);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_echo(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "echo hello; echo err >&2");
    box_run_ok(&b);
    assert_string_equal(b.output, "hello\nerr\n");
    box_free(&b);
}

static void test_exit_codes(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "exit 3");
    assert_int_equal(box_run(&b), 0);
    assert_int_equal(b.res.exit_code, 3);
    box_free(&b);

    /* A child killed by a signal: the shell reports 128+N itself. */
    box_init(&b, "sh -c 'kill -9 $$'; exit $?");
    assert_int_equal(box_run(&b), 0);
    assert_int_equal(b.res.exit_code, 137);
    box_free(&b);
}

static void *killer(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    cairn_sandbox_kill_all();
    return NULL;
}

/* PID 1 itself killed from outside (the build's SIGINT path). */
static void test_kill_all(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "sleep 30 & sleep 30");
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, killer, NULL), 0);
    time_t start = time(NULL);
    assert_int_equal(box_run(&b), 0);
    pthread_join(t, NULL);
    assert_int_equal(b.res.exit_code, 137);
    assert_true(time(NULL) - start < 10);
    box_free(&b);
}

static void test_upper_and_whiteout(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "echo x > /new && rm /etc/group && mkdir -p /a/b");
    box_run_ok(&b);
    char buf[64];
    char path[PATH_MAX];
    join(path, sizeof path, b.upper, "new");
    read_file(path, buf, sizeof buf);
    assert_string_equal(buf, "x\n");
    assert_true(exists_in(b.upper, "a/b"));
    struct stat st;
    join(path, sizeof path, b.upper, "etc/group");
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(major(st.st_rdev), 0);
    assert_int_equal(minor(st.st_rdev), 0);
    /* The lower is untouched. */
    assert_true(exists_in(lower, "etc/group"));
    assert_false(exists_in(lower, "new"));
    box_free(&b);
}

static void test_pid1_and_proc(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo; "
                 "ls /proc | grep -c '^[0-9]'");
    box_run_ok(&b);
    /* Only the shell and the pipeline's processes are in the namespace. */
    assert_true(strncmp(b.output, "1\nsh -c ", 8) == 0);
    char *last = strrchr(b.output, '\n');
    *last = '\0';
    last = strrchr(b.output, '\n');
    assert_true(strtol(last + 1, NULL, 10) <= 4);
    box_free(&b);
}

static void test_dev(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "for d in null zero full random urandom tty; do "
                 "test -c /dev/$d || echo missing $d; done; "
                 "echo x > /dev/null; head -c 4 /dev/zero | wc -c; "
                 "test -d /dev/pts && test -L /dev/ptmx && test -d /dev/shm "
                 "&& echo ok; readlink /dev/fd; readlink /dev/stdin; "
                 "echo shm > /dev/shm/f && cat /dev/shm/f");
    box_run_ok(&b);
    assert_string_equal(b.output,
                        "4\nok\n/proc/self/fd\n/proc/self/fd/0\nshm\n");
    assert_false(exists_in(b.upper, "dev"));
    box_free(&b);
}

/* Issue 9, items 1, 2 and 5 (tests/integration/test_sandbox_probe.sh
 * compares the whole set with docker run): /proc's tunables are
 * read-only (": >>" opens for writing, it never writes) and its leaks
 * masked;
 * nodes the command makes are kept but cannot be opened; the command
 * leads a session of its own, without a controlling terminal. */
static void test_proc_dev_session(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "for f in sys/kernel/core_pattern sysrq-trigger; do "
                 "sh -c \": >> /proc/$f\" 2>/dev/null && echo $f writable; "
                 "done; "
                 "echo timer_list=$(wc -c < /proc/timer_list) "
                 "keys=$(wc -c < /proc/keys); "
                 "for d in /tmp /dev /dev/shm; do mknod $d/n c 1 3 && "
                 "{ cat $d/n && echo $d opened || echo $d refused; }; done "
                 "2>/dev/null; "
                 "echo x > /dev/null && echo null-ok; "
                 "sh -c ': < /dev/tty' 2>/dev/null && echo tty-opened; "
                 "read -r a b c d e sid rest < /proc/$$/stat; echo sid=$sid");
    box_run_ok(&b);
    assert_string_equal(b.output, "timer_list=0 keys=0\n/tmp refused\n"
                                  "/dev refused\n/dev/shm refused\nnull-ok\n"
                                  "sid=1\n");
    char path[PATH_MAX];
    join(path, sizeof path, b.upper, "tmp/n");
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
    box_free(&b);
}

static void test_hostname(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "hostname");
    box_run_ok(&b);
    assert_string_equal(b.output, "cairn\n");
    box_free(&b);
    box_init(&b, "hostname");
    b.spec.hostname = "buildbox";
    box_run_ok(&b);
    assert_string_equal(b.output, "buildbox\n");
    box_free(&b);
}

static void test_env_exact(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, NULL);
    b.argv[0] = "env";
    b.spec.argc = 1;
    b.env[1] = "FOO=bar baz";
    b.env[2] = "EMPTY=";
    b.spec.nenv = 3;
    box_run_ok(&b);
    assert_string_equal(b.output, "PATH=/bin\nFOO=bar baz\nEMPTY=\n");
    box_free(&b);
}

static void test_cwd_created(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "pwd; touch here");
    b.spec.cwd = "/work/sub";
    box_run_ok(&b);
    assert_string_equal(b.output, "/work/sub\n");
    char path[PATH_MAX];
    join(path, sizeof path, b.upper, "work/sub");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(st.st_uid, 0);
    assert_true(exists_in(b.upper, "work/sub/here"));
    box_free(&b);
}

static void test_users(void **state)
{
    (void)state;
    static const struct {
        const char *user, *want;
    } cases[] = {
        {"", "0 0 0\n"},
        {"app", "1000 1000 1000 2000\n"},
        {"1000", "1000 1000 1000 2000\n"},
        {"1000:2000", "1000 2000 2000\n"},
        {"app:extra", "1000 2000 2000\n"},
        {"4242", "4242 0 0\n"},
        {"4242:77", "4242 77 77\n"},
        {"root", "0 0 0\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct box b;
        box_init(&b, "echo $(id -u) $(id -g) $(id -G)");
        b.spec.user = cases[i].user;
        box_run_ok(&b);
        if (strcmp(b.output, cases[i].want) != 0)
            print_error("user '%s'\n", cases[i].user);
        assert_string_equal(b.output, cases[i].want);
        box_free(&b);
    }
}

static void test_user_errors(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "true");
    b.spec.user = "nobody";
    assert_int_equal(box_run(&b), CAIRN_E_NOTFOUND);
    assert_string_equal(b.err.msg, "unable to find user nobody: no matching "
                                   "entries in passwd file");
    box_free(&b);
    box_init(&b, "true");
    b.spec.user = "app:nogroup";
    assert_int_equal(box_run(&b), CAIRN_E_NOTFOUND);
    assert_string_equal(b.err.msg, "unable to find group nogroup: no "
                                   "matching entries in group file");
    box_free(&b);
}

static void test_command_errors(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, NULL);
    b.argv[0] = "nosuchcmd";
    b.spec.argc = 1;
    assert_int_equal(box_run(&b), CAIRN_E_NOTFOUND);
    assert_non_null(strstr(b.err.msg, "\"nosuchcmd\": executable file not "
                                      "found in $PATH"));
    box_free(&b);
    box_init(&b, NULL);
    b.argv[0] = "/no/such";
    b.spec.argc = 1;
    assert_int_equal(box_run(&b), CAIRN_E_NOTFOUND);
    assert_non_null(strstr(b.err.msg, "/no/such"));
    box_free(&b);
    /* Not executable. */
    box_init(&b, NULL);
    b.argv[0] = "/etc/passwd";
    b.spec.argc = 1;
    assert_int_equal(box_run(&b), -EACCES);
    box_free(&b);
}

static void test_network_none(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; "
                 "cat /etc/hosts; wc -c < /etc/resolv.conf; "
                 "ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-up");
    b.spec.network = CAIRN_RUN_NET_NONE;
    box_run_ok(&b);
    assert_string_equal(b.output, "lo\n127.0.0.1\tlocalhost\n0\nlo-up\n");
    box_free(&b);
}

static void test_host_network_files(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "test -f /etc/resolv.conf && test -f /etc/hosts && echo ok; "
                 "(echo x >> /etc/hosts) 2>/dev/null || echo ro");
    b.spec.network = CAIRN_RUN_NET_HOST;
    box_run_ok(&b);
    assert_string_equal(b.output, "ok\nro\n");
    box_free(&b);
}

static void test_stdin(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "cat");
    b.spec.stdin_data = "line1\nline2\n";
    b.spec.stdin_len = 12;
    box_run_ok(&b);
    assert_string_equal(b.output, "line1\nline2\n");
    box_free(&b);

    /* More than a pipe holds, read and not read. */
    size_t n = 3u << 20;
    char *data = malloc(n);
    assert_non_null(data);
    memset(data, 'z', n);
    box_init(&b, "wc -c");
    b.spec.stdin_data = data;
    b.spec.stdin_len = n;
    box_run_ok(&b);
    assert_int_equal(strtol(b.output, NULL, 10), (long)n);
    box_free(&b);
    box_init(&b, "true");
    b.spec.stdin_data = data;
    b.spec.stdin_len = n;
    box_run_ok(&b);
    box_free(&b);
    free(data);

    /* No stdin data: /dev/null. */
    box_init(&b, "wc -c");
    box_run_ok(&b);
    assert_int_equal(strtol(b.output, NULL, 10), 0);
    box_free(&b);
}

static bool listed(char **v, const char *s)
{
    for (; v && *v; v++) {
        if (strcmp(*v, s) == 0)
            return true;
    }
    return false;
}

static void test_created_mountpoints(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "true");
    box_run_ok(&b);
    assert_true(listed(b.res.created, "proc"));
    assert_true(listed(b.res.created, "dev"));
    assert_true(listed(b.res.created, "etc/hosts"));
    assert_true(listed(b.res.created, "etc/resolv.conf"));
    assert_false(listed(b.res.created, "etc")); /* the image has /etc */
    /* Nothing at all in the upper directory. */
    char cmd[3 * PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", b.upper);
    assert_int_equal(system(cmd), 0);
    box_free(&b);

    /* A layer on top that deletes /proc (a whiteout) hides the stub: the
     * mount point is made in the merged tree and removed afterwards. */
    char top[PATH_MAX], wh[PATH_MAX];
    join(top, sizeof top, base, "top-whiteout");
    mkdir_ok(top);
    join(wh, sizeof wh, top, "proc");
    assert_int_equal(mknod(wh, S_IFCHR | 0000, makedev(0, 0)), 0);
    box_init(&b, "test -d /proc/self && echo ok");
    b.lowers[0] = top;
    b.lowers[1] = lower;
    b.spec.nlowerdirs = 2;
    box_run_ok(&b);
    assert_string_equal(b.output, "ok\n");
    assert_true(listed(b.res.created, "proc"));
    assert_false(exists_in(b.upper, "proc"));
    box_free(&b);

    /* The command writes into a created directory: a real change. */
    char noetc[PATH_MAX];
    join(noetc, sizeof noetc, base, "noetc");
    int n = snprintf(cmd, sizeof cmd, "mkdir -p %s && cp -a %s/bin %s/", noetc,
                     lower, noetc);
    assert_true(n > 0 && (size_t)n < sizeof cmd);
    assert_int_equal(system(cmd), 0);
    box_init(&b, "echo y > /etc/mine");
    b.lowers[0] = noetc;
    box_run_ok(&b);
    assert_false(listed(b.res.created, "etc"));
    assert_true(listed(b.res.created, "etc/hosts"));
    assert_true(exists_in(b.upper, "etc/mine"));
    assert_false(exists_in(b.upper, "etc/hosts"));
    box_free(&b);
}

static void test_zero_lowers(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, NULL);
    b.argv[0] = "/bin/sh";
    b.spec.argc = 1;
    b.spec.nlowerdirs = 0;
    assert_int_equal(box_run(&b), CAIRN_E_NOTFOUND);
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", b.upper);
    assert_int_equal(system(cmd), 0);
    box_free(&b);
}

/* More layers than fit in a page of mount options by their full paths. */
static void test_many_lowers(void **state)
{
    (void)state;
    enum { N = 300 };
    static char dirs[N][PATH_MAX];
    const char *lowers[N + 1];
    for (int i = 0; i < N; i++) {
        snprintf(dirs[i], sizeof dirs[i],
                 "%s/a-rather-long-layer-directory-name-%03d", base, i);
        mkdir_ok(dirs[i]);
        lowers[i] = dirs[i];
    }
    char f[PATH_MAX];
    join(f, sizeof f, dirs[0], "marker");
    write_file(f, "top\n");
    lowers[N] = lower;
    struct box b;
    box_init(&b, "cat /marker");
    b.spec.lowerdirs = lowers;
    b.spec.nlowerdirs = N + 1;
    box_run_ok(&b);
    assert_string_equal(b.output, "top\n");
    box_free(&b);
}

static void test_mount_ro(void **state)
{
    (void)state;
    char a[PATH_MAX], bdir[PATH_MAX], target[PATH_MAX], path[PATH_MAX];
    char buf[64];
    join(a, sizeof a, base, "ro-a");
    join(bdir, sizeof bdir, base, "ro-b");
    join(target, sizeof target, base, "ro-target");
    mkdir_ok(a);
    mkdir_ok(bdir);
    mkdir_ok(target);
    join(path, sizeof path, a, "f");
    write_file(path, "top\n");
    join(path, sizeof path, bdir, "f");
    write_file(path, "bottom\n");
    join(path, sizeof path, bdir, "g");
    write_file(path, "only-b\n");

    const char *lowers[2] = {a, bdir};
    struct cairn_err err;
    int before = count_mounts();
    assert_int_equal(cairn_sandbox_mount_ro(lowers, 2, target, &err), 0);
    assert_int_equal(count_mounts(), before + 1);
    join(path, sizeof path, target, "f");
    read_file(path, buf, sizeof buf);
    assert_string_equal(buf, "top\n");
    join(path, sizeof path, target, "g");
    read_file(path, buf, sizeof buf);
    assert_string_equal(buf, "only-b\n");
    join(path, sizeof path, target, "new");
    assert_int_equal(open(path, O_WRONLY | O_CREAT, 0644), -1);
    assert_int_equal(errno, EROFS);
    assert_int_equal(cairn_sandbox_unmount(target, &err), 0);
    assert_int_equal(count_mounts(), before);

    /* One lower: a read-only bind. */
    assert_int_equal(cairn_sandbox_mount_ro(lowers + 1, 1, target, &err), 0);
    join(path, sizeof path, target, "f");
    read_file(path, buf, sizeof buf);
    assert_string_equal(buf, "bottom\n");
    assert_int_equal(open(path, O_WRONLY), -1);
    assert_int_equal(errno, EROFS);
    assert_int_equal(cairn_sandbox_unmount(target, &err), 0);
    assert_int_equal(count_mounts(), before);

    assert_int_equal(cairn_sandbox_unmount(target, &err), -EINVAL);
    assert_non_null(strstr(err.msg, target));
}

/* Root in the sandbox keeps only Docker's default capabilities, less
 * CAP_NET_RAW on the default network (pasta would relay frames it writes
 * to the host's loopback: client/sandbox/netns.h). */
static void test_caps_dropped(void **state)
{
    (void)state;
    static const struct {
        enum cairn_run_network net;
        const char *want;
    } cases[] = {
        {CAIRN_RUN_NET_DEFAULT, "CapBnd:\t00000000a80405fb\nown\n"},
        {CAIRN_RUN_NET_HOST, "CapBnd:\t00000000a80425fb\nown\n"},
        {CAIRN_RUN_NET_NONE, "CapBnd:\t00000000a80425fb\nown\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct box b;
        box_init(&b, "mount -t tmpfs t /tmp 2>/dev/null && echo mounted; "
                     "grep CapBnd /proc/self/status; "
                     "chown 1000 /tmp && echo own");
        b.spec.network = cases[i].net;
        box_run_ok(&b);
        assert_string_equal(b.output, cases[i].want);
        box_free(&b);
    }
}

/* An image whose /etc/resolv.conf points nowhere still runs. */
static void test_dangling_resolv(void **state)
{
    (void)state;
    char top[PATH_MAX], path[PATH_MAX];
    join(top, sizeof top, base, "top-dangling");
    mkdir_ok(top);
    join(path, sizeof path, top, "etc");
    mkdir_ok(path);
    join(path, sizeof path, top, "etc/resolv.conf");
    assert_int_equal(symlink("/run/nowhere/resolv.conf", path), 0);
    struct box b;
    box_init(&b, "test -e /etc/resolv.conf || echo absent; test -f "
                 "/etc/hosts && echo hosts");
    b.lowers[0] = top;
    b.lowers[1] = lower;
    b.spec.nlowerdirs = 2;
    box_run_ok(&b);
    assert_string_equal(b.output, "absent\nhosts\n");
    assert_false(listed(b.res.created, "etc/resolv.conf"));
    assert_false(exists_in(b.upper, "etc"));
    box_free(&b);
}

struct par {
    pthread_t t;
    int i;
    char want[16];
    struct box b;
};

static void *par_run(void *arg)
{
    struct par *p = arg;
    int rc = box_run(&p->b);
    if (rc != 0 || p->b.res.exit_code != 0 ||
        strcmp(p->b.output, p->want) != 0) {
        fprintf(stderr, "run %d: rc %d (%s) exit %d output '%s'\n", p->i, rc,
                p->b.err.msg, p->b.res.exit_code, p->b.output);
        p->i = -1;
    }
    return NULL;
}

/* Runs from several threads at once do not see each other's files. */
static void test_parallel(void **state)
{
    (void)state;
    enum { N = 4 };
    static struct par ps[N];
    for (int i = 0; i < N; i++) {
        ps[i].i = i;
        snprintf(ps[i].want, sizeof ps[i].want, "in%d\n", i);
        box_init(&ps[i].b, "cat");
        ps[i].b.spec.stdin_data = ps[i].want;
        ps[i].b.spec.stdin_len = strlen(ps[i].want);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&ps[i].t, NULL, par_run, &ps[i]), 0);
    for (int i = 0; i < N; i++) {
        pthread_join(ps[i].t, NULL);
        assert_int_equal(ps[i].i, i);
        box_free(&ps[i].b);
    }
}

static void test_bad_spec(void **state)
{
    (void)state;
    struct box b;
    box_init(&b, "true");
    b.spec.cwd = "relative";
    assert_int_equal(box_run(&b), CAIRN_E_INVAL);
    box_free(&b);
}

static void test_true_timing(void **state)
{
    (void)state;
    enum { RUNS = 20 };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < RUNS; i++) {
        struct box b;
        box_init(&b, NULL);
        b.argv[0] = "true";
        b.spec.argc = 1;
        box_run_ok(&b);
        box_free(&b);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                 (double)(t1.tv_nsec - t0.tv_nsec) / 1e6) /
                RUNS;
    print_message("sandbox: `true` takes %.2f ms per run\n", ms);
}

/* Last: every run's mounts were in its own namespace. */
static void test_host_mounts_unchanged(void **state)
{
    (void)state;
    assert_int_equal(count_mounts(), mounts_at_start);
    /* A leak shows as more descriptors; fewer can happen when a
     * descriptor the test runner passed down is closed by a library. */
    int fds = count_fds(false);
    if (fds > fds_at_start) {
        fprintf(stderr, "%d descriptors open, %d at start:\n", fds,
                fds_at_start);
        count_fds(true);
    }
    assert_true(fds <= fds_at_start);
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "test -z \"$(ls -d %s/cairn-run-* %s/cairn-ro-* 2>/dev/null)\"",
             base, base);
    assert_int_equal(system(cmd), 0);
}

static void test_run_mounts(void **state)
{
    (void)state;
    char src[PATH_MAX], file[PATH_MAX], path[PATH_MAX];
    join(src, sizeof src, base, "mount-src");
    mkdir_ok(src);
    join(path, sizeof path, src, "in.txt");
    write_file(path, "bound\n");
    join(file, sizeof file, base, "mount-file");
    write_file(file, "one file\n");
    static const char secret[] = "not-in-any-layer";
    struct cairn_run_mount m[] = {
        {.kind = CAIRN_RUN_MOUNT_BIND,
         .target = "/data/ro",
         .source = src,
         .readonly = true},
        {.kind = CAIRN_RUN_MOUNT_BIND, .target = "/data/rw", .source = src},
        {.kind = CAIRN_RUN_MOUNT_BIND,
         .target = "/etc/one.txt",
         .source = file,
         .readonly = true,
         .file = true},
        {.kind = CAIRN_RUN_MOUNT_TMPFS, .target = "/scratch", .size = 1 << 20},
        {.kind = CAIRN_RUN_MOUNT_DATA,
         .target = "/run/secrets/s",
         .file = true,
         .data = secret,
         .len = sizeof secret - 1,
         .mode = 0440,
         .uid = 0,
         .gid = 5},
    };
    struct box b;
    box_init(&b, "cat /data/ro/in.txt /etc/one.txt /run/secrets/s && echo && "
                 "! touch /data/ro/x 2>/dev/null && echo w > /data/rw/new && "
                 "stat -c '%a %g' /run/secrets/s && "
                 "! (echo x > /run/secrets/s) 2>/dev/null && "
                 "grep -c ' /scratch tmpfs ' /proc/mounts && "
                 "ls -A /scratch | wc -l && echo made > /kept");
    b.spec.mounts = m;
    b.spec.nmounts = sizeof m / sizeof m[0];
    box_run_ok(&b);
    assert_string_equal(b.output, "bound\none file\nnot-in-any-layer\n"
                                  "440 5\n1\n0\n");
    /* rw binds write through (the build hands the sandbox a copy). */
    join(path, sizeof path, src, "new");
    assert_true(exists_in(src, "new"));
    /* No target, and none of their parents, reached the upper dir; the
     * command's own file did. */
    assert_false(exists_in(b.upper, "data"));
    assert_false(exists_in(b.upper, "scratch"));
    assert_false(exists_in(b.upper, "run"));
    assert_false(exists_in(b.upper, "etc/one.txt"));
    assert_true(exists_in(b.upper, "kept"));
    box_free(&b);

    /* A layer whose whiteout hides the target's parent: the target is
     * made in the merged tree and removed from upper after the run. */
    char top[PATH_MAX], wh[PATH_MAX];
    join(top, sizeof top, base, "top-hides-data");
    mkdir_ok(top);
    join(wh, sizeof wh, top, "data");
    assert_int_equal(mknod(wh, S_IFCHR | 0000, makedev(0, 0)), 0);
    box_init(&b, "cat /data/ro/in.txt");
    b.lowers[0] = top;
    b.lowers[1] = lower;
    b.spec.nlowerdirs = 2;
    b.spec.mounts = m;
    b.spec.nmounts = 1;
    box_run_ok(&b);
    assert_string_equal(b.output, "bound\n");
    assert_false(exists_in(b.upper, "data/ro"));
    assert_false(exists_in(b.upper, "data"));
    box_free(&b);

    /* A bad target is refused before anything runs. */
    struct cairn_run_mount bad = {.kind = CAIRN_RUN_MOUNT_TMPFS,
                                  .target = "/a/../b"};
    box_init(&b, "true");
    b.spec.mounts = &bad;
    b.spec.nmounts = 1;
    assert_int_equal(box_run(&b), CAIRN_E_INVAL);
    assert_non_null(strstr(b.err.msg, "/a/../b"));
    box_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_kill_all),
        cmocka_unit_test(test_upper_and_whiteout),
        cmocka_unit_test(test_pid1_and_proc),
        cmocka_unit_test(test_dev),
        cmocka_unit_test(test_proc_dev_session),
        cmocka_unit_test(test_hostname),
        cmocka_unit_test(test_env_exact),
        cmocka_unit_test(test_cwd_created),
        cmocka_unit_test(test_users),
        cmocka_unit_test(test_user_errors),
        cmocka_unit_test(test_command_errors),
        cmocka_unit_test(test_network_none),
        cmocka_unit_test(test_host_network_files),
        cmocka_unit_test(test_stdin),
        cmocka_unit_test(test_created_mountpoints),
        cmocka_unit_test(test_zero_lowers),
        cmocka_unit_test(test_many_lowers),
        cmocka_unit_test(test_mount_ro),
        cmocka_unit_test(test_run_mounts),
        cmocka_unit_test(test_caps_dropped),
        cmocka_unit_test(test_dangling_resolv),
        cmocka_unit_test(test_parallel),
        cmocka_unit_test(test_bad_spec),
        cmocka_unit_test(test_true_timing),
        cmocka_unit_test(test_host_mounts_unchanged),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
