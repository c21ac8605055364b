#include "client/registry/credhelper.h"

#include "common/buf.h"
#include "common/fdio.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define HELPER_TIMEOUT_S 60
#define HELPER_NAME_MAX 64
/* Enough of the helper's complaint to say what went wrong. */
#define HELPER_ERR_MAX 512
#define NOT_FOUND_TEXT "credentials not found in native keychain"
#define TOKEN_USERNAME "<token>"

struct helper_run {
    struct cairn_buf out;
    struct cairn_buf errout;
    int status; /* waitpid status */
};

/* The name comes from config.json: it becomes part of a program name looked
 * up in PATH, so only a plain word may pass (no '/', no option, no space). */
static int name_check(const char *name, struct cairn_err *err)
{
    size_t n = strlen(name);
    if (n == 0 || n > HELPER_NAME_MAX || name[0] == '-')
        goto bad;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            goto bad;
    }
    return 0;
bad:
    return cairn_err_set(err, CAIRN_E_INVAL,
                         "credential helper name \"%.*s\" is not a plain word",
                         HELPER_NAME_MAX, name);
}

static long helper_timeout_ms(void)
{
    const char *s = getenv("CAIRN_CREDHELPER_TIMEOUT");
    if (s && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno == 0 && *end == '\0' && v > 0 && v <= 3600)
            return v * 1000;
    }
    return HELPER_TIMEOUT_S * 1000L;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads what is there on fd into b. Output past b's cap is an error for
 * stdout; stderr is only a message, so its excess is read and dropped.
 * Returns 1 at end of file, 0 for more to come, or a negative code. */
static int drain(int fd, struct cairn_buf *b, int keep_excess_err)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -errno;
    if (n == 0)
        return 1;
    int rc = cairn_buf_append(b, chunk, (size_t)n);
    if (rc == CAIRN_E_TOOBIG && !keep_excess_err)
        return 0;
    return rc;
}

/* Reads the helper's stdout and stderr (out_fd, err_fd) into r until
 * both reach end of file or the deadline (now_ms) passes. */
static int helper_collect(const char *prog, const char *action, int out_fd,
                          int err_fd, long deadline, struct helper_run *r,
                          struct cairn_err *err)
{
    int open_out = 1, open_err = 1;
    while (open_out || open_err) {
        long left = deadline - now_ms();
        if (left <= 0)
            return cairn_err_set(err, CAIRN_E_TIMEOUT,
                                 "credential helper %s %s did not finish in "
                                 "%ld s; killed",
                                 prog, action, helper_timeout_ms() / 1000);
        struct pollfd p[2] = {{.fd = open_out ? out_fd : -1, .events = POLLIN},
                              {.fd = open_err ? err_fd : -1, .events = POLLIN}};
        if (poll(p, 2, (int)(left > 1000 ? 1000 : left)) < 0) {
            if (errno == EINTR)
                continue;
            return cairn_err_set(err, -errno, "%s: poll: %s", prog,
                                 strerror(errno));
        }
        if (open_out && p[0].revents) {
            int d = drain(out_fd, &r->out, 1);
            if (d < 0)
                return cairn_err_set(
                    err, d == CAIRN_E_TOOBIG ? d : CAIRN_E_FAILED,
                    "credential helper %s %s: output over %d "
                    "bytes or unreadable",
                    prog, action, CAIRN_REG_CREDHELPER_OUT_MAX);
            open_out = !d;
        }
        if (open_err && p[1].revents) {
            int d = drain(err_fd, &r->errout, 0);
            open_err = d == 0;
        }
    }
    return 0;
}

/* Waits for *pid to exit, into r->status, until the deadline; *pid
 * becomes -1 once reaped. Both pipes are closed by then: the helper is
 * exiting (or handed them to a child of its own, which does not keep
 * cairn waiting past the deadline either). */
