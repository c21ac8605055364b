/* client/store/layer_gunzip.c through the blob reader of
 * client/store/layer_read.c: a blob in the member layout of layer_gzm.h
 * reads to the same diff_id as zlib reads it, whatever the thread count,
 * for every reader (digest, verify from a socket, unpack); every lie a
 * member can tell is refused with CAIRN_E_CORRUPT and a sentence naming
 * it. The blobs come from a writer local to this test (libdeflate, one
 * member per block), so the reader is checked against the contract, not
 * against the project's own writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <ftw.h>
#include <libdeflate.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "cachekey/digest.h"
#include "client/store/layer.h"
#include "client/store/layer_gunzip.h"
#include "client/store/layer_gzm.h"
#include "common/error.h"

#define BLK LAYER_GZM_BLOCK

struct bytes {
    uint8_t *p;
    size_t n, cap;
};

static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* A member-layout blob, with where each member starts. */
struct blob {
    struct bytes b;
    size_t off[256];
    size_t members;
};

/* One member of in[0..n) as layer_gzm.h defines it; plain_header writes
 * an ordinary 10-byte gzip header instead (no size field), as any other
 * gzip writer would. */
static void member_add(struct blob *o, const uint8_t *in, size_t n,
                       bool plain_header)
{
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(1);
    assert_non_null(c);
    size_t cap = libdeflate_deflate_compress_bound(c, n);
    uint8_t *d = malloc(cap);
    assert_non_null(d);
    size_t dn = libdeflate_deflate_compress(c, in, n, d, cap);
    assert_true(dn > 0);
    libdeflate_free_compressor(c);
    uint8_t head[LAYER_GZM_HEAD] = {0x1f, 0x8b, 0x08, 0x04, 0,    0,    0, 0,
                                    0,    0xff, 8,    0,    0x43, 0x7a, 4, 0};
    size_t hn = LAYER_GZM_HEAD;
    if (plain_header) {
        head[3] = 0;
        hn = 10;
    }
    put_le32(head + 16, (uint32_t)(hn + dn + LAYER_GZM_TRAILER));
    uint8_t trailer[LAYER_GZM_TRAILER];
    put_le32(trailer, libdeflate_crc32(0, in, n));
    put_le32(trailer + 4, (uint32_t)n);
    assert_true(o->members < sizeof o->off / sizeof o->off[0]);
    o->off[o->members++] = o->b.n;
    bytes_add(&o->b, head, hn);
    bytes_add(&o->b, d, dn);
    bytes_add(&o->b, trailer, sizeof trailer);
    free(d);
}

static struct blob blob_make(const uint8_t *in, size_t n, bool plain_first)
{
    struct blob o;
    memset(&o, 0, sizeof o);
    for (size_t off = 0; off < n || off == 0; off += BLK) {
        size_t k = n - off < BLK ? n - off : BLK;
        member_add(&o, in + off, k, plain_first && off == 0);
        if (k == 0)
            break;
    }
    return o;
}

/* Text that compresses and noise that does not, so members differ. */
static void fill(uint8_t *p, size_t n, uint64_t s)
{
    for (size_t i = 0; i < n; i++) {
        if ((i / 3000) % 3 == 0) {
            p[i] = (uint8_t)("a shared library, more or less "[i % 31]);
        } else {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            p[i] = (uint8_t)(s >> 24);
        }
    }
}

/* A real tar (a directory, files across member boundaries, an empty
 * file) for the readers that walk entries. */
static struct bytes tar_make(void)
{
    static const struct {
        const char *name;
        size_t size;
    } files[] = {{"d/a", 600000}, {"d/empty", 0}, {"d/b", 300000}};
    struct archive *a = archive_write_new();
    assert_non_null(a);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    size_t cap = 2 << 20, used = 0;
    uint8_t *mem = malloc(cap);
    assert_non_null(mem);
    assert_int_equal(archive_write_open_memory(a, mem, cap, &used), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "d");
    archive_entry_set_filetype(e, AE_IFDIR);
    archive_entry_set_perm(e, 0755);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        archive_entry_clear(e);
        archive_entry_set_pathname(e, files[i].name);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)files[i].size);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        uint8_t *p = malloc(files[i].size + 1);
        assert_non_null(p);
        fill(p, files[i].size, 7 + i);
        assert_int_equal(archive_write_data(a, p, files[i].size),
                         (la_ssize_t)files[i].size);
        free(p);
    }
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    struct bytes t = {mem, used, cap};
    return t;
}

