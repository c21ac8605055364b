/* server/wire: the in-place protobuf reader over the pieces gRPC received a
 * message in. Every read must give the same result however the message is
 * split (piece boundaries, empty pieces anywhere) and must never read past
 * its window. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "server/reapi/wire.h"

#define MAX_PIECES 8

/* Splits msg at the given cut offsets (ascending; a repeated cut makes an
 * empty piece) into v; returns the number of pieces. */
static size_t split(const uint8_t *msg, size_t len, const size_t *cuts, size_t ncuts,
                    struct cd_iov *v)
{
    size_t n = 0, at = 0;
    for (size_t i = 0; i < ncuts; i++) {
        v[n++] = (struct cd_iov){msg + at, cuts[i] - at};
        at = cuts[i];
    }
    v[n++] = (struct cd_iov){msg + at, len - at};
    return n;
}

static void test_empty(void **state)
{
    (void)state;
    struct cd_wire w;
    uint64_t v = 99;
    cd_wire_init(&w, NULL, 0);
    assert_false(cd_wire_more(&w));
    assert_int_equal(cd_wire_varint(&w, &v), -1);
    assert_int_equal(v, 99); /* untouched on failure */
    struct cd_iov empties[3] = {{(const uint8_t *)"", 0}, {NULL, 0}, {(const uint8_t *)"", 0}};
    cd_wire_init(&w, empties, 3);
    assert_false(cd_wire_more(&w));
    assert_int_equal(cd_wire_varint(&w, &v), -1);
    assert_int_equal(cd_wire_copy(&w, &v, 0), 0);
    assert_int_equal(cd_wire_copy(&w, &v, 1), -1);
}

