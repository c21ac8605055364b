#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cachekey/digest.h"
#include "common/error.h"
#include "server/store/store.h"

#define MIB (1u << 20)

struct fixture {
    char dir[64];
    struct cd_store *st;
    struct cd_store_opts opts;
};

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rng_next(&s) >> 32);
}

static void digest_of(const void *p, size_t n, struct cd_digest *d)
{
    assert_int_equal(ck_sha256(p, n, d->hash), 0);
    d->size = (int64_t)n;
}

/* A blob made from seed, with its digest; caller frees *data. */
static uint8_t *make_blob(size_t n, uint64_t seed, struct cd_digest *d)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    fill(p, n, seed);
    digest_of(p, n, d);
    return p;
}

static void store_open_ok(struct fixture *f)
{
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc = cd_store_open(&f->opts, &f->st, &err);
    if (rc != 0)
        fail_msg("open: %s", err.msg);
}

static void rm_store_dir(const char *dir)
{
    char p[128];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/lock.mdb", dir);
    unlink(p);
    rmdir(dir);
}

static int setup_opts(void **state, uint64_t max_size, unsigned ttl,
                      size_t batch)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/cairn-store-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    f->opts.dir = f->dir;
    f->opts.max_size = max_size;
    f->opts.upload_ttl_s = ttl;
    f->opts.stage_batch = batch;
    struct cairn_err err;
    if (cd_store_open(&f->opts, &f->st, &err) != 0) {
        fprintf(stderr, "open: %s\n", err.msg);
        rm_store_dir(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int setup_sized(void **state, uint64_t max_size, unsigned ttl)
{
    return setup_opts(state, max_size, ttl, 0);
}

static int setup(void **state)
{
    return setup_sized(state, 0, 3600);
}

/* Stages every chunk in its own txn: staged chunks show up in the stats
 * as soon as a chunk is full. */
static int setup_chunkwise(void **state)
{
    return setup_opts(state, 0, 3600, MIB);
}

static int setup_small(void **state)
{
    /* Room for about three 1 MiB blobs. */
    return setup_sized(state, 3 * MIB + MIB / 2, 3600);
}

static int setup_ttl0(void **state)
{
    return setup_opts(state, 0, 0, MIB);
}

static int setup_batch4(void **state)
{
    return setup_opts(state, 0, 3600, 4 * MIB + 123);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    cd_store_close(f->st);
    rm_store_dir(f->dir);
    free(f);
    return 0;
}

static void reopen(struct fixture *f)
{
    cd_store_close(f->st);
    f->st = NULL;
    store_open_ok(f);
}

/* Reads the whole blob through a reader in pieces of step bytes and
 * compares it with want. */
static void read_back(struct cd_store *st, const char *inst,
                      const struct cd_digest *d, const uint8_t *want,
                      size_t step)
{
    struct cd_reader *r = NULL;
    assert_int_equal(cd_store_reader_open(st, inst, d, &r), 0);
    uint8_t *buf = malloc(step);
    assert_non_null(buf);
    uint64_t off = 0;
    for (;;) {
        size_t got = 99;
        assert_int_equal(cd_reader_read(r, off, buf, step, &got), 0);
        if (got == 0)
            break;
        assert_memory_equal(buf, want + off, got);
        off += got;
    }
    assert_int_equal(off, (uint64_t)d->size);
    free(buf);
    cd_reader_close(r);
}

/* --- tests ---------------------------------------------------------------- */

static void test_put_get_roundtrip(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    uint8_t *p = make_blob(1000, 1, &d);
    assert_int_equal(cd_store_blob_put(f->st, "main", &d, p, 1000), 0);
    /* A second put of the same content is fine. */
    assert_int_equal(cd_store_blob_put(f->st, "main", &d, p, 1000), 0);
    void *got = NULL;
    assert_int_equal(cd_store_blob_get(f->st, "main", &d, 1000, &got), 0);
    assert_memory_equal(got, p, 1000);
    free(got);
    got = NULL;
    assert_int_equal(cd_store_blob_get(f->st, "main", &d, 999, &got),
                     CAIRN_E_TOOBIG);
    assert_null(got);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.blobs, 1);
    assert_int_equal(s.bytes, 1000);
    free(p);
}

static void test_mismatch_rejected(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    uint8_t *p = make_blob(3 * MIB, 2, &d);
    /* Wrong content for the digest (flip one byte). */
    p[12345] ^= 1;
    assert_int_equal(cd_store_blob_put(f->st, "main", &d, p, 3 * MIB),
                     CAIRN_E_DIGEST);
    /* Size mismatch. */
    assert_int_equal(cd_store_blob_put(f->st, "main", &d, p, 3 * MIB - 1),
                     CAIRN_E_DIGEST);
    /* Streaming: too short, then commit. */
    struct cd_upload *u = NULL;
    assert_int_equal(cd_store_upload_begin(f->st, "main", &d, &u), 0);
    assert_int_equal(cd_upload_write(u, p, 2 * MIB + 7), 0);
    assert_int_equal(cd_upload_commit(u), CAIRN_E_DIGEST);
    /* Too long is refused on write. */
    assert_int_equal(cd_store_upload_begin(f->st, "main", &d, &u), 0);
    assert_int_equal(cd_upload_write(u, p, 3 * MIB), 0);
    assert_int_equal(cd_upload_write(u, p, 1), CAIRN_E_INVAL);
    assert_int_equal(cd_upload_commit(u), CAIRN_E_DIGEST);
    bool missing = false;
    assert_int_equal(cd_store_find_missing(f->st, "main", &d, 1, &missing), 0);
    assert_true(missing);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.blobs, 0);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(s.chunks, 0);
    assert_int_equal(s.pending_uploads, 0);
    free(p);
}

static void test_streaming_and_reader(void **state)
{
    struct fixture *f = *state;
    size_t n = 3 * MIB + MIB / 2;
    struct cd_digest d;
    uint8_t *p = make_blob(n, 3, &d);
    struct cd_upload *u = NULL;
    assert_int_equal(cd_store_upload_begin(f->st, "main", &d, &u), 0);
    /* Odd piece sizes cross chunk boundaries in every way. */
    size_t off = 0, piece = 1;
    while (off < n) {
        size_t k = piece < n - off ? piece : n - off;
        assert_int_equal(cd_upload_write(u, p + off, k), 0);
        off += k;
        assert_int_equal(cd_upload_offset(u), off);
        piece = piece * 3 + 4099;
    }
    assert_int_equal(cd_upload_commit(u), 0);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.chunks, 4);
    assert_int_equal(s.pending_uploads, 0);
    read_back(f->st, "main", &d, p, 65536);
    read_back(f->st, "main", &d, p, 3 * MIB / 2 + 1);
    /* Offsets and limits. */
    struct cd_reader *r = NULL;
    assert_int_equal(cd_store_reader_open(f->st, "main", &d, &r), 0);
    uint8_t buf[5000];
    size_t got = 0;
    assert_int_equal(cd_reader_read(r, MIB - 10, buf, 20, &got), 0);
    assert_int_equal(got, 20);
    assert_memory_equal(buf, p + MIB - 10, 20);
    assert_int_equal(cd_reader_read(r, n - 100, buf, sizeof buf, &got), 0);
    assert_int_equal(got, 100);
    assert_memory_equal(buf, p + n - 100, 100);
    assert_int_equal(cd_reader_read(r, n, buf, sizeof buf, &got), 0);
    assert_int_equal(got, 0);
    assert_int_equal(cd_reader_read(r, n + 1, buf, sizeof buf, &got),
                     CAIRN_E_INVAL);
    cd_reader_close(r);
    void *whole = NULL;
    assert_int_equal(cd_store_blob_get(f->st, "main", &d, n, &whole), 0);
    assert_memory_equal(whole, p, n);
    free(whole);
    free(p);
}