static void digest_of(const void *p, size_t n, char out[CAIRN_DIGEST_STR_LEN])
{
    uint8_t bin[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    assert_int_equal(ck_sha256(p, n, bin), 0);
    ck_hex_encode(bin, hex);
    snprintf(out, CAIRN_DIGEST_STR_LEN, "sha256:%s", hex);
}

struct fixture {
    char dir[64];
    char blob[96];
};

static int rm_cb(const char *p, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/cairn-gunzip-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->blob, sizeof f->blob, "%s/blob", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    unsetenv("CAIRN_LAYER_THREADS");
    return 0;
}

static void file_put(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    close(fd);
}

static void threads_set(unsigned t)
{
    char v[16];
    snprintf(v, sizeof v, "%u", t);
    setenv("CAIRN_LAYER_THREADS", v, 1);
}

static const unsigned thread_counts[] = {1, 2, 4};

/* cairn_layer_digest_file over p..n: the diff_id is the sha256 of want,
 * the digest the blob's own, and every thread count agrees. */
static void digest_ok(const char *path, const uint8_t *p, size_t n,
                      const uint8_t *want, size_t want_n)
{
    char dig[CAIRN_DIGEST_STR_LEN], diff[CAIRN_DIGEST_STR_LEN];
    digest_of(p, n, dig);
    digest_of(want, want_n, diff);
    file_put(path, p, n);
    for (size_t i = 0; i < 3; i++) {
        threads_set(thread_counts[i]);
        struct cairn_layer_desc d;
        struct cairn_err err = {0};
        int rc = cairn_layer_digest_file(path, &d, &err);
        if (rc != 0)
            fail_msg("%u threads: %s", thread_counts[i], err.msg);
        assert_string_equal(d.diff_id, diff);
        assert_string_equal(d.digest, dig);
        assert_int_equal(d.size, (int64_t)n);
        assert_string_equal(d.media_type, CAIRN_MEDIA_LAYER_GZIP);
    }
}

/* Sizes around the block: one empty member (as the writer makes for an
 * empty input), a member of one byte, exactly a block, a block
 * and one byte, and enough members to go round the ring of slots several
 * times at every thread count; the same bytes with an ordinary first
 * header (zlib's path over the same members) read to the same diff_id. */
static void test_same_as_zlib(void **state)
{
    struct fixture *f = *state;
    static const size_t sizes[] = {0, 1, BLK - 1, BLK, BLK + 1, 40 * BLK + 17};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *in = malloc(sizes[i] + 1);
        assert_non_null(in);
        fill(in, sizes[i], 99 + i);
        struct blob gzm = blob_make(in, sizes[i], false);
        struct blob plain = blob_make(in, sizes[i], true);
        assert_true(layer_gunzip_detect(gzm.b.p, gzm.b.n));
        assert_false(layer_gunzip_detect(plain.b.p, plain.b.n));
        digest_ok(f->blob, gzm.b.p, gzm.b.n, in, sizes[i]);
        digest_ok(f->blob, plain.b.p, plain.b.n, in, sizes[i]);
        /* zlib itself agrees: the layout is plain RFC 1952 members. */
        uLongf out_n = (uLongf)sizes[i];
        uint8_t *out = malloc(sizes[i] + 1);
        z_stream z;
        memset(&z, 0, sizeof z);
        assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
        z.next_in = gzm.b.p;
        z.avail_in = (uInt)gzm.b.n;
        z.next_out = out;
        z.avail_out = (uInt)out_n;
        size_t total = 0;
        while (z.avail_in > 0) {
            assert_int_equal(inflate(&z, Z_NO_FLUSH), Z_STREAM_END);
            total += z.total_out;
            assert_int_equal(inflateReset(&z), Z_OK);
        }
        inflateEnd(&z);
        assert_int_equal(total, sizes[i]);
        assert_memory_equal(out, in, total);
        free(out);
        free(in);
        free(gzm.b.p);
        free(plain.b.p);
    }
}

