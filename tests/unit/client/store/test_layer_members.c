/* client/store/layer.c + layer_pgzip.c: where gzip members are cut and
 * how members of an earlier blob are reused (docs/build.md,
 * "Compression"). A member starts at the header of every file of 64 KiB
 * or more; the bytes do not depend on the thread count; a layer written
 * with reuse is byte for byte the layer written without it, whatever the
 * member table says (right, wrong offset, truncated, missing or altered
 * blob, a FIFO in its place); after a small change that sorts first, the members after it are
 * reused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "client/store/layer.h"
#include "client/store/layer_gzm.h"
#include "common/error.h"

struct ent {
    const char *path;
    size_t size;
    uint64_t seed;
};

/* A first file that sorts before the rest (the one a change touches),
 * big files of both kinds, and a run of small files between them. */
static const struct ent ents[] = {
    {"a-first.txt", 700, 1},  {"b/big1.so", 300000, 2},
    {"b/big2.so", 70000, 3},  {"b/big3.so", 1200000, 4},
    {"b/mid.so", 65535, 5},   {"d/big4.so", 131072, 6},
};
#define NSMALL 220

struct blob {
    uint8_t *p;
    size_t n;
};

/* Compressible like code (words and repeats) with stretches of noise. */
static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = (i / 8192) % 3 == 2 ? (uint8_t)(s >> 32)
                                   : (uint8_t)("mov eax, ebx; ret "[i % 18]);
    }
}

static void add_one(struct cairn_layer_writer *w, const char *path, size_t size,
                    uint64_t seed)
{
    struct cairn_err err;
    uint8_t *buf = malloc(size ? size : 1);
    assert_non_null(buf);
    fill(buf, size, seed);
    struct cairn_layer_entry e = {.path = path, .mode = 0100644, .mtime = 1};
    assert_int_equal(cairn_layer_add_data(w, &e, buf, size, &err), 0);
    free(buf);
}

static struct blob read_all(const char *path)
{
    struct blob b = {0};
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    b.n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    b.p = malloc(b.n ? b.n : 1);
    assert_non_null(b.p);
    assert_int_equal(fread(b.p, 1, b.n, f), b.n);
    fclose(f);
    return b;
}

static char tmpdir[] = "/tmp/cairn-members-XXXXXX";

/* Writes the layer (first_seed picks the first file's content) with
 * reuse r (may be NULL); returns the blob's path (malloc'd). */
