/* cairn login / logout: credentials for a registry in Docker's
 * config.json (or its credential helper), checked against the registry
 * before they are stored, with Docker's words. */
#include "client/cmd/commands.h"

#include "client/cmd/cli.h"
#include "client/registry/creds.h"
#include "client/registry/login.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#define LOGIN_SECRET_MAX (16 * 1024)
#define LOGIN_HUB "docker.io"

static void login_usage(FILE *out)
{
    fprintf(out,
            "Usage: cairn login [OPTIONS] [SERVER]\n\n"
            "Log in to a registry (Docker Hub when SERVER is omitted).\n"
            "Credentials go to $DOCKER_CONFIG/config.json (default "
            "~/.docker/config.json)\nor to its credential helper.\n\n"
            "Options:\n"
            "  -u, --username USER    username\n"
            "  -p, --password PASS    password (prefer --password-stdin)\n"
            "      --password-stdin   read the password from stdin\n");
}

static void logout_usage(FILE *out)
{
    fprintf(out, "Usage: cairn logout [SERVER]\n\n"
                 "Log out from a registry (Docker Hub when SERVER is "
                 "omitted).\n");
}

/* SERVER as Docker takes it: "host[:port]", with or without a scheme and
 * a path ("https://host/v1/"). dst gets host[:port]. */
static int server_host(const char *arg, char *dst, size_t n)
{
    const char *p = arg ? arg : LOGIN_HUB;
    if (strncasecmp(p, "https://", 8) == 0)
        p += 8;
    else if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    size_t len = strcspn(p, "/");
    if (len == 0 || len >= n)
        return -1;
    memcpy(dst, p, len);
    dst[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)dst[i] <= 0x20 || dst[i] == 0x7f)
            return -1;
    if (strcasecmp(dst, "index.docker.io") == 0 ||
        strcasecmp(dst, "registry-1.docker.io") == 0)
        snprintf(dst, n, "%s", LOGIN_HUB);
    return 0;
}

/* Reads all of fd (capped), dropping one trailing newline (and its CR), as
 * `docker login --password-stdin` does. NULL on error (errno set). */
static char *read_secret(int fd)
{
    char *buf = malloc(LOGIN_SECRET_MAX + 1);
    size_t len = 0;
    if (!buf)
        return NULL;
    for (;;) {
        ssize_t r = read(fd, buf + len, LOGIN_SECRET_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > LOGIN_SECRET_MAX) {
            explicit_bzero(buf, len);
            free(buf);
            errno = EFBIG;
            return NULL;
        }
    }
    buf[len] = '\0';
    if (len && buf[len - 1] == '\n')
        buf[--len] = '\0';
    if (len && buf[len - 1] == '\r')
        buf[--len] = '\0';
    return buf;
}

/* One line from the terminal, echo off when secret. NULL on error. */
static char *prompt(const char *what, int secret)
{
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty)
        return NULL;
    struct termios old, quiet;
    int fd = fileno(tty);
    int restore = 0;
    /* Echo goes off before the prompt shows, so nothing typed after the
     * prompt is echoed; TCSANOW keeps what was typed ahead. */
    if (secret && tcgetattr(fd, &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        restore = tcsetattr(fd, TCSANOW, &quiet) == 0;
    }
    fprintf(tty, "%s: ", what);
    fflush(tty);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, tty);
    if (restore) {
        tcsetattr(fd, TCSANOW, &old);
        fputc('\n', tty);
    }
    fclose(tty);
    if (n < 0 || n > LOGIN_SECRET_MAX) {
        free(line);
        return NULL;
    }
    line[strcspn(line, "\r\n")] = '\0';
    return line;
}

static void secret_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

