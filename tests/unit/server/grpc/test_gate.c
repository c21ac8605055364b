/* server/gate: the HTTP/2 frame gate in front of gRPC. Every verdict must
 * be the same however the bytes are split (a frame header may arrive one
 * byte at a time), payloads pass unread, and a header block is refused
 * at the frame header that takes it past the limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "server/grpc/gate.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define MAX_STREAM (1u << 20)

enum { DATA = 0, HEADERS = 1, SETTINGS = 4, PING = 6, CONTINUATION = 9 };
enum { END_STREAM = 1, END_HEADERS = 4 };

struct stream {
    uint8_t b[MAX_STREAM];
    size_t len;
};

static void put(struct stream *s, const void *p, size_t n)
{
    assert_true(s->len + n <= sizeof s->b);
    memcpy(s->b + s->len, p, n);
    s->len += n;
}

/* A frame with len payload bytes of 'x' (the gate never reads them). */
static void frame(struct stream *s, uint32_t len, uint8_t type, uint8_t flags, uint32_t id)
{
    uint8_t h[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
                    (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id};
    put(s, h, sizeof h);
    assert_true(s->len + len <= sizeof s->b);
    memset(s->b + s->len, 'x', len);
    s->len += len;
}

/* The start every connection makes: preface and an empty SETTINGS. */
static void start(struct stream *s)
{
    s->len = 0;
    put(s, PREFACE, 24);
    frame(s, 0, SETTINGS, 0, 0);
}

static const struct cd_gate_limits lim = {64 << 10, 64};

/* Feeds s in pieces of step bytes (0: all at once); returns the verdict
 * and, in *at, how many bytes had been fed when it was decided. */
static int feed(const struct stream *s, size_t step, struct cd_gate *g, size_t *at)
{
    cd_gate_init(g, &lim);
    size_t off = 0;
    int rc = 0;
    while (off < s->len && rc == 0) {
        size_t n = step == 0 || s->len - off < step ? s->len - off : step;
        rc = cd_gate_feed(g, s->b + off, n);
        off += n;
    }
    if (at != NULL)
        *at = off;
    return rc;
}

static const size_t steps[] = {0, 1, 5, 9, 1000, 16393};

static void expect_all(const struct stream *s, int want, const char *reason)
{
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        struct cd_gate g;
        assert_int_equal(feed(s, steps[i], &g, NULL), want);
        if (reason != NULL)
            assert_string_equal(g.reason, reason);
    }
}

static void test_normal_call(void **state)
{
    (void)state;
    static struct stream s;
    start(&s);
    frame(&s, 0, SETTINGS, 1, 0); /* ACK */
    frame(&s, 300, HEADERS, END_HEADERS, 1);
    frame(&s, 16384, DATA, 0, 1);
    frame(&s, 100, DATA, END_STREAM, 1);
    frame(&s, 8, PING, 0, 0);
    /* A block split over frames, within the limits. */
    frame(&s, 16384, HEADERS, 0, 3);
    frame(&s, 16384, CONTINUATION, 0, 3);
    frame(&s, 10, CONTINUATION, END_HEADERS, 3);
    frame(&s, 7, DATA, END_STREAM, 3);
    expect_all(&s, 0, NULL);
    struct cd_gate g;
    feed(&s, 1, &g, NULL);
    assert_true(cd_gate_ready(&g));
}

static void test_preface(void **state)
{
    (void)state;
    static struct stream s;
    s.len = 0;
    put(&s, "GET / HTTP/1.1\r\n\r\n", 18);
    expect_all(&s, CAIRN_E_PARSE, "not the HTTP/2 client preface");
    /* Half a preface is not refused, and not ready either. */
    struct cd_gate g;
    cd_gate_init(&g, &lim);
    assert_int_equal(cd_gate_feed(&g, (const uint8_t *)PREFACE, 10), 0);
    assert_false(cd_gate_ready(&g));
    /* The first frame must be SETTINGS. */
    s.len = 0;
    put(&s, PREFACE, 24);
    frame(&s, 10, HEADERS, END_HEADERS, 1);
    expect_all(&s, CAIRN_E_PARSE, "first frame is not SETTINGS");
}