/* Full buffers of stage_batch bytes are staged in one txn each; the rest
 * goes with the publish txn. */
static void test_batched_staging(void **state)
{
    struct fixture *f = *state;
    size_t n = 10 * MIB + 5;
    struct cd_digest d;
    uint8_t *p = make_blob(n, 12, &d);
    struct cd_upload *u = NULL;
    struct cd_store_stats s;
    assert_int_equal(cd_store_upload_begin(f->st, "main", &d, &u), 0);
    /* One byte short of a batch: nothing staged yet. */
    assert_int_equal(cd_upload_write(u, p, 4 * MIB - 1), 0);
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.chunks, 0);
    assert_int_equal(s.pending_uploads, 0);
    /* The batch is full and more follows: four chunks in one stage, by
     * the stager thread. */
    assert_int_equal(cd_upload_write(u, p + 4 * MIB - 1, 2), 0);
    assert_int_equal(cd_upload_wait(u), 0);
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.chunks, 4);
    assert_int_equal(s.pending_uploads, 1);
    /* A whole batch in one piece is staged straight from the caller. */
    assert_int_equal(cd_upload_write(u, p + 4 * MIB + 1, 4 * MIB - 1), 0);
    assert_int_equal(cd_upload_write(u, p + 8 * MIB, 1), 0);
    assert_int_equal(cd_upload_wait(u), 0);
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.chunks, 8);
    assert_int_equal(cd_upload_write(u, p + 8 * MIB + 1, n - 8 * MIB - 1), 0);
    assert_int_equal(cd_upload_offset(u), n);
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.chunks, 8); /* the tail waits for the commit */
    assert_int_equal(cd_upload_commit(u), 0);
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.chunks, 11);
    assert_int_equal(s.pending_uploads, 0);
    assert_int_equal(s.blobs, 1);
    read_back(f->st, "main", &d, p, 3 * MIB + 7);
    /* A blob that fits one batch: staged by the commit alone. */
    struct cd_digest e;
    uint8_t *q = make_blob(3 * MIB + 1, 13, &e);
    assert_int_equal(cd_store_upload_begin(f->st, "main", &e, &u), 0);
    assert_int_equal(cd_upload_write(u, q, 3 * MIB + 1), 0);
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.chunks, 11);
    assert_int_equal(s.pending_uploads, 0);
    assert_int_equal(cd_upload_commit(u), 0);
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.chunks, 15);
    read_back(f->st, "main", &e, q, MIB);
    free(p);
    free(q);
}

/* Aborting or expiring an upload whose buffer the stager is still
 * writing leaves nothing behind. */
static void test_abort_while_staging(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    uint8_t *p = make_blob(6 * MIB, 14, &d);
    for (int round = 0; round < 2; round++) {
        struct cd_upload *u = NULL;
        assert_int_equal(cd_store_upload_begin(f->st, "main", &d, &u), 0);
        assert_int_equal(cd_upload_write(u, p, 5 * MIB + 1), 0);
        if (round == 0) {
            cd_upload_abort(u); /* no wait first */
        } else {
            /* ttl 0: maintain expires it unless a stage is in flight;
             * either way the owner's commit ends it cleanly. */
            assert_int_equal(cd_store_maintain(f->st), 0);
            int rc = cd_upload_commit(u);
            assert_true(rc == CAIRN_E_TIMEOUT || rc == CAIRN_E_DIGEST);
        }
        struct cd_store_stats s;
        cd_store_stats_get(f->st, &s);
        assert_int_equal(s.chunks, 0);
        assert_int_equal(s.pending_uploads, 0);
        assert_int_equal(s.blobs, 0);
    }
    free(p);
}

static void test_exists_and_abort(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d, e;
    uint8_t *p = make_blob(2 * MIB + 5, 4, &d);
    uint8_t *q = make_blob(100, 5, &e);
    assert_int_equal(cd_store_blob_put(f->st, "main", &e, q, 100), 0);
    struct cd_upload *u = NULL;
    assert_int_equal(cd_store_upload_begin(f->st, "main", &e, &u),
                     CAIRN_E_EXISTS);
    assert_int_equal(cd_store_upload_begin(f->st, "main", &d, &u), 0);
    assert_int_equal(cd_upload_write(u, p, 2 * MIB + 1), 0);
    assert_int_equal(cd_upload_wait(u), 0);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.pending_uploads, 1);
    assert_int_equal(s.chunks, 1 + 2);
    cd_upload_abort(u);
    cd_upload_abort(NULL);
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.pending_uploads, 0);
    assert_int_equal(s.chunks, 1);
    assert_int_equal(s.blobs, 1);
    bool missing = false;
    assert_int_equal(cd_store_find_missing(f->st, "main", &d, 1, &missing), 0);
    assert_true(missing);
    struct cd_reader *r = NULL;
    assert_int_equal(cd_store_reader_open(f->st, "main", &d, &r),
                     CAIRN_E_NOTFOUND);
    free(p);
    free(q);
}

static void test_abandoned_upload_maintain(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    uint8_t *p = make_blob(3 * MIB, 6, &d);
    struct cd_upload *u = NULL;
    assert_int_equal(cd_store_upload_begin(f->st, "main", &d, &u), 0);
    assert_int_equal(cd_upload_write(u, p, 2 * MIB + 3), 0);
    assert_int_equal(cd_upload_wait(u), 0);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.pending_uploads, 1);
    assert_int_equal(s.chunks, 2);
    assert_int_equal(cd_store_maintain(f->st), 0);
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.pending_uploads, 0);
    assert_int_equal(s.chunks, 0);
    /* The owner comes back too late. */
    assert_int_equal(cd_upload_write(u, p + 2 * MIB + 3, MIB - 3),
                     CAIRN_E_TIMEOUT);
    assert_int_equal(cd_upload_commit(u), CAIRN_E_TIMEOUT);
    bool missing = false;
    assert_int_equal(cd_store_find_missing(f->st, "main", &d, 1, &missing), 0);
    assert_true(missing);
    /* An upload that is then completed works normally. */
    assert_int_equal(cd_store_blob_put(f->st, "main", &d, p, 3 * MIB), 0);
    read_back(f->st, "main", &d, p, MIB);
    free(p);
}