static char *write_layer(uint64_t first_seed, struct cairn_layer_reuse *r)
{
    struct cairn_layer_opts o = {.compression = CAIRN_COMPRESS_GZIP,
                                 .source_date_epoch = -1,
                                 .reuse = r};
    struct cairn_layer_writer *w = NULL;
    struct cairn_err err;
    assert_int_equal(cairn_layer_writer_new(tmpdir, &o, &w, &err), 0);
    add_one(w, ents[0].path, ents[0].size + first_seed, first_seed);
    for (size_t i = 1; i < 4; i++)
        add_one(w, ents[i].path, ents[i].size, ents[i].seed);
    for (int i = 0; i < NSMALL; i++) {
        char p[32];
        snprintf(p, sizeof p, "c/small%03d", i);
        add_one(w, p, 2000 + (size_t)i * 37, 100 + (uint64_t)i);
    }
    for (size_t i = 4; i < sizeof ents / sizeof ents[0]; i++)
        add_one(w, ents[i].path, ents[i].size, ents[i].seed);
    struct cairn_layer_desc d;
    char *path = NULL;
    assert_int_equal(cairn_layer_writer_finish(w, &d, &path, &err), 0);
    return path;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* The tar offset where each member starts (by the size fields and
 * ISIZE), and the whole tar. */
static size_t member_starts(const struct blob *b, uint64_t *starts, size_t cap,
                            struct blob *tar)
{
    size_t off = 0, n = 0;
    uint64_t pos = 0;
    tar->p = malloc(64u << 20);
    tar->n = 0;
    assert_non_null(tar->p);
    while (off < b->n) {
        assert_true(n < cap);
        size_t size = le32(b->p + off + 16);
        uint32_t isize = le32(b->p + off + size - 4);
        z_stream z;
        memset(&z, 0, sizeof z);
        assert_int_equal(inflateInit2(&z, -15), Z_OK);
        z.next_in = b->p + off + LAYER_GZM_HEAD;
        z.avail_in = (uInt)(size - LAYER_GZM_HEAD - LAYER_GZM_TRAILER);
        z.next_out = tar->p + tar->n;
        z.avail_out = (uInt)isize;
        assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
        inflateEnd(&z);
        tar->n += isize;
        starts[n++] = pos;
        pos += isize;
        off += size;
    }
    return n;
}

/* Every regular file of at least 64 KiB begins a member; no member is
 * longer than the block. */
static void check_cuts(const char *path)
{
    struct blob b = read_all(path), tar;
    static uint64_t starts[4096];
    size_t n = member_starts(&b, starts, 4096, &tar);
    for (size_t i = 0; i + 1 < n; i++)
        assert_true(starts[i + 1] - starts[i] <= LAYER_GZM_BLOCK);
    size_t big = 0;
    for (size_t off = 0; off + 512 <= tar.n && tar.p[off] != 0;) {
        const uint8_t *h = tar.p + off;
        size_t size = (size_t)strtoull((const char *)h + 124, NULL, 8);
        if (h[156] == '0' && size >= (64u << 10)) {
            bool found = false;
            for (size_t i = 0; i < n; i++)
                found = found || starts[i] == off;
            if (!found)
                fail_msg("no member starts at %.100s (tar offset %zu)",
                         (const char *)h, off);
            big++;
        }
        off += 512 + (size + 511) / 512 * 512;
    }
    assert_int_equal(big, 4); /* big1, big2, big3, big4; mid is 65535 */
    free(tar.p);
    free(b.p);
}

/* The member table of the tests: what one layer recorded, and how the
 * finder lies. */
enum lie { LIE_NONE, LIE_OFFSET, LIE_TRUNCATED, LIE_MISSING, LIE_CRC,
           LIE_DATA, LIE_FIFO };
struct table {
    struct cairn_layer_member *m;
    size_t n;
    char path[256];
    enum lie lie;
    unsigned finds, hits;
};

static int table_find(void *arg, const uint8_t key[32], char *path, size_t cap,
                      uint64_t *offset, uint32_t *size)
{
    struct table *t = arg;
    __atomic_add_fetch(&t->finds, 1, __ATOMIC_RELAXED);
    for (size_t i = 0; i < t->n; i++) {
        if (memcmp(t->m[i].key, key, 32) != 0)
            continue;
        __atomic_add_fetch(&t->hits, 1, __ATOMIC_RELAXED);
        snprintf(path, cap, "%s", t->path);
        *offset = t->m[i].offset + (t->lie == LIE_OFFSET ? 1 : 0);
        *size = t->m[i].size;
        return 0;
    }
    return CAIRN_E_NOTFOUND;
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* A copy of the blob at src the way lie spoils it, named in t->path. */
static void spoil(struct table *t, const char *src, enum lie lie)
{
    struct blob b = read_all(src);
    t->lie = lie;
    snprintf(t->path, sizeof t->path, "%s/spoiled", tmpdir);
    unlink(t->path);
    for (size_t i = 0; i < t->n; i++) {
        uint8_t *m = b.p + t->m[i].offset;
        if (lie == LIE_CRC)
            m[t->m[i].size - 8] ^= 1;
        if (lie == LIE_DATA) /* a byte of deflate data; header, CRC kept */
            m[LAYER_GZM_HEAD + t->m[i].size / 2] ^= 0x40;
    }
    if (lie == LIE_TRUNCATED)
        b.n /= 2;
    if (lie == LIE_FIFO) /* opening it for reading would wait forever */
        assert_int_equal(mkfifo(t->path, 0600), 0);
    else if (lie != LIE_MISSING)
        write_file(t->path, b.p, b.n);
    if (lie == LIE_NONE || lie == LIE_OFFSET)
        snprintf(t->path, sizeof t->path, "%s", src);
    free(b.p);
}

static void assert_same_file(const char *a, const char *b)
{
    struct blob x = read_all(a), y = read_all(b);
    if (x.n != y.n || memcmp(x.p, y.p, x.n) != 0)
        fail_msg("%s and %s differ (%zu vs %zu bytes)", a, b, x.n, y.n);
    free(x.p);
    free(y.p);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    unsetenv("CAIRN_LAYER_THREADS");
    return nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void test_cuts_and_threads(void **state)
{
    (void)state;
    setenv("CAIRN_LAYER_THREADS", "1", 1);
    char *one = write_layer(1, NULL);
    check_cuts(one);
    const char *threads[] = {"2", "4"};
    for (size_t i = 0; i < 2; i++) {
        setenv("CAIRN_LAYER_THREADS", threads[i], 1);
        char *p = write_layer(1, NULL);
        assert_same_file(one, p);
        unlink(p);
        free(p);
    }
    unsetenv("CAIRN_LAYER_THREADS");
    unlink(one);
    free(one);
}

/* Reuse: layer A records its members; B (the first file changed) written
 * with A's table is B written without, and takes most members from A;
 * every spoiled table still gives B's bytes, with nothing reused. */
static void test_reuse_same_bytes(void **state)
{
    (void)state;
    struct table t = {0};
    struct cairn_layer_reuse ra = {.find = table_find, .arg = &t};
    char *a = write_layer(1, &ra);
    assert_true(ra.nmembers >= 8);
    assert_int_equal(ra.reused, 0);
    t.m = ra.members;
    t.n = ra.nmembers;
    snprintf(t.path, sizeof t.path, "%s", a);

    char *ref = write_layer(2, NULL);
    check_cuts(ref);
    struct blob refb = read_all(ref);
    size_t members = 0;
    for (size_t off = 0; off < refb.n; off += le32(refb.p + off + 16))
        members++;
    free(refb.p);

    struct cairn_layer_reuse rb = {.find = table_find, .arg = &t};
    char *b = write_layer(2, &rb);
    assert_same_file(ref, b);
    /* All but the members before big1 (the changed file's) come from A. */
    assert_true(rb.reused > 0);
    assert_true(rb.reused + 2 >= members);
    assert_int_equal(rb.nmembers, ra.nmembers); /* recorded all the same */
    size_t good = rb.reused;
    unlink(b);
    free(b);
    cairn_layer_reuse_clear(&rb);

    const enum lie lies[] = {LIE_OFFSET, LIE_TRUNCATED, LIE_MISSING, LIE_CRC,
                             LIE_DATA, LIE_FIFO};
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        spoil(&t, a, lies[i]);
        t.hits = 0;
        struct cairn_layer_reuse rl = {.find = table_find, .arg = &t};
        char *l = write_layer(2, &rl);
        assert_same_file(ref, l);
        assert_true(t.hits > 0); /* the finder did name candidates */
        /* A truncated blob still holds its first members whole. */
        size_t most = lies[i] == LIE_TRUNCATED ? good - 1 : 0;
        if (rl.reused > most)
            fail_msg("lie %d: %zu members reused", (int)lies[i], rl.reused);
        unlink(l);
        free(l);
        cairn_layer_reuse_clear(&rl);
    }
    cairn_layer_reuse_clear(&ra);
    unlink(a);
    unlink(ref);
    free(a);
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuts_and_threads),
        cmocka_unit_test(test_reuse_same_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
