/* The default RUN network (see netns.h).
 *
 * The namespace. A short-lived child unshares a network namespace and
 * waits; the caller opens it through /proc/<child>/ns/net and lets the
 * child go. The open descriptor keeps the namespace alive with no process
 * in it, so pasta can configure it before the sandbox joins it (setns).
 *
 * pasta. It runs as our child, in the foreground (-f), so it can be
 * killed and reaped on every path, and dies with us (PR_SET_PDEATHSIG;
 * with the default daemon mode it would outlive a killed cairn). It is
 * handed the namespace as an inherited descriptor (--netns /proc/self/fd/3)
 * because it drops capabilities before opening the path and could no
 * longer open /proc/<pid>/ns/net of a root process; for the same reason it
 * keeps uid 0 (--runas 0: as "nobody" it could not setns into a namespace
 * owned by the host's user namespace). It still confines itself: it keeps
 * only CAP_SYS_ADMIN and CAP_NET_BIND_SERVICE, enters new mount, IPC and
 * UTS namespaces with an empty root, and installs its seccomp filter.
 * pasta writes its PID file only once the namespace is configured, so its
 * PID file is the write end of a pipe (-P /proc/self/fd/4): a line on it
 * means ready, end-of-file means pasta died (its stderr, a pipe, says
 * why).
 */
#include "client/sandbox/netns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NETNS_DEFAULT_PATH                                                     \
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* How long pasta may take to configure the namespace: it takes about
 * 0.1 s; a loaded 2-core machine running sanitizers is far slower. */
#define NETNS_READY_MS 30000
/* How much of pasta's stderr is looked at for its error message. */
#define NETNS_STDERR_MAX 4096

struct cairn_netns {
    int fd;      /* the namespace */
    pid_t pasta; /* our child, until reaped */
};

/* ------------------------------------------------------------------ */
/* The namespace. */