static void test_open_errors(void **state)
{
    (void)state;
    struct cd_store *st = NULL;
    struct cairn_err err;
    cairn_err_clear(&err);
    /* A regular file where the directory should be. */
    char path[] = "/tmp/cairn-store-file-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct cd_store_opts o = {.dir = path};
    assert_true(cd_store_open(&o, &st, &err) < 0);
    assert_null(st);
    assert_true(err.msg[0] != '\0');
    unlink(path);
    o.dir = NULL;
    assert_int_equal(cd_store_open(&o, &st, NULL), CAIRN_E_INVAL);
    cd_store_close(NULL);
}

static void test_concurrent_same_blob(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    size_t n = 2 * MIB + 99;
    uint8_t *p = make_blob(n, 11, &d);
    struct cd_upload *u1 = NULL, *u2 = NULL;
    assert_int_equal(cd_store_upload_begin(f->st, "m", &d, &u1), 0);
    assert_int_equal(cd_store_upload_begin(f->st, "m", &d, &u2), 0);
    assert_int_equal(cd_upload_write(u1, p, n), 0);
    assert_int_equal(cd_upload_write(u2, p, n), 0);
    assert_int_equal(cd_upload_wait(u1), 0);
    assert_int_equal(cd_upload_wait(u2), 0);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.pending_uploads, 2);
    assert_int_equal(cd_upload_commit(u1), 0);
    assert_int_equal(cd_upload_commit(u2), 0);
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.blobs, 1);
    assert_int_equal(s.bytes, n);
    assert_int_equal(s.chunks, 3);
    assert_int_equal(s.pending_uploads, 0);
    read_back(f->st, "m", &d, p, MIB);
    free(p);
}

static void test_instances_separate(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    uint8_t *p = make_blob(777, 7, &d);
    assert_int_equal(cd_store_blob_put(f->st, "main", &d, p, 777), 0);
    bool missing[1];
    assert_int_equal(cd_store_find_missing(f->st, "pr", &d, 1, missing), 0);
    assert_true(missing[0]);
    assert_int_equal(cd_store_find_missing(f->st, "", &d, 1, missing), 0);
    assert_true(missing[0]);
    assert_int_equal(cd_store_find_missing(f->st, NULL, &d, 1, missing), 0);
    assert_true(missing[0]);
    void *got = NULL;
    assert_int_equal(cd_store_blob_get(f->st, "pr", &d, 1000, &got),
                     CAIRN_E_NOTFOUND);
    /* "ma" + "in..." must not alias "main" (length-prefixed keys). */
    assert_int_equal(cd_store_find_missing(f->st, "mai", &d, 1, missing), 0);
    assert_true(missing[0]);
    char longname[CD_STORE_MAX_INSTANCE + 2];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(cd_store_blob_put(f->st, longname, &d, p, 777),
                     CAIRN_E_INVAL);
    longname[CD_STORE_MAX_INSTANCE] = '\0';
    assert_int_equal(cd_store_blob_put(f->st, longname, &d, p, 777), 0);
    assert_int_equal(cd_store_blob_get(f->st, longname, &d, 1000, &got), 0);
    assert_memory_equal(got, p, 777);
    free(got);
    free(p);
}

static void test_empty_blob(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    digest_of("", 0, &d);
    bool missing = true;
    assert_int_equal(cd_store_find_missing(f->st, "any", &d, 1, &missing), 0);
    assert_false(missing);
    void *got = NULL;
    assert_int_equal(cd_store_blob_get(f->st, "any", &d, 0, &got), 0);
    assert_non_null(got);
    free(got);
    struct cd_reader *r = NULL;
    assert_int_equal(cd_store_reader_open(f->st, "any", &d, &r), 0);
    uint8_t b[4];
    size_t n = 9;
    assert_int_equal(cd_reader_read(r, 0, b, sizeof b, &n), 0);
    assert_int_equal(n, 0);
    cd_reader_close(r);
    struct cd_upload *u = NULL;
    assert_int_equal(cd_store_upload_begin(f->st, "any", &d, &u),
                     CAIRN_E_EXISTS);
    assert_int_equal(cd_store_blob_put(f->st, "any", &d, "", 0), 0);
    /* Size 0 with another hash is not the empty blob. */
    d.hash[0] ^= 1;
    assert_int_equal(cd_store_find_missing(f->st, "any", &d, 1, &missing), 0);
    assert_true(missing);
    assert_int_equal(cd_store_blob_put(f->st, "any", &d, "", 0),
                     CAIRN_E_DIGEST);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.blobs, 0);
}

static void test_find_missing(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d[4];
    uint8_t *a = make_blob(10, 8, &d[0]);
    uint8_t *b = make_blob(20, 9, &d[1]);
    uint8_t *c = make_blob(30, 10, &d[2]);
    d[3] = d[1];
    d[3].size = 21; /* right hash, wrong size */
    assert_int_equal(cd_store_blob_put(f->st, "i", &d[0], a, 10), 0);
    assert_int_equal(cd_store_blob_put(f->st, "i", &d[2], c, 30), 0);
    bool m[4];
    assert_int_equal(cd_store_find_missing(f->st, "i", d, 4, m), 0);
    assert_false(m[0]);
    assert_true(m[1]);
    assert_false(m[2]);
    assert_true(m[3]);
    free(a);
    free(b);
    free(c);
}

static void test_lru_eviction(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d[4];
    uint8_t *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = make_blob(MIB, 20 + (uint64_t)i, &d[i]);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cd_store_blob_put(f->st, "m", &d[i], p[i], MIB), 0);
    /* Touch the oldest: now blob 1 is least recently used. */
    void *got = NULL;
    assert_int_equal(cd_store_blob_get(f->st, "m", &d[0], MIB, &got), 0);
    free(got);
    assert_int_equal(cd_store_blob_put(f->st, "m", &d[3], p[3], MIB), 0);
    bool m[4];
    assert_int_equal(cd_store_find_missing(f->st, "m", d, 4, m), 0);
    assert_false(m[0]);
    assert_true(m[1]);
    assert_false(m[2]);
    assert_false(m[3]);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.blobs, 3);
    assert_int_equal(s.bytes, 3 * MIB);
    assert_int_equal(s.evictions, 1);
    assert_int_equal(s.evicted_bytes, MIB);
    assert_int_equal(s.garbage, 0);
    assert_int_equal(s.chunks, 3);
    /* The LRU order survives a reopen (it lives in LMDB): touch 2 and 3,
     * reopen, insert 1 again: 0 goes. */
    assert_int_equal(cd_store_blob_get(f->st, "m", &d[2], MIB, &got), 0);
    free(got);
    assert_int_equal(cd_store_blob_get(f->st, "m", &d[3], MIB, &got), 0);
    free(got);
    reopen(f);
    assert_int_equal(cd_store_blob_put(f->st, "m", &d[1], p[1], MIB), 0);
    assert_int_equal(cd_store_find_missing(f->st, "m", d, 4, m), 0);
    assert_true(m[0]);
    assert_false(m[1]);
    assert_false(m[2]);
    assert_false(m[3]);
    for (int i = 0; i < 4; i++)
        free(p[i]);
}