static int helper_reap(const char *prog, const char *action, pid_t *pid,
                       long deadline, struct helper_run *r,
                       struct cairn_err *err)
{
    for (;;) {
        pid_t w = waitpid(*pid, &r->status, WNOHANG);
        if (w == *pid) {
            *pid = -1;
            return 0;
        }
        if (w < 0 && errno != EINTR)
            return cairn_err_set(err, -errno, "%s: waitpid: %s", prog,
                                 strerror(errno));
        if (now_ms() >= deadline)
            return cairn_err_set(err, CAIRN_E_TIMEOUT,
                                 "credential helper %s %s did not exit; killed",
                                 prog, action);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Runs docker-credential-NAME ACTION with input on stdin, collecting its
 * stdout and stderr until it exits. stdin is a memfd rather than a pipe so
 * a helper that exits without reading cannot raise SIGPIPE in cairn. */
static int helper_run(const char *name, const char *action, const char *input,
                      struct helper_run *r, struct cairn_err *err)
{
    char prog[HELPER_NAME_MAX + 32];
    snprintf(prog, sizeof prog, "docker-credential-%s", name);
    int in = -1, outp[2] = {-1, -1}, errp[2] = {-1, -1};
    pid_t pid = -1;
    int rc = 0;
    posix_spawn_file_actions_t fa;
    int fa_ok = 0;

    in = memfd_create("cairn-credhelper", MFD_CLOEXEC);
    if (in < 0 || pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        rc = cairn_err_set(err, -errno, "%s: %s", prog, strerror(errno));
        goto out;
    }
    rc = cairn_write_all(in, input, strlen(input));
    if (rc != 0 || lseek(in, 0, SEEK_SET) != 0) {
        rc = cairn_err_set(err, rc ? rc : -errno, "%s: writing its input: %s",
                           prog, strerror(rc ? -rc : errno));
        goto out;
    }
    if (posix_spawn_file_actions_init(&fa) != 0) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    fa_ok = 1;
    /* dup2 clears close-on-exec on the new descriptor. */
    if (posix_spawn_file_actions_adddup2(&fa, in, 0) != 0 ||
        posix_spawn_file_actions_adddup2(&fa, outp[1], 1) != 0 ||
        posix_spawn_file_actions_adddup2(&fa, errp[1], 2) != 0) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    char *argv[] = {prog, (char *)action, NULL};
    int e = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
    if (e != 0) {
        pid = -1;
        rc = cairn_err_set(err, CAIRN_E_FAILED,
                           "credential helper %s: %s (is it in PATH?)", prog,
                           strerror(e));
        goto out;
    }
    close(outp[1]);
    close(errp[1]);
    outp[1] = errp[1] = -1;

    long deadline = now_ms() + helper_timeout_ms();
    rc = helper_collect(prog, action, outp[0], errp[0], deadline, r, err);
    if (rc == 0)
        rc = helper_reap(prog, action, &pid, deadline, r, err);
out:
    if (pid > 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (fa_ok)
        posix_spawn_file_actions_destroy(&fa);
    if (in >= 0)
        close(in);
    for (int i = 0; i < 2; i++) {
        if (outp[i] >= 0)
            close(outp[i]);
        if (errp[i] >= 0)
            close(errp[i]);
    }
    return rc;
}

/* The helper's complaint for a message: its first line, printable bytes
 * only, from stdout (where helpers print errors) or stderr. */
static void helper_complaint(const struct helper_run *r, char *dst, size_t n)
{
    const struct cairn_buf *b = r->out.len ? &r->out : &r->errout;
    size_t j = 0;
    for (size_t i = 0; b->data && i < b->len && j + 1 < n; i++) {
        unsigned char c = (unsigned char)b->data[i];
        if (c == '\n' && j > 0)
            break;
        if (c >= 0x20 && c < 0x7f)
            dst[j++] = (char)c;
    }
    dst[j] = '\0';
}

static int helper_not_found(const struct helper_run *r)
{
    return r->out.data && strstr(r->out.data, NOT_FOUND_TEXT) != NULL;
}

static int helper_failed(const char *name, const char *action,
                         const struct helper_run *r, struct cairn_err *err)
{
    char why[256];
    helper_complaint(r, why, sizeof why);
    if (WIFEXITED(r->status))
        return cairn_err_set(err, CAIRN_E_FAILED,
                             "credential helper docker-credential-%s %s "
                             "exited %d%s%s",
                             name, action, WEXITSTATUS(r->status),
                             why[0] ? ": " : "", why);
    return cairn_err_set(err, CAIRN_E_FAILED,
                         "credential helper docker-credential-%s %s was "
                         "killed by signal %d",
                         name, action,
                         WIFSIGNALED(r->status) ? WTERMSIG(r->status) : 0);
}

static void helper_run_init(struct helper_run *r)
{
    cairn_buf_init(&r->out, CAIRN_REG_CREDHELPER_OUT_MAX);
    cairn_buf_init(&r->errout, HELPER_ERR_MAX);
    r->status = 0;
}

static void helper_run_free(struct helper_run *r)
{
    /* stdout of a get holds a secret: wipe it before it goes back to
     * malloc. */
    if (r->out.data)
        explicit_bzero(r->out.data, r->out.len);
    cairn_buf_free(&r->out);
    cairn_buf_free(&r->errout);
}

int cairn_reg_credhelper_get(const char *name, const char *server,
                             struct cairn_reg_creds *out,
                             struct cairn_err *err)
{
    struct helper_run r;
    json_t *j = NULL;
    struct cairn_reg_creds c = {0};
    int rc = name_check(name, err);
    if (rc != 0)
        return rc;
    helper_run_init(&r);
    rc = helper_run(name, "get", server, &r, err);
    if (rc != 0)
        goto out;
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        rc = helper_not_found(&r) ? CAIRN_E_NOTFOUND
                                  : helper_failed(name, "get", &r, err);
        goto out;
    }
    j = json_loadb(r.out.data ? r.out.data : "", r.out.len, 0, NULL);
    const char *user = json_string_value(json_object_get(j, "Username"));
    const char *secret = json_string_value(json_object_get(j, "Secret"));
    if (!json_is_object(j) || !user || !secret) {
        /* The output holds a secret: it is not quoted in the message. */
        rc = cairn_err_set(err, CAIRN_E_PARSE,
                           "credential helper docker-credential-%s get: "
                           "output is not {\"Username\",\"Secret\"} JSON",
                           name);
        goto out;
    }
    if (secret[0] == '\0') {
        rc = CAIRN_E_NOTFOUND;
        goto out;
    }
    c.identity_token = strcmp(user, TOKEN_USERNAME) == 0;
    if (!(c.secret = strdup(secret)) ||
        (!c.identity_token && !(c.username = strdup(user)))) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    *out = c;
    memset(&c, 0, sizeof c);
out:
    if (rc == CAIRN_E_NOTFOUND)
        cairn_err_set(err, rc, "docker-credential-%s has no credentials for "
                               "%s",
                      name, server);
    cairn_reg_creds_clear(&c);
    json_decref(j);
    helper_run_free(&r);
    return rc;
}

int cairn_reg_credhelper_store(const char *name, const char *server,
                               const struct cairn_reg_creds *c,
                               struct cairn_err *err)
{
    struct helper_run r;
    char *input = NULL;
    int rc = name_check(name, err);
    if (rc != 0)
        return rc;
    helper_run_init(&r);
    const char *user = c->identity_token ? TOKEN_USERNAME
                       : c->username      ? c->username
                                          : "";
    json_t *j = json_pack("{s:s, s:s, s:s}", "ServerURL", server, "Username",
                          user, "Secret", c->secret ? c->secret : "");
    if (!j || !(input = json_dumps(j, JSON_COMPACT))) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    rc = helper_run(name, "store", input, &r, err);
    if (rc == 0 && (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0))
        rc = helper_failed(name, "store", &r, err);
out:
    if (input) {
        explicit_bzero(input, strlen(input));
        free(input);
    }
    json_decref(j);
    helper_run_free(&r);
    return rc;
}

int cairn_reg_credhelper_erase(const char *name, const char *server,
                               struct cairn_err *err)
{
    struct helper_run r;
    int rc = name_check(name, err);
    if (rc != 0)
        return rc;
    helper_run_init(&r);
    rc = helper_run(name, "erase", server, &r, err);
    if (rc == 0 && (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)) {
        if (helper_not_found(&r))
            rc = cairn_err_set(err, CAIRN_E_NOTFOUND,
                               "docker-credential-%s has no credentials for "
                               "%s",
                               name, server);
        else
            rc = helper_failed(name, "erase", &r, err);
    }
    helper_run_free(&r);
    return rc;
}