static int netns_read_full(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static void netns_reap(pid_t pid)
{
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* Makes a network namespace and returns a descriptor of it in *out. */
static int netns_create(int *out, struct cairn_err *err)
{
    int ready[2] = {-1, -1}, go[2] = {-1, -1};
    int rc = 0, fd = -1;
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) {
        rc = cairn_err_set(err, -errno, "network: create pipes: %s",
                           strerror(errno));
        goto out;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        rc = cairn_err_set(err, -errno, "network: fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0) {
        /* Only system calls here: the caller may be multi-threaded. Other
         * threads' pipes are closed at once: holding the write end of
         * another child's "go" pipe would keep that child waiting. */
        int r = fcntl(ready[1], F_DUPFD, 16);
        int g = r < 0 ? -1 : fcntl(go[0], F_DUPFD, 16);
        if (g < 0 || dup2(r, 0) != 0 || dup2(g, 1) != 1)
            _exit(1);
        close_range(2, ~0U, 0);
        ready[1] = 0;
        go[0] = 1;
        int e = 0;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
            e = errno;
        else if (getppid() != parent)
            _exit(1);
        else if (unshare(CLONE_NEWNET) != 0)
            e = errno;
        ssize_t w = write(ready[1], &e, sizeof e);
        (void)w;
        /* Stay in the namespace until the caller holds it. */
        char c;
        while (read(go[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    close(ready[1]);
    ready[1] = -1;
    close(go[0]);
    go[0] = -1;
    int e = 0;
    if (netns_read_full(ready[0], &e, sizeof e) != 0)
        e = ECHILD;
    if (e == 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/ns/net", (long)pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            e = errno;
    }
    close(go[1]);
    go[1] = -1;
    netns_reap(pid);
    if (e != 0) {
        rc = cairn_err_set(err, -e, "network: create a network namespace: %s",
                           strerror(e));
        goto out;
    }
    *out = fd;
    fd = -1;
out:
    for (int i = 0; i < 2; i++) {
        if (ready[i] >= 0)
            close(ready[i]);
        if (go[i] >= 0)
            close(go[i]);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ------------------------------------------------------------------ */
/* pasta. */

/* Finds pasta in PATH; *out is malloc'ed. */
static int netns_find_pasta(char **out)
{
    const char *path = getenv("PATH");
    if (path == NULL || path[0] == '\0')
        path = NETNS_DEFAULT_PATH;
    for (const char *p = path;;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        /* Relative entries are skipped: cairn runs as root. */
        if (n > 0 && p[0] == '/' && n < PATH_MAX - 8) {
            struct cairn_buf b;
            cairn_buf_init(&b, PATH_MAX);
            if (cairn_buf_append(&b, p, n) != 0 ||
                cairn_buf_puts(&b, "/pasta") != 0) {
                cairn_buf_free(&b);
                return CAIRN_E_NOMEM;
            }
            char *cand = cairn_buf_take(&b);
            if (cand == NULL)
                return CAIRN_E_NOMEM;
            struct stat st;
            if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) &&
                access(cand, X_OK) == 0) {
                *out = cand;
                return 0;
            }
            free(cand);
        }
        if (end == NULL)
            return CAIRN_E_NOTFOUND;
        p = end + 1;
    }
}

/* The last line of pasta's stderr that says something (it also reports
 * its failures to reach syslog there), into msg. */
static void netns_pasta_message(int errfd, char *msg, size_t cap)
{
    char buf[NETNS_STDERR_MAX + 1];
    size_t n = 0;
    msg[0] = '\0';
    /* Non-blocking: pasta is gone, but a child another thread is forking
     * may hold the write end for a moment. */
    fcntl(errfd, F_SETFL, O_NONBLOCK);
    while (n < NETNS_STDERR_MAX) {
        ssize_t r = read(errfd, buf + n, NETNS_STDERR_MAX - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    for (char *line = buf; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        if (nl != NULL)
            *nl = '\0';
        if (line[0] != '\0' && strncmp(line, "Failed to send", 14) != 0) {
            /* The last line, cut to the caller's buffer on purpose: an
             * error sentence, not a log. */
            size_t len = strnlen(line, cap - 1);
            memcpy(msg, line, len);
            msg[len] = '\0';
        }
        line = nl ? nl + 1 : NULL;
    }
}

/* Everything the pasta child needs, prepared before fork. */
struct netns_spawn {
    const char *exe;
    char *const *argv;
    int fds[5]; /* become 0..4: stdin, stdout, stderr, netns, PID pipe */
    pid_t parent;
};

static _Noreturn void netns_pasta_child(const struct netns_spawn *s)
{
    /* Only system calls here: the caller may be multi-threaded. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 ||
        getppid() != s->parent)
        _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Out of the way of the targets 0..4 first. */
    int high[5];
    for (int i = 0; i < 5; i++) {
        high[i] = fcntl(s->fds[i], F_DUPFD_CLOEXEC, 16);
        if (high[i] < 0)
            _exit(127);
    }
    for (int i = 0; i < 5; i++) {
        if (dup2(high[i], i) != i)
            _exit(127);
    }
    close_range(5, ~0U, 0);
    char *const envp[] = {NULL};
    execve(s->exe, s->argv, envp);
    _exit(127);
}

/* Starts pasta on the namespace fd and waits until it has configured it. */
static int netns_pasta_start(int nsfd, bool dns_forward, pid_t *out,
                             struct cairn_err *err)
{
    char *exe = NULL;
    int rc = netns_find_pasta(&exe);
    if (rc == CAIRN_E_NOTFOUND)
        return cairn_err_set(err, rc,
                             "network: pasta not found in PATH; the default "
                             "RUN network needs it: install the passt "
                             "package (apt-get install passt), or choose "
                             "--network=host (the host's network, no "
                             "isolation) or --network=none (no network)");
    if (rc != 0)
        return cairn_err_set(err, rc, "network: out of memory");

    /* One option (and its value) a line reads better than one word. */
    /* clang-format off */
    char *argv[] = {
        "pasta", "-f", "-q", "--runas", "0", "--config-net", "--no-map-gw",
        "-t", "none", "-u", "none", "-T", "none", "-U", "none",
        "--netns", "/proc/self/fd/3", "--no-netns-quit",
        "-P", "/proc/self/fd/4",
        dns_forward ? "--dns-forward" : NULL, CAIRN_NETNS_DNS_FORWARD, NULL,
    };
    /* clang-format on */
    int pidpipe[2] = {-1, -1};
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    /* pasta's stderr: a pipe read only if pasta fails to start; once it
     * runs, the read end is closed, so whatever it writes later fails
     * (pasta ignores SIGPIPE) and costs no memory. */
    int errpipe[2] = {-1, -1};
    if (devnull < 0 || pipe2(errpipe, O_CLOEXEC) != 0 ||
        pipe2(pidpipe, O_CLOEXEC) != 0) {
        rc = cairn_err_set(err, -errno, "network: prepare pasta: %s",
                           strerror(errno));
        goto out;
    }
    struct netns_spawn s = {
        exe,
        argv,
        {devnull, devnull, errpipe[1], nsfd, pidpipe[1]},
        getpid(),
    };
    pid_t pid = fork();
    if (pid < 0) {
        rc = cairn_err_set(err, -errno, "network: fork: %s", strerror(errno));
        goto out;
    }
    if (pid == 0)
        netns_pasta_child(&s);
    close(pidpipe[1]);
    pidpipe[1] = -1;
    close(errpipe[1]);
    errpipe[1] = -1;

    /* A line on the pipe: configured. End of file: pasta is gone (its
     * copy of the write end closes only when it exits). */
    char line[32];
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    ssize_t n = -1;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = NETNS_READY_MS - ((now.tv_sec - start.tv_sec) * 1000 +
                                      (now.tv_nsec - start.tv_nsec) / 1000000);
        struct pollfd pf = {pidpipe[0], POLLIN, 0};
        int r = left > 0 ? poll(&pf, 1, (int)left) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n = read(pidpipe[0], line, sizeof line);
        if (n < 0 && errno == EINTR)
            continue;
        break;
    }
    if (n > 0) {
        *out = pid;
        goto out;
    }
    kill(pid, SIGKILL);
    netns_reap(pid);
    char msg[256];
    netns_pasta_message(errpipe[0], msg, sizeof msg);
    if (n < 0 && msg[0] == '\0')
        rc = cairn_err_set(err, CAIRN_E_TIMEOUT,
                           "network: pasta did not set up the RUN network "
                           "within %d s",
                           NETNS_READY_MS / 1000);
    else
        rc = cairn_err_set(err, CAIRN_E_FAILED,
                           "network: pasta (%s) could not set up the RUN "
                           "network: %s",
                           exe, msg[0] ? msg : "it exited");
out:
    if (devnull >= 0)
        close(devnull);
    for (int i = 0; i < 2; i++) {
        if (pidpipe[i] >= 0)
            close(pidpipe[i]);
        if (errpipe[i] >= 0)
            close(errpipe[i]);
    }
    free(exe);
    return rc;
}

/* ------------------------------------------------------------------ */

int cairn_netns_open(bool dns_forward, struct cairn_netns **out,
                     struct cairn_err *err)
{
    struct cairn_netns *ns = calloc(1, sizeof *ns);
    if (ns == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "network: out of memory");
    ns->fd = -1;
    int rc = netns_create(&ns->fd, err);
    if (rc == 0)
        rc = netns_pasta_start(ns->fd, dns_forward, &ns->pasta, err);
    if (rc != 0) {
        cairn_netns_close(ns);
        return rc;
    }
    *out = ns;
    return 0;
}

int cairn_netns_fd(const struct cairn_netns *ns)
{
    return ns->fd;
}

void cairn_netns_close(struct cairn_netns *ns)
{
    if (ns == NULL)
        return;
    if (ns->pasta > 0) {
        kill(ns->pasta, SIGKILL);
        netns_reap(ns->pasta);
    }
    if (ns->fd >= 0)
        close(ns->fd);
    free(ns);
}

/* ------------------------------------------------------------------ */
/* resolv.conf */

/* Whether line (n bytes) is "nameserver ADDR" with a loopback ADDR. */
static bool netns_loopback_nameserver(const char *line, size_t n)
{
    static const char kw[] = "nameserver";
    size_t k = sizeof kw - 1;
    if (n <= k || memcmp(line, kw, k) != 0 ||
        (line[k] != ' ' && line[k] != '\t'))
        return false;
    size_t i = k;
    while (i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    size_t j = i;
    while (j < n && line[j] != ' ' && line[j] != '\t' && line[j] != '#' &&
           line[j] != ';' && line[j] != '\r')
        j++;
    char addr[INET6_ADDRSTRLEN + 1];
    if (j == i || j - i >= sizeof addr)
        return false;
    memcpy(addr, line + i, j - i);
    addr[j - i] = '\0';
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        /* ::ffff:127.x.y.z is the IPv4 loopback too. */
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}

static bool netns_is_nameserver(const char *line, size_t n)
{
    return n > 11 && memcmp(line, "nameserver", 10) == 0 &&
           (line[10] == ' ' || line[10] == '\t');
}

int cairn_netns_resolv_conf(const char *host, size_t len, struct cairn_buf *out,
                            bool *forward)
{
    if (len > CAIRN_NETNS_MAX_RESOLV)
        return CAIRN_E_TOOBIG;
    size_t kept = 0, dropped = 0;
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        const char *nl = memchr(host + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (host + i)) : len - i;
        const char *line = host + i;
        if (netns_loopback_nameserver(line, n)) {
            dropped++;
        } else {
            if (netns_is_nameserver(line, n))
                kept++;
            rc = cairn_buf_append(out, line, n);
            if (rc == 0)
                rc = cairn_buf_putc(out, '\n');
        }
        i += n + 1;
    }
    bool fwd = dropped > 0 && kept == 0;
    if (rc == 0 && fwd)
        rc = cairn_buf_puts(out, "nameserver " CAIRN_NETNS_DNS_FORWARD "\n");
    if (rc != 0)
        return CAIRN_E_NOMEM;
    *forward = fwd;
    return 0;
}