static void test_reader_survives_or_notfound(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d[5];
    uint8_t *p[5];
    for (int i = 0; i < 5; i++)
        p[i] = make_blob(MIB, 40 + (uint64_t)i, &d[i]);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cd_store_blob_put(f->st, "m", &d[i], p[i], MIB), 0);
    /* An open reader on the oldest blob protects it: the next one goes. */
    struct cd_reader *r[3] = {NULL, NULL, NULL};
    assert_int_equal(cd_store_reader_open(f->st, "m", &d[0], &r[0]), 0);
    assert_int_equal(cd_store_blob_put(f->st, "m", &d[3], p[3], MIB), 0);
    bool m[5];
    assert_int_equal(cd_store_find_missing(f->st, "m", d, 4, m), 0);
    assert_false(m[0]);
    assert_true(m[1]);
    uint8_t buf[4096];
    size_t got = 0;
    assert_int_equal(cd_reader_read(r[0], 0, buf, sizeof buf, &got), 0);
    assert_int_equal(got, sizeof buf);
    assert_memory_equal(buf, p[0], got);
    /* When every candidate is being read, the oldest goes anyway (a put
     * does not fail for a slow reader); its reader then gets NOTFOUND,
     * never other bytes. */
    assert_int_equal(cd_store_reader_open(f->st, "m", &d[2], &r[1]), 0);
    assert_int_equal(cd_store_reader_open(f->st, "m", &d[3], &r[2]), 0);
    assert_int_equal(cd_store_blob_put(f->st, "m", &d[4], p[4], MIB), 0);
    assert_int_equal(cd_store_find_missing(f->st, "m", d, 5, m), 0);
    assert_true(m[0]);
    assert_false(m[2]);
    assert_false(m[3]);
    assert_false(m[4]);
    assert_int_equal(cd_reader_read(r[0], 4096, buf, sizeof buf, &got),
                     CAIRN_E_NOTFOUND);
    assert_int_equal(cd_reader_read(r[1], MIB - 10, buf, sizeof buf, &got), 0);
    assert_int_equal(got, 10);
    assert_memory_equal(buf, p[2] + MIB - 10, 10);
    for (int i = 0; i < 3; i++)
        cd_reader_close(r[i]);
    /* Re-uploading the evicted blob gives a fresh, readable copy. */
    assert_int_equal(cd_store_blob_put(f->st, "m", &d[0], p[0], MIB), 0);
    read_back(f->st, "m", &d[0], p[0], 100000);
    for (int i = 0; i < 5; i++)
        free(p[i]);
}

static void test_too_big(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    size_t n = 4 * MIB;
    uint8_t *p = make_blob(n, 50, &d);
    assert_int_equal(cd_store_blob_put(f->st, "m", &d, p, n), CAIRN_E_FULL);
    struct cd_upload *u = NULL;
    assert_int_equal(cd_store_upload_begin(f->st, "m", &d, &u), CAIRN_E_FULL);
    uint8_t *big = malloc(4 * MIB);
    assert_non_null(big);
    memset(big, 1, 4 * MIB);
    assert_int_equal(
        cd_store_ac_put(f->st, "m", &d, big, CD_STORE_MAX_AC_RESULT),
        CAIRN_E_FULL);
    assert_int_equal(
        cd_store_ac_put(f->st, "m", &d, big, CD_STORE_MAX_AC_RESULT + 1),
        CAIRN_E_TOOBIG);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.blobs, 0);
    assert_int_equal(s.chunks, 0);
    free(big);
    free(p);
}

static void test_ac(void **state)
{
    struct fixture *f = *state;
    struct cd_digest a;
    digest_of("action", 6, &a);
    void *got = NULL;
    size_t len = 0;
    assert_int_equal(cd_store_ac_get(f->st, "m", &a, &got, &len),
                     CAIRN_E_NOTFOUND);
    assert_int_equal(cd_store_ac_put(f->st, "m", &a, "result-1", 8), 0);
    assert_int_equal(cd_store_ac_get(f->st, "m", &a, &got, &len), 0);
    assert_int_equal(len, 8);
    assert_memory_equal(got, "result-1", 8);
    free(got);
    assert_int_equal(cd_store_ac_put(f->st, "m", &a, "second result", 13), 0);
    assert_int_equal(cd_store_ac_get(f->st, "m", &a, &got, &len), 0);
    assert_int_equal(len, 13);
    assert_memory_equal(got, "second result", 13);
    free(got);
    assert_int_equal(cd_store_ac_get(f->st, "other", &a, &got, &len),
                     CAIRN_E_NOTFOUND);
    /* An AC digest is not a CAS blob. */
    bool missing = false;
    assert_int_equal(cd_store_find_missing(f->st, "m", &a, 1, &missing), 0);
    assert_true(missing);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.ac_entries, 1);
    assert_int_equal(s.ac_bytes, 13);
    reopen(f);
    assert_int_equal(cd_store_ac_get(f->st, "m", &a, &got, &len), 0);
    assert_int_equal(len, 13);
    free(got);
}

static void test_ac_in_lru(void **state)
{
    struct fixture *f = *state;
    struct cd_digest a, d[3];
    digest_of("act", 3, &a);
    uint8_t *p[3];
    for (int i = 0; i < 3; i++)
        p[i] = make_blob(MIB + MIB / 8, 60 + (uint64_t)i, &d[i]);
    assert_int_equal(cd_store_ac_put(f->st, "m", &a, "r", 1), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            cd_store_blob_put(f->st, "m", &d[i], p[i], MIB + MIB / 8), 0);
    /* 3 * 1.125 MiB + 1 byte fits in 3.5 MiB; 1/8 MiB more does not,
     * and evicting the oldest entry, the 1-byte action result, is enough. */
    struct cd_digest e;
    uint8_t *q = make_blob(MIB / 8, 70, &e);
    assert_int_equal(cd_store_blob_put(f->st, "m", &e, q, MIB / 8), 0);
    void *got = NULL;
    size_t len = 0;
    assert_int_equal(cd_store_ac_get(f->st, "m", &a, &got, &len),
                     CAIRN_E_NOTFOUND);
    bool m[3];
    assert_int_equal(cd_store_find_missing(f->st, "m", d, 3, m), 0);
    assert_false(m[0]);
    assert_false(m[1]);
    assert_false(m[2]);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.blobs, 4);
    assert_int_equal(s.bytes, 3 * (MIB + MIB / 8) + MIB / 8);
    assert_int_equal(s.ac_entries, 0);
    assert_int_equal(s.ac_bytes, 0);
    for (int i = 0; i < 3; i++)
        free(p[i]);
    free(q);
}

