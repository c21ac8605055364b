/* server/gatefd: the gate on a registered socket's own reads. Through the
 * recvmsg/read/close that gatefd.c defines (this test calls them as gRPC
 * does): checked bytes pass, a refused read returns nothing and fails for
 * good, close() runs the owner's callback once and frees the number, and a
 * detached registration is freed by close() (ASan finds a leak if not). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/grpc/gatefd.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

static const struct cd_gate_limits lim = {64 << 10, 64};

struct seen {
    int calls;
    struct cd_gatefd *g;
};

static void on_closed(void *ctx, struct cd_gatefd *g)
{
    struct seen *s = ctx;
    s->calls++;
    s->g = g;
}

static void pair(int sp[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
}

static void send_all(int fd, const void *p, size_t n)
{
    assert_int_equal(write(fd, p, n), (ssize_t)n);
}

/* A 9-byte frame header. */
static void header(uint8_t h[9], uint32_t len, uint8_t type, uint8_t flags, uint32_t id)
{
    const uint8_t v[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
                          (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id};
    memcpy(h, v, 9);
}

static void test_checked_bytes_pass(void **state)
{
    (void)state;
    int sp[2];
    pair(sp);
    struct seen seen = {0};
    struct cd_gatefd *g = cd_gatefd_add(sp[0], &lim, on_closed, &seen);
    assert_non_null(g);
    send_all(sp[1], PREFACE, 24);
    uint8_t buf[64];
    assert_int_equal(read(sp[0], buf, sizeof buf), 24);
    assert_memory_equal(buf, PREFACE, 24);
    assert_false(cd_gatefd_ready(g));
    uint8_t h[9];
    header(h, 0, 4 /* SETTINGS */, 0, 0);
    send_all(sp[1], h, 9);
    struct iovec iov = {buf, sizeof buf};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    assert_int_equal(recvmsg(sp[0], &m, 0), 9);
    assert_true(cd_gatefd_ready(g));
    assert_null(cd_gatefd_refusal(g));
    assert_int_equal(close(sp[0]), 0);
    assert_int_equal(seen.calls, 1);
    assert_ptr_equal(seen.g, g);
    cd_gatefd_free(g);
    close(sp[1]);
}

static void test_refusal_is_final(void **state)
{
    (void)state;
    int sp[2];
    pair(sp);
    struct seen seen = {0};
    struct cd_gatefd *g = cd_gatefd_add(sp[0], &lim, on_closed, &seen);
    assert_non_null(g);
    uint8_t out[24 + 9 + 9];
    memcpy(out, PREFACE, 24);
    header(out + 24, 0, 4, 0, 0);
    header(out + 33, 16385, 0 /* DATA */, 0, 1); /* past 16 KiB */
    send_all(sp[1], out, sizeof out);
    uint8_t buf[128];
    memset(buf, 0, sizeof buf);
    struct iovec iov[2] = {{buf, 30}, {buf + 30, sizeof buf - 30}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    errno = 0;
    assert_int_equal(recvmsg(sp[0], &m, 0), -1);
    assert_int_equal(errno, ECONNRESET);
    assert_string_equal(cd_gatefd_refusal(g), "frame larger than 16 KiB");
    /* The socket is shut down: the client reads the end. */
    assert_int_equal(read(sp[1], buf, sizeof buf), 0);
    /* Later reads fail without reading, whatever arrives. */
    assert_int_equal(read(sp[0], buf, sizeof buf), -1);
    assert_int_equal(errno, ECONNRESET);
    assert_int_equal(close(sp[0]), 0);
    assert_int_equal(seen.calls, 1);
    cd_gatefd_free(g);
    close(sp[1]);
}

/* After close() the number is free and whoever gets it is not gated. */
static void test_number_reused_ungated(void **state)
{
    (void)state;
    int sp[2];
    pair(sp);
    struct seen seen = {0};
    struct cd_gatefd *g = cd_gatefd_add(sp[0], &lim, on_closed, &seen);
    assert_non_null(g);
    int num = sp[0];
    assert_int_equal(close(sp[0]), 0);
    cd_gatefd_free(g);
    int again[2];
    pair(again);
    int mine = again[0] == num ? 0 : again[1] == num ? 1 : -1;
    assert_true(mine >= 0);
    send_all(again[1 - mine], "GET / HTTP/1.1\r\n", 16); /* not a preface */
    char buf[32];
    assert_int_equal(read(again[mine], buf, sizeof buf), 16);
    close(again[0]);
    close(again[1]);
    close(sp[1]);
    assert_int_equal(seen.calls, 1);
}

/* The owner goes first: close() frees the registration, calls nobody. */
static void test_detached(void **state)
{
    (void)state;
    int sp[2];
    pair(sp);
    struct seen seen = {0};
    struct cd_gatefd *g = cd_gatefd_add(sp[0], &lim, on_closed, &seen);
    assert_non_null(g);
    cd_gatefd_shutdown(g);
    uint8_t buf[8];
    assert_int_equal(read(sp[0], buf, sizeof buf), -1);
    assert_int_equal(errno, ECONNRESET);
    assert_true(cd_gatefd_detach(g));
    assert_int_equal(close(sp[0]), 0);
    assert_int_equal(seen.calls, 0);
    close(sp[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checked_bytes_pass),
        cmocka_unit_test(test_refusal_is_final),
        cmocka_unit_test(test_number_reused_ungated),
        cmocka_unit_test(test_detached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