static void test_block_over_cap(void **state)
{
    (void)state;
    static struct stream s;
    start(&s);
    frame(&s, 16384, HEADERS, 0, 1);
    for (int i = 0; i < 3; i++)
        frame(&s, 16384, CONTINUATION, 0, 1);
    size_t ok_len = s.len; /* exactly 64 KiB of block: allowed */
    frame(&s, 1, CONTINUATION, 0, 1);
    size_t bad_header_end = s.len - 1;
    frame(&s, 16384, CONTINUATION, 0, 1);
    expect_all(&s, CAIRN_E_TOOBIG, "header block larger than the limit");
    /* Decided at the header of the frame that passes the cap. */
    struct cd_gate g;
    size_t at;
    assert_int_equal(feed(&s, 1, &g, &at), CAIRN_E_TOOBIG);
    assert_int_equal(at, bad_header_end);
    s.len = ok_len;
    expect_all(&s, 0, NULL);
    /* Sticky: nothing passes after a refusal. */
    assert_int_equal(cd_gate_feed(&g, (const uint8_t *)"x", 1), CAIRN_E_TOOBIG);
}

static void test_many_continuations(void **state)
{
    (void)state;
    static struct stream s;
    start(&s);
    frame(&s, 10, HEADERS, 0, 1);
    for (int i = 0; i < 64; i++)
        frame(&s, 0, CONTINUATION, 0, 1);
    frame(&s, 0, CONTINUATION, END_HEADERS, 1);
    expect_all(&s, CAIRN_E_TOOBIG, "too many CONTINUATION frames in one header block");
}

static void test_continuation_rules(void **state)
{
    (void)state;
    static struct stream s;
    start(&s);
    frame(&s, 10, CONTINUATION, END_HEADERS, 1);
    expect_all(&s, CAIRN_E_PARSE, "CONTINUATION without HEADERS");
    /* After END_HEADERS the block is closed. */
    start(&s);
    frame(&s, 10, HEADERS, END_HEADERS, 1);
    frame(&s, 10, CONTINUATION, END_HEADERS, 1);
    expect_all(&s, CAIRN_E_PARSE, "CONTINUATION without HEADERS");
    /* Nothing else may come inside a block, not even another stream's
     * CONTINUATION. */
    start(&s);
    frame(&s, 10, HEADERS, 0, 1);
    frame(&s, 8, PING, 0, 0);
    expect_all(&s, CAIRN_E_PARSE, "header block interrupted by another frame");
    start(&s);
    frame(&s, 10, HEADERS, 0, 1);
    frame(&s, 10, CONTINUATION, END_HEADERS, 3);
    expect_all(&s, CAIRN_E_PARSE, "header block interrupted by another frame");
}

static void test_frame_size(void **state)
{
    (void)state;
    static struct stream s;
    start(&s);
    frame(&s, 16385, DATA, 0, 1);
    expect_all(&s, CAIRN_E_TOOBIG, "frame larger than 16 KiB");
}

static void test_limits_for(void **state)
{
    (void)state;
    struct cd_gate_limits l = cd_gate_limits_for(8192);
    assert_int_equal(l.max_block, 64 << 10);
    assert_int_equal(l.max_continuations, 64);
    l = cd_gate_limits_for(1u << 20);
    assert_int_equal(l.max_block, 2u << 20);
    assert_int_equal(l.max_continuations, 2048);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normal_call),        cmocka_unit_test(test_preface),
        cmocka_unit_test(test_block_over_cap),     cmocka_unit_test(test_many_continuations),
        cmocka_unit_test(test_continuation_rules), cmocka_unit_test(test_frame_size),
        cmocka_unit_test(test_limits_for),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