static void test_reopen_keeps_stats(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d[3];
    uint8_t *p[3];
    size_t sizes[3] = {5, MIB, 2 * MIB + 1};
    for (int i = 0; i < 3; i++) {
        p[i] = make_blob(sizes[i], 80 + (uint64_t)i, &d[i]);
        assert_int_equal(cd_store_blob_put(f->st, "m", &d[i], p[i], sizes[i]),
                         0);
    }
    struct cd_digest a;
    digest_of("x", 1, &a);
    assert_int_equal(cd_store_ac_put(f->st, "m", &a, "abc", 3), 0);
    struct cd_store_stats before, after;
    cd_store_stats_get(f->st, &before);
    reopen(f);
    cd_store_stats_get(f->st, &after);
    assert_int_equal(after.blobs, 3);
    assert_int_equal(after.bytes, 5 + MIB + 2 * MIB + 1);
    assert_int_equal(after.blobs, before.blobs);
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(after.ac_entries, 1);
    assert_int_equal(after.chunks, before.chunks);
    for (int i = 0; i < 3; i++) {
        read_back(f->st, "m", &d[i], p[i], 300000);
        free(p[i]);
    }
}

/* --- concurrency ---------------------------------------------------------- */

struct conc {
    struct cd_store *st;
    struct cd_digest d[8];
    uint8_t *p[8];
    size_t n;
    int failures;
    pthread_mutex_t mu;
};