/* Writes the file at path to fd from a child, in pieces of 7 bytes
 * first (headers split across reads) and then 64 KiB. */
static pid_t feed_pieces(const char *path, int fd)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0)
        return pid;
    int in = open(path, O_RDONLY);
    char buf[65536];
    ssize_t n;
    for (int i = 0; i < 8 && in >= 0 && (n = read(in, buf, 7)) > 0; i++)
        if (write(fd, buf, (size_t)n) != n)
            _exit(1);
    while (in >= 0 && (n = read(in, buf, sizeof buf)) > 0)
        if (write(fd, buf, (size_t)n) != n)
            break;
    _exit(0);
}

/* The readers that walk the tar: a verify from a socket (as a download
 * is checked) accepts the blob at every thread count, and an unpack
 * makes the files the tar holds. */
static void test_verify_and_unpack(void **state)
{
    struct fixture *f = *state;
    struct bytes tar = tar_make();
    struct blob gzm = blob_make(tar.p, tar.n, false);
    assert_true(gzm.members >= 4);
    file_put(f->blob, gzm.b.p, gzm.b.n);
    char dig[CAIRN_DIGEST_STR_LEN], diff[CAIRN_DIGEST_STR_LEN];
    digest_of(gzm.b.p, gzm.b.n, dig);
    digest_of(tar.p, tar.n, diff);
    struct cairn_layer_expect want = {dig, diff, CAIRN_MEDIA_LAYER_GZIP,
                                      (int64_t)gzm.b.n, 0};
    for (size_t i = 0; i < 3; i++) {
        threads_set(thread_counts[i]);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        pid_t pid = feed_pieces(f->blob, sv[0]);
        close(sv[0]);
        struct cairn_err err = {0};
        int rc = cairn_layer_verify_fd(sv[1], &want, &err);
        close(sv[1]);
        waitpid(pid, NULL, 0);
        if (rc != 0)
            fail_msg("verify, %u threads: %s", thread_counts[i], err.msg);
        char dest[128];
        snprintf(dest, sizeof dest, "%s/root%zu", f->dir, i);
        assert_int_equal(mkdir(dest, 0755), 0);
        rc = cairn_layer_unpack(f->blob, dest, diff, &err);
        if (rc != 0)
            fail_msg("unpack, %u threads: %s", thread_counts[i], err.msg);
        char path[160];
        snprintf(path, sizeof path, "%s/d/b", dest);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, 300000);
        snprintf(path, sizeof path, "%s/d/empty", dest);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, 0);
    }
    /* The same blob cut short of its last member fails the verify. */
    want.size = (int64_t)gzm.off[gzm.members - 1];
    digest_of(gzm.b.p, (size_t)want.size, dig);
    file_put(f->blob, gzm.b.p, (size_t)want.size);
    int fd = open(f->blob, O_RDONLY);
    struct cairn_err err = {0};
    assert_int_not_equal(cairn_layer_verify_fd(fd, &want, &err), 0);
    close(fd);
    free(tar.p);
    free(gzm.b.p);
}

/* A hostile blob: made from a good one by edit, refused with want in the
 * message at every thread count, by the digest reader and by verify. */
struct hostile {
    const char *what;
    void (*edit)(struct blob *o);
    const char *want;
};

static void size_set(struct blob *o, size_t m, uint32_t v)
{
    put_le32(o->b.p + o->off[m] + 16, v);
}

static uint32_t size_of(const struct blob *o, size_t m)
{
    return get_le32(o->b.p + o->off[m] + 16);
}

static size_t trailer_at(const struct blob *o, size_t m)
{
    return o->off[m] + size_of(o, m) - LAYER_GZM_TRAILER;
}

