/* client/store/layer_pgzip.c: the block-parallel gzip writes the member
 * layout of client/store/layer_gzm.h (every member header exactly as the
 * contract says, sizes that add up to the blob, one member per block;
 * zlib inflates the series, gzip -t accepts it) whose bytes depend only on
 * the input: not on the thread count nor on how the input is cut into
 * writes; at the sizes where blocks begin and end. Members also end at
 * the cut offsets the caller gives (layer_pgzip_cut_at). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "client/store/layer_pgzip.h"
#include "common/error.h"

#define BLK LAYER_GZM_BLOCK

struct sinkbuf {
    uint8_t *p;
    size_t n, cap;
    int fail_after; /* > 0: the sink fails on that call */
    int calls;
};

static int sink(void *arg, const void *p, size_t n)
{
    struct sinkbuf *b = arg;
    if (b->fail_after > 0 && ++b->calls >= b->fail_after)
        return CAIRN_E_IO;
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    return 0;
}

/* Half text that compresses, half noise that does not, so blocks differ;
 * blocks 3 and 4 are all noise, so they are stored while their
 * neighbours are deflated (and a worker goes from one to the other). */
static uint8_t *make_input(size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    uint64_t s = 0x12345678u;
    for (size_t i = 0; i < n; i++) {
        bool noise = i >= 3 * BLK && i < 5 * BLK;
        if (!noise && (i / 4096) % 2 == 0) {
            p[i] = (uint8_t)("lorem ipsum dolor sit amet "[i % 27]);
        } else {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            p[i] = (uint8_t)(s >> 24);
        }
    }
    return p;
}

/* Compresses in with threads workers, fed in writes of chunk bytes. */
static struct sinkbuf pgz_compress(const uint8_t *in, size_t n,
                                   unsigned threads, size_t chunk)
{
    struct sinkbuf b = {0};
    struct layer_pgzip *g = NULL;
    assert_int_equal(layer_pgzip_new(6, threads, sink, &b, &g), 0);
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        assert_int_equal(layer_pgzip_write(g, in + off, k), 0);
    }
    assert_int_equal(layer_pgzip_finish(g), 0);
    layer_pgzip_free(g);
    return b;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Walks the blob by the size fields alone, as the parallel reader does,
 * and checks each member against client/store/layer_gzm.h: the fixed
 * header bytes, a size that stays inside the blob, raw deflate data that
 * ends exactly where the size says and gives back block i of the input,
 * the CRC-32 and ISIZE of that block. The sizes add up to the blob. */
static void check_layout(const struct sinkbuf *b, const uint8_t *in, size_t n)
{
    static const uint8_t head[LAYER_GZM_HEAD - 4] = {
        0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 8, 0, 'C', 'z', 4, 0};
    uint8_t *out = malloc(BLK + 1);
    assert_non_null(out);
    size_t off = 0, block = 0;
    while (off < b->n) {
        assert_true(b->n - off >= LAYER_GZM_HEAD + LAYER_GZM_TRAILER);
        assert_memory_equal(b->p + off, head, sizeof head);
        size_t size = le32(b->p + off + sizeof head);
        assert_true(size >= LAYER_GZM_HEAD + LAYER_GZM_TRAILER);
        assert_true(size <= b->n - off);
        size_t start = block * BLK;
        size_t want = n - start < BLK ? n - start : BLK;
        size_t dlen = size - LAYER_GZM_HEAD - LAYER_GZM_TRAILER;
        z_stream z;
        memset(&z, 0, sizeof z);
        assert_int_equal(inflateInit2(&z, -15), Z_OK);
        z.next_in = b->p + off + LAYER_GZM_HEAD;
        z.avail_in = (uInt)dlen;
        z.next_out = out;
        z.avail_out = (uInt)(BLK + 1);
        assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
        assert_int_equal(z.avail_in, 0); /* ends where the size says */
        assert_int_equal(z.total_out, want);
        inflateEnd(&z);
        assert_memory_equal(out, in + start, want);
        const uint8_t *t = b->p + off + size - LAYER_GZM_TRAILER;
        assert_int_equal(le32(t), crc32(0L, in + start, (uInt)want));
        assert_int_equal(le32(t + 4), want);
        off += size;
        block++;
    }
    assert_int_equal(off, b->n); /* the sizes add up to the blob */
    assert_int_equal(block, n == 0 ? 1 : (n + BLK - 1) / BLK);
    free(out);
}