static void *conc_reader(void *arg)
{
    struct conc *c = arg;
    int bad = 0;
    for (int round = 0; round < 30; round++) {
        for (int i = 0; i < 4; i++) {
            void *got = NULL;
            if (cd_store_blob_get(c->st, "m", &c->d[i], c->n, &got) != 0 ||
                memcmp(got, c->p[i], c->n) != 0)
                bad++;
            free(got);
            struct cd_reader *r = NULL;
            uint8_t buf[8192];
            size_t n = 0;
            uint64_t off = (uint64_t)round * 7919 % c->n;
            if (cd_store_reader_open(c->st, "m", &c->d[i], &r) != 0 ||
                cd_reader_read(r, off, buf, sizeof buf, &n) != 0 ||
                memcmp(buf, c->p[i] + off, n) != 0)
                bad++;
            cd_reader_close(r);
            bool m[8];
            if (cd_store_find_missing(c->st, "m", c->d, 4, m) != 0 || m[0] ||
                m[3])
                bad++;
        }
    }
    pthread_mutex_lock(&c->mu);
    c->failures += bad;
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void test_concurrent_read_while_upload(void **state)
{
    struct fixture *f = *state;
    struct conc c = {.st = f->st, .n = MIB + 333};
    pthread_mutex_init(&c.mu, NULL);
    for (int i = 0; i < 8; i++)
        c.p[i] = make_blob(c.n, 90 + (uint64_t)i, &c.d[i]);
    for (int i = 0; i < 4; i++)
        assert_int_equal(cd_store_blob_put(f->st, "m", &c.d[i], c.p[i], c.n),
                         0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, conc_reader, &c), 0);
    for (int i = 4; i < 8; i++) {
        struct cd_upload *u = NULL;
        assert_int_equal(cd_store_upload_begin(f->st, "m", &c.d[i], &u), 0);
        for (size_t off = 0; off < c.n; off += 100000) {
            size_t k = c.n - off < 100000 ? c.n - off : 100000;
            assert_int_equal(cd_upload_write(u, c.p[i] + off, k), 0);
        }
        assert_int_equal(cd_upload_commit(u), 0);
        assert_int_equal(cd_store_maintain(f->st), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(c.failures, 0);
    for (int i = 0; i < 8; i++) {
        read_back(f->st, "m", &c.d[i], c.p[i], 1 << 16);
        free(c.p[i]);
    }
    pthread_mutex_destroy(&c.mu);
}

/* --- kill -9 durability ----------------------------------------------------
 */

#define CRASH_THREADS 4
#define CRASH_ROUNDS 4
#define CRASH_BATCH (2 * MIB)

/* Blob i of thread t: deterministic, so the parent can rebuild every blob
 * the child may have written. Sizes span 1 byte to 3 MiB. */
static size_t crash_size(int t, uint64_t i)
{
    uint64_t s = (uint64_t)t * 1000003 + i * 7 + 11;
    rng_next(&s);
    rng_next(&s);
    return (size_t)(rng_next(&s) % (3 * MIB)) + 1;
}

static uint64_t crash_seed(int round, int t, uint64_t i)
{
    return ((uint64_t)round << 40) | ((uint64_t)t << 32) | i;
}

struct crash_child {
    struct cd_store *st;
    int fd;
    int t;
    int round;
    pthread_mutex_t *mu;
};

/* What the child tells the parent: blob i of thread t is committed (ack),
 * or thread t has staged part of blob i and stopped before its commit
 * (parked). */
enum { CRASH_ACK, CRASH_PARKED };

struct crash_ack {
    uint32_t kind;
    uint32_t t;
    uint32_t i;
};

/* Thread 0 parks in the middle of its first streamed upload of more than
 * one batch (after it has acked something), so every kill finds at least
 * one upload staged but not committed, whatever the scheduler does. The
 * other threads keep writing and are killed wherever they happen to be. */
static bool crash_parks(int t, uint32_t i, size_t n)
{
    return t == 0 && i > 0 && i % 3 != 0 && n > CRASH_BATCH;
}

static void crash_send(struct crash_child *c, uint32_t kind, uint32_t i)
{
    struct crash_ack a = {kind, (uint32_t)c->t, i};
    pthread_mutex_lock(c->mu);
    ssize_t w = write(c->fd, &a, sizeof a);
    pthread_mutex_unlock(c->mu);
    if (w != (ssize_t)sizeof a)
        _exit(4);
}

static void *crash_writer(void *arg)
{
    struct crash_child *c = arg;
    bool parked = false;
    for (uint32_t i = 0;; i++) {
        size_t n = crash_size(c->t, i);
        struct cd_digest d;
        uint8_t *p = make_blob(n, crash_seed(c->round, c->t, i), &d);
        int rc;
        if (i % 3 == 0) {
            rc = cd_store_blob_put(c->st, "crash", &d, p, n);
        } else {
            struct cd_upload *u = NULL;
            rc = cd_store_upload_begin(c->st, "crash", &d, &u);
            for (size_t off = 0; rc == 0 && off < n; off += 300007) {
                size_t k = n - off < 300007 ? n - off : 300007;
                rc = cd_upload_write(u, p + off, k);
                if (rc == 0 && !parked && crash_parks(c->t, i, n) &&
                    off + k > CRASH_BATCH) {
                    /* A full batch is staged (its own committed txn). */
                    if (cd_upload_wait(u) != 0)
                        _exit(6);
                    parked = true;
                    crash_send(c, CRASH_PARKED, i);
                    for (;;)
                        pause(); /* until SIGKILL */
                }
            }
            rc = rc == 0 ? cd_upload_commit(u) : rc;
        }
        free(p);
        if (rc != 0)
            _exit(3);
        /* The ack: written only after the commit returned. */
        crash_send(c, CRASH_ACK, i);
    }
    return NULL;
}

static void crash_child_run(const char *dir, int fd, int round)
{
    /* Batches of two chunks: blobs over 2 MiB stage a multi-chunk txn
     * before their commit. */
    struct cd_store_opts o = {.dir = dir,
                              .max_size = 0,
                              .upload_ttl_s = 3600,
                              .stage_batch = CRASH_BATCH};
    struct cd_store *st = NULL;
    if (cd_store_open(&o, &st, NULL) != 0)
        _exit(2);
    pthread_mutex_t mu;
    pthread_mutex_init(&mu, NULL);
    struct crash_child c[CRASH_THREADS];
    pthread_t th[CRASH_THREADS];
    for (int t = 0; t < CRASH_THREADS; t++) {
        c[t] = (struct crash_child){st, fd, t, round, &mu};
        if (pthread_create(&th[t], NULL, crash_writer, &c[t]) != 0)
            _exit(5);
    }
    for (;;)
        pause(); /* until SIGKILL */
}

/* 1 when the blob is visible and verifies, 0 when absent; fails on a
 * visible blob with wrong content. */
static int crash_check(struct cd_store *st, int round, int t, uint64_t i,
                       uint64_t *chunks)
{
    size_t n = crash_size(t, i);
    struct cd_digest d;
    uint8_t *p = make_blob(n, crash_seed(round, t, i), &d);
    struct cd_reader *r = NULL;
    int rc = cd_store_reader_open(st, "crash", &d, &r);
    if (rc == CAIRN_E_NOTFOUND) {
        free(p);
        return 0;
    }
    assert_int_equal(rc, 0);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    size_t off = 0, got = 0;
    do {
        assert_int_equal(cd_reader_read(r, off, buf + off, n - off, &got), 0);
        off += got;
    } while (got != 0);
    assert_int_equal(off, n);
    uint8_t h[CK_SHA256_LEN];
    assert_int_equal(ck_sha256(buf, n, h), 0);
    assert_memory_equal(h, d.hash, CK_SHA256_LEN);
    cd_reader_close(r);
    free(buf);
    free(p);
    *chunks += (n + CD_STORE_CHUNK - 1) / CD_STORE_CHUNK;
    return 1;
}

/* Uploads the killed child left staged, read with LMDB directly (the store
 * removes them at open, so its own stats cannot show them). */
static uint64_t crash_pending_raw(const char *dir)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_stat ms = {0};
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    if (mdb_dbi_open(txn, "pending", 0, &dbi) == 0)
        assert_int_equal(mdb_stat(txn, dbi, &ms), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return ms.ms_entries;
}

static void test_kill9_durability(void **state)
{
    struct fixture *f = *state;
    /* The fixture's store is not used by the child: close it so the child
     * is the only writer, as a crashed cairnd would be. */
    cd_store_close(f->st);
    f->st = NULL;
    srand((unsigned)time(NULL));
    uint64_t total_acked = 0, leftovers = 0;
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        rm_store_dir(f->dir);
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child_run(f->dir, fds[1], round);
        }
        close(fds[1]);
        int64_t last[CRASH_THREADS];
        for (int t = 0; t < CRASH_THREADS; t++)
            last[t] = -1;
        /* Wait until thread 0 has parked an upload (so the kill always
         * leaves one staged upload behind; it parks after an ack, so the
         * child is in full swing), then let the others run a random while
         * longer. Acks read on the way are checked like the rest. */
        struct crash_ack a;
        bool parked = false, killed = false;
        while (read(fds[0], &a, sizeof a) == (ssize_t)sizeof a) {
            assert_true(a.t < CRASH_THREADS);
            if (a.kind == CRASH_PARKED) {
                assert_int_equal(a.t, 0);
                assert_int_equal((int64_t)a.i, last[0] + 1);
                parked = true;
            } else {
                assert_int_equal(a.kind, CRASH_ACK);
                assert_int_equal((int64_t)a.i, last[a.t] + 1); /* in order */
                last[a.t] = a.i;
                total_acked++;
            }
            if (parked && !killed) {
                struct timespec ts = {0, (50 + rand() % 600) * 1000000L};
                nanosleep(&ts, NULL);
                assert_int_equal(kill(pid, SIGKILL), 0);
                killed = true;
            }
        }
        close(fds[0]);
        int status = 0;
        if (!killed)
            (void)kill(pid, SIGKILL);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status)); /* not an early _exit */
        assert_true(parked);
        uint64_t left = crash_pending_raw(f->dir);
        assert_true(left >= 1); /* at least thread 0's parked upload */
        leftovers += left;
        store_open_ok(f);
        struct cd_store_stats s;
        cd_store_stats_get(f->st, &s);
        assert_int_equal(s.pending_uploads, 0);
        assert_int_equal(s.garbage, 0);
        uint64_t visible = 0, chunks = 0;
        for (int t = 0; t < CRASH_THREADS; t++) {
            for (int64_t i = 0; i <= last[t]; i++)
                assert_int_equal(
                    crash_check(f->st, round, t, (uint64_t)i, &chunks), 1);
            visible += (uint64_t)(last[t] + 1);
            /* Committed but killed before the ack: may or may not be
             * there; either way whole. Nothing beyond it can be. */
            visible += (uint64_t)crash_check(f->st, round, t,
                                             (uint64_t)(last[t] + 1), &chunks);
            assert_int_equal(
                crash_check(f->st, round, t, (uint64_t)(last[t] + 2), &chunks),
                0);
        }
        print_message("round %d: %llu blobs visible, %llu chunks, %llu "
                      "uploads left over\n",
                      round, (unsigned long long)visible,
                      (unsigned long long)chunks,
                      (unsigned long long)leftovers);
        /* No other blob and no stray chunk is visible. */
        assert_int_equal(s.blobs, visible);
        assert_int_equal(s.chunks, chunks);
        cd_store_close(f->st);
        f->st = NULL;
    }
    /* The test means nothing if the child never got anything done; every
     * round left at least the parked upload (checked above). */
    assert_true(total_acked > 0);
    assert_true(leftovers >= CRASH_ROUNDS);
    store_open_ok(f);
}

/* --- verification ------------------------------------------------------- */

/* Closes f's store, flips one byte in every copy of blob's middle 256
 * bytes in the LMDB file (bit rot), reopens. */
