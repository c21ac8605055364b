/* Tests for client/sandbox/netns.c: the RUN's resolv.conf made from the host's
 * (table-driven), and one namespace with pasta started and stopped (the
 * end-to-end checks are in tests/integration/test_build_network.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/sandbox/netns.h"

static const struct {
    const char *host;
    const char *want;
    bool forward;
} resolv_cases[] = {
    {"", "", false},
    {"nameserver 10.0.0.2\n", "nameserver 10.0.0.2\n", false},
    /* systemd-resolved: only a loopback resolver; pasta relays. */
    {"nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
     "options edns0 trust-ad\nsearch lan\nnameserver 169.254.1.1\n", true},
    /* Loopback ones dropped, others kept: no relay (Docker's rule). */
    {"nameserver 127.0.0.1\nnameserver 192.0.2.53\nnameserver ::1\n"
     "nameserver 2001:db8::53\n",
     "nameserver 192.0.2.53\nnameserver 2001:db8::53\n", false},
    {"nameserver\t::1 # comment\n", "nameserver 169.254.1.1\n", true},
    {"nameserver ::ffff:127.0.0.1\n", "nameserver 169.254.1.1\n", true},
    {"nameserver 127.10.20.30", "nameserver 169.254.1.1\n", true},
    /* Not loopback, not nameserver lines, and junk: kept as they are. */
    {"# nameserver 127.0.0.1\nnameservers 127.0.0.1\nnameserver 128.0.0.1",
     "# nameserver 127.0.0.1\nnameservers 127.0.0.1\nnameserver 128.0.0.1\n",
     false},
    {"nameserver not-an-address\n", "nameserver not-an-address\n", false},
};

static void test_resolv_conf(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof resolv_cases / sizeof resolv_cases[0]; i++) {
        struct cairn_buf out;
        cairn_buf_init(&out, 0);
        bool forward = !resolv_cases[i].forward;
        const char *h = resolv_cases[i].host;
        assert_int_equal(cairn_netns_resolv_conf(h, strlen(h), &out, &forward),
                         0);
        assert_string_equal(out.data ? out.data : "", resolv_cases[i].want);
        assert_int_equal(forward, resolv_cases[i].forward);
        cairn_buf_free(&out);
    }
}

static void test_resolv_conf_too_big(void **state)
{
    (void)state;
    size_t n = CAIRN_NETNS_MAX_RESOLV + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, '#', n);
    struct cairn_buf out;
    cairn_buf_init(&out, 0);
    bool forward = true;
    assert_int_equal(cairn_netns_resolv_conf(big, n, &out, &forward),
                     CAIRN_E_TOOBIG);
    assert_true(forward); /* untouched on failure */
    cairn_buf_free(&out);
    free(big);
}

/* A namespace of its own, pasta stopped and reaped by close. */
static void test_open_close(void **state)
{
    (void)state;
    struct cairn_err err = {0};
    struct cairn_netns *ns = NULL;
    int rc = cairn_netns_open(false, &ns, &err);
    if (rc == CAIRN_E_NOTFOUND) {
        /* The message tells the user what to install. */
        assert_non_null(strstr(err.msg, "passt"));
        skip();
    }
    assert_int_equal(rc, 0);
    struct stat mine, theirs;
    assert_int_equal(fstat(cairn_netns_fd(ns), &theirs), 0);
    assert_int_equal(stat("/proc/self/ns/net", &mine), 0);
    assert_true(mine.st_ino != theirs.st_ino);
    cairn_netns_close(ns);
    cairn_netns_close(NULL);
}

/* Without pasta in PATH: CAIRN_E_NOTFOUND, and the message names the
 * package and the alternatives. */
static void test_no_pasta(void **state)
{
    (void)state;
    const char *old = getenv("PATH");
    char *saved = old ? strdup(old) : NULL;
    setenv("PATH", "/nonexistent", 1);
    struct cairn_err err = {0};
    struct cairn_netns *ns = NULL;
    int rc = cairn_netns_open(false, &ns, &err);
    if (saved) {
        setenv("PATH", saved, 1);
        free(saved);
    } else {
        unsetenv("PATH");
    }
    assert_int_equal(rc, CAIRN_E_NOTFOUND);
    assert_null(ns);
    assert_non_null(strstr(err.msg, "passt"));
    assert_non_null(strstr(err.msg, "--network=host"));
    assert_non_null(strstr(err.msg, "--network=none"));
}

/* A pasta that fails: its last stderr line (not the syslog noise) is in
 * the message, and nothing is left running. */
static void test_pasta_fails(void **state)
{
    (void)state;
    char dir[] = "/tmp/cairn-netns-test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[sizeof dir + 16];
    snprintf(path, sizeof path, "%s/pasta", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\n"
          "echo 'Failed to send 40 bytes to syslog' >&2\n"
          "echo 'fake pasta: no tap for you' >&2\n"
          "echo 'Failed to send 40 bytes to syslog' >&2\n"
          "exit 1\n",
          f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0755), 0);
    const char *old = getenv("PATH");
    char *saved = old ? strdup(old) : NULL;
    setenv("PATH", dir, 1);
    struct cairn_err err = {0};
    struct cairn_netns *ns = NULL;
    int rc = cairn_netns_open(false, &ns, &err);
    if (saved) {
        setenv("PATH", saved, 1);
        free(saved);
    } else {
        unsetenv("PATH");
    }
    unlink(path);
    rmdir(dir);
    assert_int_equal(rc, CAIRN_E_FAILED);
    assert_null(ns);
    assert_non_null(strstr(err.msg, "fake pasta: no tap for you"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolv_conf),
        cmocka_unit_test(test_resolv_conf_too_big),
        cmocka_unit_test(test_open_close),
        cmocka_unit_test(test_no_pasta),
        cmocka_unit_test(test_pasta_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