/* A varint split byte by byte, with empty pieces around every byte. */
static void test_varint_across_pieces(void **state)
{
    (void)state;
    const uint8_t msg[] = {0xac, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    struct cd_iov v[2 * sizeof msg + 1];
    size_t n = 0;
    for (size_t i = 0; i < sizeof msg; i++) {
        v[n++] = (struct cd_iov){NULL, 0};
        v[n++] = (struct cd_iov){msg + i, 1};
    }
    v[n++] = (struct cd_iov){NULL, 0};
    struct cd_wire w;
    cd_wire_init(&w, v, n);
    uint64_t x = 0;
    assert_int_equal(cd_wire_varint(&w, &x), 0);
    assert_int_equal(x, 300);
    assert_int_equal(w.left, sizeof msg - 2);
    assert_int_equal(cd_wire_varint(&w, &x), 0);
    assert_int_equal(x, UINT64_MAX);
    assert_false(cd_wire_more(&w));
}

static void test_varint_malformed(void **state)
{
    (void)state;
    struct cd_wire w;
    uint64_t x = 7;
    /* 11 bytes with the continuation bit. */
    const uint8_t too_long[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    struct cd_iov one = {too_long, sizeof too_long};
    cd_wire_init(&w, &one, 1);
    assert_int_equal(cd_wire_varint(&w, &x), -1);
    /* 10 bytes, but the last carries more than bit 63. */
    const uint8_t over64[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    one = (struct cd_iov){over64, sizeof over64};
    cd_wire_init(&w, &one, 1);
    assert_int_equal(cd_wire_varint(&w, &x), -1);
    /* Truncated: the continuation bit set on the last byte of the last
     * piece, followed by empty pieces. */
    const uint8_t cut[] = {0x96, 0x81};
    struct cd_iov v[3] = {{cut, 1}, {cut + 1, 1}, {NULL, 0}};
    cd_wire_init(&w, v, 3);
    assert_int_equal(cd_wire_varint(&w, &x), -1);
    assert_int_equal(x, 7);
}

static void test_key(void **state)
{
    (void)state;
    struct cd_wire w;
    uint32_t f = 0, t = 0;
    const uint8_t ok[] = {0x52, 0xf8, 0xff, 0xff, 0xff, 0x0f};
    struct cd_iov one = {ok, sizeof ok};
    cd_wire_init(&w, &one, 1);
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(f, 10);
    assert_int_equal(t, CD_WIRE_LEN);
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(f, 0x1fffffff); /* the largest field number */
    assert_int_equal(t, 0);
    const uint8_t zero[] = {0x02};
    one = (struct cd_iov){zero, 1};
    cd_wire_init(&w, &one, 1);
    assert_int_equal(cd_wire_key(&w, &f, &t), -1);
    const uint8_t big[] = {0x80, 0x80, 0x80, 0x80, 0x10}; /* field 2^29 */
    one = (struct cd_iov){big, sizeof big};
    cd_wire_init(&w, &one, 1);
    assert_int_equal(cd_wire_key(&w, &f, &t), -1);
}

/* What cd_wire_each handed over: the runs' lengths and their bytes. */
struct runs {
    size_t n;
    size_t len[MAX_PIECES];
    char all[8];
    size_t total;
};

static int collect(void *ctx, const uint8_t *p, size_t len)
{
    struct runs *s = ctx;
    assert_true(len > 0);
    assert_true(s->n < MAX_PIECES && s->total + len <= sizeof s->all);
    s->len[s->n++] = len;
    memcpy(s->all + s->total, p, len);
    s->total += len;
    return 0;
}

/* A length-delimited field whose bytes span three pieces: the sub-window
 * holds exactly them, copy and each see them in order, the outer window
 * continues after them. */
static void test_len_copy_each(void **state)
{
    (void)state;
    const uint8_t msg[] = {0x0a, 0x05, 'h', 'e', 'l', 'l', 'o', 0x10, 0x2a};
    size_t cuts[] = {3, 3, 5, 8};
    struct cd_iov v[MAX_PIECES];
    size_t n = split(msg, sizeof msg, cuts, 4, v);
    struct cd_wire w, sub;
    cd_wire_init(&w, v, n);
    uint32_t f, t;
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(cd_wire_len(&w, &sub), 0);
    assert_int_equal(sub.left, 5);
    assert_int_equal(w.left, 2);

    char buf[8] = {0};
    struct cd_wire again = sub;
    assert_int_equal(cd_wire_copy(&again, buf, 5), 0);
    assert_string_equal(buf, "hello");
    assert_false(cd_wire_more(&again));
    assert_int_equal(cd_wire_copy(&again, buf, 1), -1); /* overrun */

    /* each: the runs are the parts of the pieces inside the window. */
    struct runs seen = {0};
    assert_int_equal(cd_wire_each(sub, collect, &seen), 0);
    assert_int_equal(seen.n, 3); /* "h", "el", "lo": empty pieces skipped */
    assert_int_equal(seen.len[0], 1);
    assert_int_equal(seen.len[1], 2);
    assert_int_equal(seen.len[2], 2);
    assert_memory_equal(seen.all, "hello", 5);
    assert_int_equal(sub.left, 5); /* each takes the window by value */

    uint64_t x;
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(f, 2);
    assert_int_equal(cd_wire_varint(&w, &x), 0);
    assert_int_equal(x, 42);
    assert_false(cd_wire_more(&w));
}

static int stop_at_second(void *ctx, const uint8_t *p, size_t len)
{
    (void)p;
    (void)len;
    int *calls = ctx;
    return ++*calls == 2 ? 77 : 0;
}

static void test_each_stops(void **state)
{
    (void)state;
    const uint8_t msg[] = "abcdef";
    size_t cuts[] = {2, 4};
    struct cd_iov v[MAX_PIECES];
    size_t n = split(msg, 6, cuts, 2, v);
    struct cd_wire w;
    cd_wire_init(&w, v, n);
    int calls = 0;
    assert_int_equal(cd_wire_each(w, stop_at_second, &calls), 77);
    assert_int_equal(calls, 2);
}

/* Lengths and fixed-width values that run past the window are refused,
 * including a sub-window that ends before the pieces do. */
static void test_overruns(void **state)
{
    (void)state;
    struct cd_wire w, sub;
    const uint8_t long_len[] = {0x0a, 0x06, 'a', 'b', 'c', 'd', 'e'};
    struct cd_iov v[MAX_PIECES];
    size_t cuts[] = {2, 4};
    size_t n = split(long_len, sizeof long_len, cuts, 2, v);
    cd_wire_init(&w, v, n);
    uint32_t f, t;
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(cd_wire_len(&w, &sub), -1);

    /* Outer message: field 1 = {08 96 01} (a varint cut by the sub-window's
     * end), then bytes that must not be read as its continuation. */
    const uint8_t nested[] = {0x0a, 0x02, 0x08, 0x96, 0x01, 0x00};
    size_t cuts2[] = {3};
    n = split(nested, sizeof nested, cuts2, 1, v);
    cd_wire_init(&w, v, n);
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(cd_wire_len(&w, &sub), 0);
    assert_int_equal(cd_wire_key(&sub, &f, &t), 0);
    uint64_t x;
    assert_int_equal(cd_wire_varint(&sub, &x), -1);
    uint8_t b[4];
    struct cd_wire sub2;
    cd_wire_init(&w, v, n);
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(cd_wire_len(&w, &sub2), 0);
    assert_int_equal(cd_wire_copy(&sub2, b, 3), -1);

    const uint8_t fixed[] = {0x09, 1, 2, 3, 4, 5, 6, 7}; /* fixed64 with 7 bytes */
    struct cd_iov one = {fixed, sizeof fixed};
    cd_wire_init(&w, &one, 1);
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(cd_wire_skip(&w, t), -1);
    cd_wire_init(&w, &one, 1);
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(cd_wire_skip(&w, CD_WIRE_FIXED32), 0);
    assert_int_equal(w.left, 3);
    assert_int_equal(cd_wire_skip(&w, CD_WIRE_FIXED32), -1);
    for (uint32_t type = 3; type < 8; type++) {
        if (type == CD_WIRE_FIXED32)
            continue;
        cd_wire_init(&w, &one, 1);
        assert_int_equal(cd_wire_skip(&w, type), -1); /* groups, reserved */
    }
}

/* Keys and length prefixes padded past 5 bytes are refused, as protobuf-c
 * (which decodes every other message) refuses them; 5 bytes is fine. */
static void test_padded_varints(void **state)
{
    (void)state;
    struct cd_wire w, sub;
    uint32_t f, t;
    const uint8_t len5[] = {0x0a, 0x81, 0x80, 0x80, 0x80, 0x00, 'x'};
    struct cd_iov one = {len5, sizeof len5};
    cd_wire_init(&w, &one, 1);
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(cd_wire_len(&w, &sub), 0);
    assert_int_equal(sub.left, 1);
    const uint8_t len6[] = {0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    one = (struct cd_iov){len6, sizeof len6};
    cd_wire_init(&w, &one, 1);
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(cd_wire_len(&w, &sub), -1);
    const uint8_t key5[] = {0x88, 0x80, 0x80, 0x80, 0x00, 0x01};
    one = (struct cd_iov){key5, sizeof key5};
    cd_wire_init(&w, &one, 1);
    assert_int_equal(cd_wire_key(&w, &f, &t), 0);
    assert_int_equal(f, 1);
    const uint8_t key6[] = {0x88, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01};
    one = (struct cd_iov){key6, sizeof key6};
    cd_wire_init(&w, &one, 1);
    assert_int_equal(cd_wire_key(&w, &f, &t), -1);
}

/* Walks a message: every field's (number, type, value) folded into a
 * checksum, length-delimited values by their bytes. Returns -1 when
 * malformed. */
static int walk(struct cd_wire w, uint64_t *sum)
{
    while (cd_wire_more(&w)) {
        uint32_t f, t;
        uint64_t x = 0;
        struct cd_wire sub;
        if (cd_wire_key(&w, &f, &t) != 0)
            return -1;
        *sum = *sum * 31 + f * 8 + t;
        if (t == CD_WIRE_VARINT) {
            if (cd_wire_varint(&w, &x) != 0)
                return -1;
        } else if (t == CD_WIRE_LEN) {
            if (cd_wire_len(&w, &sub) != 0)
                return -1;
            uint8_t buf[64];
            size_t n = sub.left;
            if (n > sizeof buf || cd_wire_copy(&sub, buf, n) != 0)
                return -1;
            for (size_t i = 0; i < n; i++)
                x = x * 131 + buf[i];
        } else if (cd_wire_skip(&w, t) != 0) {
            return -1;
        }
        *sum = *sum * 31 + x;
    }
    return 0;
}

/* Every split of a message into up to four pieces (three cuts anywhere,
 * equal cuts making empty pieces) reads exactly as the whole message,
 * for a valid message and for each of its truncations. */
static void test_every_split(void **state)
{
    (void)state;
    const uint8_t msg[] = {0x0a, 0x03, 'a', '/', 'b', 0x10, 0xe8, 0x07, 0x18, 0x01,
                           0x25, 1,    2,   3,   4,   0x09, 1,    2,    3,    4,
                           5,    6,    7,   8,   0x52, 0x04, 'd',  'a',  't',  'a'};
    for (size_t len = 0; len <= sizeof msg; len++) {
        struct cd_iov whole = {msg, len};
        struct cd_wire w;
        cd_wire_init(&w, &whole, 1);
        uint64_t want = 0;
        int want_rc = walk(w, &want);
        if (len == sizeof msg)
            assert_int_equal(want_rc, 0);
        for (size_t a = 0; a <= len; a++)
            for (size_t b = a; b <= len; b++)
                for (size_t c = b; c <= len; c++) {
                    size_t cuts[] = {a, b, c};
                    struct cd_iov v[MAX_PIECES];
                    size_t n = split(msg, len, cuts, 3, v);
                    cd_wire_init(&w, v, n);
                    assert_int_equal(w.left, len);
                    uint64_t got = 0;
                    assert_int_equal(walk(w, &got), want_rc);
                    if (want_rc == 0)
                        assert_int_equal(got, want);
                }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_varint_across_pieces),
        cmocka_unit_test(test_varint_malformed),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_len_copy_each),
        cmocka_unit_test(test_each_stops),
        cmocka_unit_test(test_overruns),
        cmocka_unit_test(test_padded_varints),
        cmocka_unit_test(test_every_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