static void corrupt_blob(struct fixture *f, const uint8_t *blob, size_t n)
{
    cd_store_close(f->st);
    f->st = NULL;
    char path[128];
    snprintf(path, sizeof path, "%s/data.mdb", f->dir);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long len = ftell(fp);
    assert_true(len > 0);
    uint8_t *data = malloc((size_t)len);
    assert_non_null(data);
    rewind(fp);
    assert_int_equal(fread(data, 1, (size_t)len, fp), (size_t)len);
    const uint8_t *needle = blob + n / 2;
    size_t nl = n - n / 2 < 256 ? n - n / 2 : 256;
    int found = 0;
    for (size_t at = 0; at + nl <= (size_t)len; at++) {
        if (data[at] == needle[0] && memcmp(data + at, needle, nl) == 0) {
            data[at] ^= 0xff;
            found++;
        }
    }
    assert_true(found > 0);
    rewind(fp);
    assert_int_equal(fwrite(data, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    free(data);
    store_open_ok(f);
}

/* Reads the whole blob through a verifying reader from offset in 1 MiB
 * steps; returns the first non-zero code and the bytes handed out. */
static int read_verified(struct cd_store *st, const struct cd_digest *d,
                         uint64_t offset, uint64_t *handed, bool *armed)
{
    struct cd_reader *r = NULL;
    int rc = cd_store_reader_open(st, "i", d, &r);
    if (rc != 0)
        return rc;
    uint8_t *buf = malloc(MIB);
    assert_non_null(buf);
    rc = cd_reader_verify(r, offset);
    *armed = cd_reader_verifying(r);
    *handed = 0;
    while (rc == 0) {
        size_t got = 0;
        rc = cd_reader_read(r, offset, buf, MIB, &got);
        if (rc != 0 || got == 0)
            break;
        offset += got;
        *handed += got;
    }
    free(buf);
    cd_reader_close(r);
    return rc;
}

/* Blobs under 4 MiB are hashed by the reader as it copies, larger ones
 * by a hasher thread from the map while the reader copies. */
static void check_corrupt_read(struct fixture *f, size_t n)
{
    struct cd_digest d, other;
    uint8_t *blob = make_blob(n, 91, &d);
    uint8_t *ob = make_blob(5000, 92, &other);
    assert_int_equal(cd_store_blob_put(f->st, "i", &d, blob, n), 0);
    assert_int_equal(cd_store_blob_put(f->st, "i", &other, ob, 5000), 0);
    uint64_t handed = 0;
    bool armed = false;
    assert_int_equal(read_verified(f->st, &d, 0, &handed, &armed), 0);
    assert_true(armed);
    assert_int_equal(handed, n);

    corrupt_blob(f, blob, n);
    /* The read that would return the last bytes fails instead. */
    assert_int_equal(read_verified(f->st, &d, 0, &handed, &armed), CAIRN_E_CORRUPT);
    assert_true(armed);
    assert_int_equal(handed, (n - 1) / MIB * MIB);
    bool missing[2] = {false, true};
    struct cd_digest both[2] = {d, other};
    assert_int_equal(cd_store_find_missing(f->st, "i", both, 2, missing), 0);
    assert_true(missing[0]);
    assert_false(missing[1]);
    struct cd_store_stats ss;
    cd_store_stats_get(f->st, &ss);
    assert_int_equal(ss.quarantined, 1);
    assert_int_equal(ss.quarantined_bytes, n);
    assert_int_equal(ss.blobs, 1);
    assert_int_equal(ss.bytes, 5000);
    assert_int_equal(ss.garbage, 0);
    assert_int_equal(ss.chunks, 1); /* only the other blob's */
    /* An upload stores a good copy, which verifies. */
    assert_int_equal(cd_store_blob_put(f->st, "i", &d, blob, n), 0);
    assert_int_equal(read_verified(f->st, &d, 0, &handed, &armed), 0);
    assert_int_equal(handed, n);
    read_back(f->st, "i", &d, blob, 4096);
    free(blob);
    free(ob);
}

static void test_verify_corrupt_read_quarantines(void **state)
{
    check_corrupt_read(*state, 3 * MIB + 777);
}

static void test_verify_corrupt_read_async(void **state)
{
    check_corrupt_read(*state, 9 * MIB + 3);
}

/* A reader that goes away or skips ahead stops its hasher thread. */
static void test_verify_async_cancel(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    size_t n = 16 * MIB;
    uint8_t *blob = make_blob(n, 90, &d);
    assert_int_equal(cd_store_blob_put(f->st, "i", &d, blob, n), 0);
    uint8_t *buf = malloc(MIB);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) {
        struct cd_reader *r = NULL;
        size_t got = 0;
        assert_int_equal(cd_store_reader_open(f->st, "i", &d, &r), 0);
        assert_int_equal(cd_reader_verify(r, 0), 0);
        assert_true(cd_reader_verifying(r));
        assert_int_equal(cd_reader_read(r, 0, buf, MIB, &got), 0);
        if (i % 2 == 1) {
            assert_int_equal(cd_reader_read(r, 5 * MIB, buf, MIB, &got), 0);
            assert_false(cd_reader_verifying(r));
        }
        cd_reader_close(r);
    }
    /* Nothing was verified to the end: a new read is armed again. */
    uint64_t handed = 0;
    bool armed = false;
    assert_int_equal(read_verified(f->st, &d, 0, &handed, &armed), 0);
    assert_true(armed);
    assert_int_equal(handed, n);
    free(buf);
    free(blob);
}

static void test_verify_resumed_and_partial_reads(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    size_t n = 3 * MIB;
    uint8_t *blob = make_blob(n, 93, &d);
    assert_int_equal(cd_store_blob_put(f->st, "i", &d, blob, n), 0);
    corrupt_blob(f, blob, n);
    uint64_t handed = 0;
    bool armed = true;
    /* Beyond the prefix cap nothing is armed. */
    struct cd_reader *r = NULL;
    assert_int_equal(cd_store_reader_open(f->st, "i", &d, &r), 0);
    assert_int_equal(cd_reader_verify(r, CD_STORE_VERIFY_PREFIX_MAX + 1), 0);
    assert_false(cd_reader_verifying(r));
    /* A read that skips ahead stops the verification. */
    uint8_t buf[64];
    size_t got = 0;
    assert_int_equal(cd_reader_verify(r, 0), 0);
    assert_true(cd_reader_verifying(r));
    assert_int_equal(cd_reader_read(r, 100, buf, sizeof buf, &got), 0);
    assert_false(cd_reader_verifying(r));
    cd_reader_close(r);
    /* Resumed at 2 MiB + 5: the prefix (which holds the bad byte) is
     * hashed at arming time, the rest as it is read. */
    assert_int_equal(read_verified(f->st, &d, 2 * MIB + 5, &handed, &armed), CAIRN_E_CORRUPT);
    assert_true(armed);
    assert_int_equal(handed, 0);
    bool missing = false;
    assert_int_equal(cd_store_find_missing(f->st, "i", &d, 1, &missing), 0);
    assert_true(missing);
    free(blob);
}

static void test_verify_blob_get(void **state)
{
    struct fixture *f = *state;
    struct cd_digest a, b;
    uint8_t *ab = make_blob(10000, 94, &a), *bb = make_blob(20000, 95, &b);
    assert_int_equal(cd_store_blob_put(f->st, "i", &a, ab, 10000), 0);
    assert_int_equal(cd_store_blob_put(f->st, "i", &b, bb, 20000), 0);
    corrupt_blob(f, bb, 20000);
    void *data = NULL;
    assert_int_equal(cd_store_blob_get(f->st, "i", &b, MIB, &data), CAIRN_E_CORRUPT);
    assert_int_equal(cd_store_blob_get(f->st, "i", &b, MIB, &data), CAIRN_E_NOTFOUND);
    assert_int_equal(cd_store_blob_get(f->st, "i", &a, MIB, &data), 0);
    assert_memory_equal(data, ab, 10000);
    free(data);
    free(ab);
    free(bb);
}

/* verify_ttl_s: a blob verified by a read is not hashed again within it;
 * verify_off: never hashed, the bytes are served as stored. */
static void test_verify_ttl_and_off(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    size_t n = 2 * MIB;
    uint8_t *blob = make_blob(n, 96, &d);
    assert_int_equal(cd_store_blob_put(f->st, "i", &d, blob, n), 0);
    cd_store_close(f->st);
    f->st = NULL;
    f->opts.verify_ttl_s = 3600;
    store_open_ok(f);
    uint64_t handed = 0;
    bool armed = false;
    assert_int_equal(read_verified(f->st, &d, 0, &handed, &armed), 0);
    assert_true(armed);
    assert_int_equal(read_verified(f->st, &d, 0, &handed, &armed), 0);
    assert_false(armed);
    /* A blob uploaded through this store was hashed on its way in. */
    struct cd_digest e;
    uint8_t *eb = make_blob(MIB + 5, 89, &e);
    assert_int_equal(cd_store_blob_put(f->st, "i", &e, eb, MIB + 5), 0);
    assert_int_equal(read_verified(f->st, &e, 0, &handed, &armed), 0);
    assert_false(armed);
    free(eb);
    f->opts.verify_off = true;
    corrupt_blob(f, blob, n);
    assert_int_equal(read_verified(f->st, &d, 0, &handed, &armed), 0);
    assert_false(armed);
    assert_int_equal(handed, n);
    void *data = NULL;
    assert_int_equal(cd_store_blob_get(f->st, "i", &d, 4 * MIB, &data), 0);
    assert_memory_not_equal(data, blob, n);
    free(data);
    free(blob);
}

/* A chunk gone from the file (an operator's mistake, a torn restore): the
 * read that needs it fails with CAIRN_E_CORRUPT and the blob is
 * quarantined like one whose bytes do not hash. */
static void test_verify_missing_chunk(void **state)
{
    struct fixture *f = *state;
    struct cd_digest d;
    size_t n = 3 * MIB;
    uint8_t *blob = make_blob(n, 88, &d);
    assert_int_equal(cd_store_blob_put(f->st, "i", &d, blob, n), 0);
    cd_store_close(f->st);
    f->st = NULL;
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_open(env, f->dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "chunks", 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
    assert_int_equal(mdb_cursor_get(cur, &k, &v, MDB_NEXT), 0); /* chunk 1 */
    assert_int_equal(mdb_cursor_del(cur, 0), 0);
    mdb_cursor_close(cur);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    store_open_ok(f);
    uint64_t handed = 0;
    bool armed = false;
    assert_int_equal(read_verified(f->st, &d, 0, &handed, &armed), CAIRN_E_CORRUPT);
    assert_int_equal(handed, MIB);
    bool missing = false;
    assert_int_equal(cd_store_find_missing(f->st, "i", &d, 1, &missing), 0);
    assert_true(missing);
    struct cd_store_stats ss;
    cd_store_stats_get(f->st, &ss);
    assert_int_equal(ss.quarantined, 1);
    assert_int_equal(ss.chunks, 0);
    assert_int_equal(ss.blobs, 0);
    free(blob);
}

struct bad_list {
    int n;
    char instance[8];
    struct cd_digest d;
};

static void note_bad(void *ctx, const char *instance, const struct cd_digest *d)
{
    struct bad_list *b = ctx;
    b->n++;
    snprintf(b->instance, sizeof b->instance, "%s", instance);
    b->d = *d;
}

static void test_scrub(void **state)
{
    struct fixture *f = *state;
    struct cd_digest a, b, c;
    uint8_t *ab = make_blob(2 * MIB + 1, 97, &a), *bb = make_blob(30000, 98, &b);
    uint8_t *cb = make_blob(40000, 99, &c);
    assert_int_equal(cd_store_blob_put(f->st, "x", &a, ab, 2 * MIB + 1), 0);
    assert_int_equal(cd_store_blob_put(f->st, "yy", &b, bb, 30000), 0);
    assert_int_equal(cd_store_blob_put(f->st, "", &c, cb, 40000), 0);
    assert_int_equal(cd_store_ac_put(f->st, "x", &c, "result", 6), 0);
    corrupt_blob(f, bb, 30000);
    cd_store_close(f->st);
    f->st = NULL;
    f->opts.scrub = true;
    store_open_ok(f);
    struct bad_list bad = {0};
    struct cd_store_scrub_stats sum;
    assert_int_equal(cd_store_scrub(f->st, note_bad, &bad, &sum), 0);
    assert_int_equal(sum.blobs, 3);
    assert_int_equal(sum.bytes, 2 * MIB + 1 + 30000 + 40000);
    assert_int_equal(sum.bad, 1);
    assert_int_equal(sum.bad_bytes, 30000);
    assert_int_equal(bad.n, 1);
    assert_string_equal(bad.instance, "yy");
    assert_memory_equal(bad.d.hash, b.hash, CK_SHA256_LEN);
    assert_int_equal(bad.d.size, 30000);
    assert_int_equal(cd_store_scrub(f->st, NULL, NULL, &sum), 0);
    assert_int_equal(sum.blobs, 2);
    assert_int_equal(sum.bad, 0);
    bool missing = false;
    assert_int_equal(cd_store_find_missing(f->st, "yy", &b, 1, &missing), 0);
    assert_true(missing);
    read_back(f->st, "x", &a, ab, MIB);
    free(ab);
    free(bb);
    free(cb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test_setup_teardown(test_put_get_roundtrip, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mismatch_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_streaming_and_reader, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_batched_staging, setup_batch4,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_abort_while_staging, setup_ttl0,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exists_and_abort, setup_chunkwise,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_abandoned_upload_maintain,
                                        setup_ttl0, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_same_blob,
                                        setup_chunkwise,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_instances_separate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_empty_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_eviction, setup_small,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_reader_survives_or_notfound,
                                        setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_ac, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ac_in_lru, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_stats, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_read_while_upload,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_durability, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_corrupt_read_quarantines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_corrupt_read_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_async_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_resumed_and_partial_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_blob_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_missing_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_ttl_and_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scrub, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