static void ed_size_small(struct blob *o)
{
    size_set(o, 1, size_of(o, 1) - 9);
}
static void ed_size_big(struct blob *o)
{
    size_set(o, 1, size_of(o, 1) + 9);
}
static void ed_size_past_end(struct blob *o)
{
    size_set(o, o->members - 1, size_of(o, o->members - 1) + 100);
}
static void ed_size_zero(struct blob *o)
{
    size_set(o, 1, 0);
}
static void ed_size_27(struct blob *o)
{
    size_set(o, 0, 27);
}
static void ed_size_28(struct blob *o)
{
    size_set(o, 0, 28);
}
static void ed_size_huge(struct blob *o)
{
    size_set(o, 2, 0xfffffff0u);
}
static void ed_size_cap(struct blob *o)
{
    size_set(o, 0, (uint32_t)LAYER_GUNZIP_MEMBER_MAX + 1);
}
static void ed_crc(struct blob *o)
{
    o->b.p[trailer_at(o, 1)] ^= 1;
}
static void ed_isize_up(struct blob *o)
{
    size_t t = trailer_at(o, 0) + 4;
    put_le32(o->b.p + t, get_le32(o->b.p + t) + 1);
}
static void ed_isize_down(struct blob *o)
{
    size_t t = trailer_at(o, 0) + 4;
    put_le32(o->b.p + t, get_le32(o->b.p + t) - 1);
}
static void ed_isize_huge(struct blob *o)
{
    put_le32(o->b.p + trailer_at(o, 1) + 4, 0x7fffffff);
}
static void ed_deflate_byte(struct blob *o)
{
    o->b.p[o->off[1] + LAYER_GZM_HEAD + 100] ^= 0x55;
}
static void ed_trailing_garbage(struct blob *o)
{
    uint8_t junk[40];
    memset(junk, 0x5a, sizeof junk);
    bytes_add(&o->b, junk, sizeof junk);
}
static void ed_trailing_zeros(struct blob *o)
{
    uint8_t junk[5] = {0};
    bytes_add(&o->b, junk, sizeof junk);
}
static void ed_truncated(struct blob *o)
{
    o->b.n -= 3;
}
static void ed_plain_member_after(struct blob *o)
{
    static const uint8_t more[] = "more bytes in an ordinary gzip member";
    member_add(o, more, sizeof more, true);
}
/* A member whose deflate data ends one byte before its size says: the
 * byte is inside the member, the CRC and ISIZE are right. */
static void ed_slack_byte(struct blob *o)
{
    size_t last = o->members - 1;
    size_t t = trailer_at(o, last);
    uint8_t trailer[LAYER_GZM_TRAILER];
    memcpy(trailer, o->b.p + t, sizeof trailer);
    o->b.n = t;
    uint8_t z = 0;
    bytes_add(&o->b, &z, 1);
    bytes_add(&o->b, trailer, sizeof trailer);
    size_set(o, last, size_of(o, last) + 1);
}

static const struct hostile hostile_cases[] = {
    {"size field too small", ed_size_small, "gzip member at offset"},
    {"size field too big", ed_size_big, "gzip member at offset"},
    {"size field past the end", ed_size_past_end, "the blob ends inside"},
    {"size field 0", ed_size_zero, "out of bounds"},
    {"size field 27", ed_size_27, "out of bounds"},
    {"size field 28", ed_size_28, "out of bounds"},
    {"size field huge", ed_size_huge, "out of bounds"},
    {"size field one over the cap", ed_size_cap, "out of bounds"},
    {"wrong CRC", ed_crc, "CRC-32 mismatch"},
    {"ISIZE one too many", ed_isize_up, "its trailer says"},
    {"ISIZE one too few", ed_isize_down, "more bytes than its trailer"},
    {"ISIZE over a block", ed_isize_huge, "more than a block"},
    {"a flipped deflate byte", ed_deflate_byte, "gzip member at offset"},
    {"trailing garbage", ed_trailing_garbage, "not in cairn's member layout"},
    {"trailing zeros", ed_trailing_zeros, "the blob ends inside"},
    {"truncated", ed_truncated, "the blob ends inside"},
    {"an ordinary member after", ed_plain_member_after,
     "not in cairn's member layout"},
    {"deflate data short of the size", ed_slack_byte,
     "deflate data ends 1 bytes before"},
};