int cairn_cmd_login(int argc, char **argv)
{
    const char *user = NULL, *server = NULL, *pass_arg = NULL;
    bool pass_stdin = false, missing = false;
    char *user_buf = NULL, *pass = NULL, *idt = NULL;
    char host[256];
    int status = 1;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            login_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--password-stdin") == 0) {
            pass_stdin = true;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--username",
                                            "-u", &missing))) {
            user = v;
        } else if ((v = cairn_cli_opt_value(argc, argv, &i, "--password",
                                            "-p", &missing))) {
            pass_arg = v;
        } else if (missing || (argv[i][0] == '-' && argv[i][1])) {
            fprintf(stderr, "cairn login: %s \"%s\"\n\n",
                    missing ? "no value for" : "unknown option", argv[i]);
            login_usage(stderr);
            return 2;
        } else if (server) {
            fprintf(stderr, "cairn login: one SERVER at most\n");
            return 2;
        } else {
            server = argv[i];
        }
    }
    if (server_host(server, host, sizeof host) != 0) {
        fprintf(stderr, "cairn login: \"%s\" is not a registry\n", server);
        return 2;
    }
    if (pass_stdin && pass_arg) {
        fprintf(stderr, "cairn login: --password and --password-stdin are "
                        "mutually exclusive\n");
        return 2;
    }
    if (pass_stdin && !user) {
        fprintf(stderr, "cairn login: Must provide --username with "
                        "--password-stdin\n");
        return 2;
    }
    if (pass_arg)
        fprintf(stderr, "WARNING! Using --password via the CLI is insecure. "
                        "Use --password-stdin.\n");
    if (!user || (!pass_arg && !pass_stdin)) {
        if (!isatty(STDIN_FILENO)) {
            fprintf(stderr, "cairn login: Cannot perform an interactive "
                            "login from a non TTY device\n");
            return 1;
        }
        if (!user && !(user = user_buf = prompt("Username", 0))) {
            fprintf(stderr, "cairn login: no username\n");
            return 1;
        }
    }
    if (pass_stdin)
        pass = read_secret(STDIN_FILENO);
    else if (pass_arg)
        pass = strdup(pass_arg);
    else
        pass = prompt("Password", 1);
    if (!pass) {
        fprintf(stderr, "cairn login: reading the password: %s\n",
                errno == EFBIG ? "longer than 16 KiB" : strerror(errno));
        goto out;
    }
    if (!user[0] || !pass[0] || strchr(user, ':')) {
        fprintf(stderr, "cairn login: %s\n",
                !pass[0] ? "Error: Password Required"
                : user[0] ? "a username may not contain ':'"
                          : "Error: Username Required");
        goto out;
    }
    struct cairn_reg_creds c = {.username = (char *)user, .secret = pass};
    struct cairn_err err;
    cairn_err_clear(&err);
    /* Docker Hub's API lives at registry-1.docker.io; its login key
     * (index.docker.io) is chosen by the store. */
    const char *api = strcmp(host, LOGIN_HUB) == 0 ? "registry-1.docker.io"
                                                   : host;
    if (cairn_reg_login_check(api, &c, &idt, &err) != 0) {
        fprintf(stderr, "Error response from registry: %s\n", err.msg);
        goto out;
    }
    /* A token service that hands out refresh tokens gets its token kept
     * instead of the password, as Docker does. */
    if (idt) {
        c.secret = idt;
        c.identity_token = 1;
    }
    if (cairn_reg_creds_store(host, &c, &err) != 0) {
        fprintf(stderr, "Error saving credentials: %s\n", err.msg);
        goto out;
    }
    printf("Login Succeeded\n");
    status = 0;
out:
    free(user_buf);
    secret_free(pass);
    secret_free(idt);
    return status;
}

int cairn_cmd_logout(int argc, char **argv)
{
    const char *server = NULL;
    char host[256];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            logout_usage(stdout);
            return 0;
        }
        if ((argv[i][0] == '-' && argv[i][1]) || server) {
            logout_usage(stderr);
            return 2;
        }
        server = argv[i];
    }
    if (server_host(server, host, sizeof host) != 0) {
        fprintf(stderr, "cairn logout: \"%s\" is not a registry\n", server);
        return 2;
    }
    const char *shown = strcmp(host, LOGIN_HUB) == 0
                            ? "https://index.docker.io/v1/"
                            : host;
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc = cairn_reg_creds_erase(host, &err);
    if (rc == CAIRN_E_NOTFOUND) {
        printf("Not logged in to %s\n", shown);
        return 0;
    }
    printf("Removing login credentials for %s\n", shown);
    if (rc != 0) {
        fprintf(stderr, "WARNING: could not erase credentials: %s\n", err.msg);
        return 1;
    }
    return 0;
}