static void check_inflates(const struct sinkbuf *b, const uint8_t *in, size_t n)
{
    uint8_t *out = malloc(n + 1);
    assert_non_null(out);
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = b->p;
    z.avail_in = (uInt)b->n;
    z.next_out = out;
    z.avail_out = (uInt)(n + 1);
    /* Member after member, as gzip and Go's compress/gzip read them. */
    size_t members = 0;
    for (;;) {
        assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
        members++;
        if (z.avail_in == 0)
            break;
        assert_int_equal(inflateReset(&z), Z_OK);
    }
    assert_int_equal((size_t)(z.next_out - out), n);
    assert_int_equal(members, n == 0 ? 1 : (n + BLK - 1) / BLK);
    assert_memory_equal(out, in, n);
    inflateEnd(&z);
    free(out);
    check_layout(b, in, n);

    char path[] = "/tmp/cairn-pgzip-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b->p, b->n), (ssize_t)b->n);
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "gzip -t %s", path);
    assert_int_equal(system(cmd), 0);
    unlink(path);
}

static void test_sizes_threads_chunks(void **state)
{
    (void)state;
    const size_t sizes[] = {0,   1,       32768,   BLK - 1,
                            BLK, BLK + 1, 2 * BLK, 7 * BLK + 12345};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        uint8_t *in = make_input(n);
        struct sinkbuf ref = pgz_compress(in, n, 1, 65536);
        check_inflates(&ref, in, n);
        const struct {
            unsigned threads;
            size_t chunk;
        } v[] = {{2, 65536}, {3, 65536}, {2, 1000}, {1, BLK}, {4, BLK + 7}};
        for (size_t j = 0; j < sizeof v / sizeof v[0]; j++) {
            struct sinkbuf b = pgz_compress(in, n, v[j].threads, v[j].chunk);
            if (b.n != ref.n || memcmp(b.p, ref.p, ref.n) != 0)
                fail_msg("size %zu: %u threads, writes of %zu: other bytes", n,
                         v[j].threads, v[j].chunk);
            free(b.p);
        }
        /* Independent blocks still compress: at this size a mostly text
         * input must shrink well. */
        if (n >= BLK)
            assert_true(ref.n < n * 3 / 4);
        free(ref.p);
        free(in);
    }
}

/* The whole blob of a one-byte input, byte for byte: the header of
 * client/store/layer_gzm.h (no name, mtime 0, OS 255: nothing of the
 * host) with the member's size, libdeflate's stored block for "x", the
 * CRC-32 of "x" and ISIZE 1. */
static void test_one_member_bytes(void **state)
{
    (void)state;
    struct sinkbuf b = pgz_compress((const uint8_t *)"x", 1, 2, 1);
    const uint8_t want[] = {
        0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 8, 0, 'C', 'z', 4, 0,
        34, 0, 0, 0,                     /* 20 + 6 + 8 */
        1, 1, 0, 0xfe, 0xff, 'x',        /* final stored block, LEN 1 */
        0x83, 0x16, 0xdc, 0x8c, 1, 0, 0, 0}; /* CRC-32 ("x"), ISIZE */
    assert_int_equal(b.n, sizeof want);
    assert_memory_equal(b.p, want, sizeof want);
    free(b.p);
}

/* A sink failure stops the stream and stays: later calls return it. */
static void test_sink_failure_sticky(void **state)
{
    (void)state;
    size_t n = 20 * BLK;
    uint8_t *in = make_input(n);
    struct sinkbuf b = {0};
    b.fail_after = 2;
    struct layer_pgzip *g = NULL;
    assert_int_equal(layer_pgzip_new(6, 2, sink, &b, &g), 0);
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0; off += 65536)
        rc = layer_pgzip_write(g, in + off, 65536);
    if (rc == 0)
        rc = layer_pgzip_finish(g);
    assert_int_equal(rc, CAIRN_E_IO);
    assert_int_equal(layer_pgzip_write(g, in, 1), CAIRN_E_IO);
    assert_int_equal(layer_pgzip_finish(g), CAIRN_E_IO);
    layer_pgzip_free(g);
    free(b.p);
    free(in);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct sinkbuf b = {0};
    struct layer_pgzip *g = NULL;
    assert_int_equal(layer_pgzip_new(0, 1, sink, &b, &g), CAIRN_E_INVAL);
    assert_int_equal(layer_pgzip_new(6, 0, sink, &b, &g), CAIRN_E_INVAL);
    assert_int_equal(
        layer_pgzip_new(6, LAYER_PGZIP_MAX_THREADS + 1, sink, &b, &g),
        CAIRN_E_INVAL);
    assert_int_equal(
        layer_pgzip_new(LAYER_PGZIP_MAX_LEVEL + 1, 1, sink, &b, &g),
        CAIRN_E_INVAL);
    assert_null(g);
    layer_pgzip_free(NULL);
}