static void test_hostile(void **state)
{
    struct fixture *f = *state;
    size_t n = 5 * BLK + 1000;
    uint8_t *in = malloc(n);
    assert_non_null(in);
    fill(in, n, 3);
    for (size_t c = 0; c < sizeof hostile_cases / sizeof hostile_cases[0];
         c++) {
        const struct hostile *h = &hostile_cases[c];
        struct blob o = blob_make(in, n, false);
        h->edit(&o);
        file_put(f->blob, o.b.p, o.b.n);
        char dig[CAIRN_DIGEST_STR_LEN], diff[CAIRN_DIGEST_STR_LEN];
        digest_of(o.b.p, o.b.n, dig);
        digest_of(in, n, diff);
        for (size_t i = 0; i < 3; i++) {
            threads_set(thread_counts[i]);
            struct cairn_layer_desc d;
            memset(&d, 0x7e, sizeof d);
            struct cairn_err err = {0};
            int rc = cairn_layer_digest_file(f->blob, &d, &err);
            if (rc != CAIRN_E_CORRUPT || strstr(err.msg, h->want) == NULL)
                fail_msg("%s, %u threads: rc %d: %s", h->what, thread_counts[i],
                         rc, err.msg);
            /* Out-params untouched on failure. */
            assert_int_equal(d.diff_id[0], 0x7e);
            struct cairn_layer_expect want = {dig, diff, CAIRN_MEDIA_LAYER_GZIP,
                                              (int64_t)o.b.n, 0};
            int fd = open(f->blob, O_RDONLY);
            assert_true(fd >= 0);
            rc = cairn_layer_verify_fd(fd, &want, &err);
            close(fd);
            /* verify walks the tar first: noise is not a tar, so the
             * refusal may name the tar; it must never pass. */
            if (rc == 0)
                fail_msg("%s: verify passed", h->what);
        }
        free(o.b.p);
    }
    free(in);
}

/* The parallel reader alone: a feed in odd pieces and a slow taker give
 * the same bytes, and memory stays at the ring of slots (feed stops
 * taking when every slot is full). */
static void test_feed_backpressure(void **state)
{
    (void)state;
    size_t n = 30 * BLK + 5;
    uint8_t *in = malloc(n);
    assert_non_null(in);
    fill(in, n, 11);
    struct blob o = blob_make(in, n, false);
    struct layer_gunzip *g = NULL;
    assert_int_equal(layer_gunzip_new(2, &g), 0);
    size_t pos = 0, got = 0, piece = 1;
    bool stalled = false;
    for (;;) {
        while (pos < o.b.n) {
            size_t k = o.b.n - pos < piece ? o.b.n - pos : piece;
            size_t used = 0;
            assert_int_equal(layer_gunzip_feed(g, o.b.p + pos, k, &used), 0);
            pos += used;
            piece = piece * 3 + 1;
            if (piece > 3 * BLK)
                piece = 1;
            if (used < k) {
                stalled = true;
                break;
            }
        }
        const uint8_t *p;
        size_t m;
        assert_int_equal(layer_gunzip_next(g, &p, &m), 0);
        if (m == 0 && pos == o.b.n)
            break;
        assert_true(got + m <= n);
        assert_memory_equal(p, in + got, m);
        got += m;
    }
    assert_int_equal(layer_gunzip_end(g), 0);
    assert_int_equal(got, n);
    assert_true(stalled);
    layer_gunzip_free(g);
    /* Freed with members still queued and in flight: no hang, no leak. */
    assert_int_equal(layer_gunzip_new(4, &g), 0);
    size_t used;
    assert_int_equal(layer_gunzip_feed(g, o.b.p, o.b.n, &used), 0);
    assert_true(used < o.b.n);
    layer_gunzip_free(g);
    free(o.b.p);
    free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_as_zlib, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_and_unpack, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
        cmocka_unit_test(test_feed_backpressure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