/* Compresses in with the cuts (offset, min pairs) given up front. */
static struct sinkbuf pgz_cut_compress(const uint8_t *in, size_t n,
                                       unsigned threads, size_t chunk,
                                       const size_t (*cuts)[2], size_t ncuts)
{
    struct sinkbuf b = {0};
    struct layer_pgzip *g = NULL;
    assert_int_equal(layer_pgzip_new(1, threads, sink, &b, &g), 0);
    for (size_t i = 0; i < ncuts; i++)
        assert_int_equal(layer_pgzip_cut_at(g, cuts[i][0], cuts[i][1]), 0);
    for (size_t off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        assert_int_equal(layer_pgzip_write(g, in + off, k), 0);
    }
    /* Offsets may not go back behind the input taken. */
    assert_int_equal(layer_pgzip_cut_at(g, 10, 1), CAIRN_E_INVAL);
    assert_int_equal(layer_pgzip_finish(g), 0);
    layer_pgzip_free(g);
    return b;
}

/* Members end at the cuts asked for (not at one whose min the member
 * does not reach, never twice at one offset) and at every block; the
 * bytes do not depend on threads or write sizes. */
static void test_cuts(void **state)
{
    (void)state;
    size_t n = 3 * BLK + 5000;
    uint8_t *in = make_input(n);
    const size_t cuts[][2] = {
        {1000, 1},           /* cut */
        {5000, 100000},      /* member holds 4000 bytes: no cut */
        {BLK + 10, 0},       /* cut (0 acts as 1) */
        {BLK + 10, 1},       /* same offset: no empty member */
        {2 * BLK + 10, 1},   /* the block cut at BLK + 10 + BLK comes after */
        {n, 1},              /* the end: no empty member either */
    };
    const size_t want[] = {0, 1000, BLK + 10, 2 * BLK + 10, 3 * BLK + 10};
    size_t ncuts = sizeof cuts / sizeof cuts[0];
    struct sinkbuf ref = pgz_cut_compress(in, n, 1, 65536, cuts, ncuts);
    size_t off = 0, pos = 0, m = 0;
    while (off < ref.n) {
        assert_true(m < sizeof want / sizeof want[0]);
        assert_int_equal(pos, want[m]);
        size_t size = le32(ref.p + off + 16);
        pos += le32(ref.p + off + size - 4);
        off += size;
        m++;
    }
    assert_int_equal(m, sizeof want / sizeof want[0]);
    assert_int_equal(pos, n);
    struct sinkbuf b = pgz_cut_compress(in, n, 3, 777, cuts, ncuts);
    assert_int_equal(b.n, ref.n);
    assert_memory_equal(b.p, ref.p, ref.n);
    /* zlib reads the series as one stream and gives back the input. */
    uint8_t *out = malloc(n + 1);
    assert_non_null(out);
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = ref.p;
    z.avail_in = (uInt)ref.n;
    z.next_out = out;
    z.avail_out = (uInt)(n + 1);
    while (inflate(&z, Z_FINISH) == Z_STREAM_END && z.avail_in > 0)
        assert_int_equal(inflateReset(&z), Z_OK);
    assert_int_equal(z.avail_in, 0);
    assert_int_equal((size_t)(z.next_out - out), n);
    assert_memory_equal(out, in, n);
    inflateEnd(&z);
    free(out);
    free(b.p);
    free(ref.p);
    free(in);
}

/* CAIRN_LAYER_THREADS picks the worker count; junk falls back to the CPUs. */
static void test_threads_env(void **state)
{
    (void)state;
    setenv("CAIRN_LAYER_THREADS", "3", 1);
    assert_int_equal(layer_threads_default(), 3);
    setenv("CAIRN_LAYER_THREADS", "0", 1);
    unsigned cpus = layer_threads_default();
    assert_true(cpus >= 1 && cpus <= 8);
    setenv("CAIRN_LAYER_THREADS", "2x", 1);
    assert_int_equal(layer_threads_default(), cpus);
    setenv("CAIRN_LAYER_THREADS", "100000", 1);
    assert_int_equal(layer_threads_default(), cpus);
    unsetenv("CAIRN_LAYER_THREADS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_threads_chunks),
        cmocka_unit_test(test_one_member_bytes),
        cmocka_unit_test(test_sink_failure_sticky),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_threads_env),
        cmocka_unit_test(test_cuts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
