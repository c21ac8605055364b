#include "store_fixture.h"

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


/* cd_store_blob_put_many: one group commit for the batch, and each blob's
 * own result: a blob over max_size gets CAIRN_E_FULL and a wrong hash
 * CAIRN_E_DIGEST while the others around it are stored; a duplicate in
 * the same batch and a blob stored before are fine; all survive a
 * reopen. */
static void test_put_many_own_results(void **state)
{
    struct fixture *f = *state; /* setup_small: 3.5 MiB */
    enum { N = 7 };
    size_t sizes[N] = {1024, 4 * MIB, 1, 2048, 1024, 0, 300};
    struct cd_digest d[N];
    uint8_t *p[N];
    for (int i = 0; i < N; i++)
        p[i] = make_blob(sizes[i], 900 + (uint64_t)i, &d[i]);
    /* 4: the same blob as 0 (a duplicate inside the batch). */
    memcpy(p[4], p[0], sizes[0]);
    d[4] = d[0];
    /* 6: the digest of other bytes. */
    d[6].hash[0] ^= 1;
    /* 3: stored before the batch. */
    assert_int_equal(cd_store_blob_put(f->st, "m", &d[3], p[3], sizes[3]), 0);
    const void *data[N];
    int rcs[N];
    for (int i = 0; i < N; i++) {
        data[i] = p[i];
        rcs[i] = 99;
    }
    assert_int_equal(cd_store_blob_put_many(f->st, "m", N, d, data, rcs), 0);
    int want[N] = {0, CAIRN_E_FULL, 0, 0, 0, 0, CAIRN_E_DIGEST};
    for (int i = 0; i < N; i++)
        assert_int_equal(rcs[i], want[i]);
    reopen(f);
    bool missing[N];
    assert_int_equal(cd_store_find_missing(f->st, "m", d, N, missing), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(missing[i], want[i] != 0);
    for (int i = 0; i < N; i++)
        if (want[i] == 0 && sizes[i] > 0)
            read_back(f->st, "m", &d[i], p[i], 777);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.blobs, 3); /* 0 (= 4), 2, 3; 1 and 6 refused, 5 empty */
    for (int i = 0; i < N; i++)
        free(p[i]);
}

/* Many threads storing small blobs at once, through both paths (whole
 * blobs and uploads), so their publishes meet in shared group commits:
 * every blob acknowledged is stored whole after a reopen and the totals
 * add up. */
#define GROUP_THREADS 32
#define GROUP_BLOBS 40

struct group_writer {
    struct cd_store *st;
    int t;
    int bad;
};

static void *group_writer_main(void *arg)
{
    struct group_writer *w = arg;
    for (int i = 0; i < GROUP_BLOBS; i++) {
        struct cd_digest d;
        size_t n = 100 + (size_t)((w->t * 131 + i * 17) % 3000);
        uint8_t *p = malloc(n);
        fill(p, n, 5000 + (uint64_t)w->t * 1000 + (uint64_t)i);
        if (ck_sha256(p, n, d.hash) != 0)
            w->bad++;
        d.size = (int64_t)n;
        int rc;
        if (i % 2 == 0) {
            rc = cd_store_blob_put(w->st, "g", &d, p, n);
        } else {
            struct cd_upload *u = NULL;
            rc = cd_store_upload_begin(w->st, "g", &d, &u);
            if (rc == 0)
                rc = cd_upload_write(u, p, n);
            rc = rc == 0 ? cd_upload_commit(u) : rc;
        }
        w->bad += rc != 0;
        free(p);
    }
    return NULL;
}

static void test_group_concurrent_small(void **state)
{
    struct fixture *f = *state;
    struct group_writer w[GROUP_THREADS];
    pthread_t th[GROUP_THREADS];
    for (int t = 0; t < GROUP_THREADS; t++) {
        w[t] = (struct group_writer){f->st, t, 0};
        assert_int_equal(pthread_create(&th[t], NULL, group_writer_main, &w[t]), 0);
    }
    for (int t = 0; t < GROUP_THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(w[t].bad, 0);
    }
    reopen(f);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.blobs, GROUP_THREADS * GROUP_BLOBS);
    for (int t = 0; t < GROUP_THREADS; t++)
        for (int i = 0; i < GROUP_BLOBS; i++) {
            struct cd_digest d;
            size_t n = 100 + (size_t)((t * 131 + i * 17) % 3000);
            uint8_t *p = malloc(n);
            fill(p, n, 5000 + (uint64_t)t * 1000 + (uint64_t)i);
            digest_of(p, n, &d);
            read_back(f->st, "g", &d, p, 4096);
            free(p);
        }
}

/* Uploads publish in any order, not in the order they took their data
 * ids: a younger upload committed first leaves an older one whose chunk
 * keys sort below the last chunk (the publish appends to the chunk and
 * LRU tables, and falls back to a plain put for such a key). Every blob
 * reads back whole after a reopen, a staged one included. */
static void test_publish_out_of_id_order(void **state)
{
    struct fixture *f = *state; /* setup_chunkwise: 1 MiB stages */
    enum { N = 4 };
    size_t sizes[N] = {1024, 2 * MIB + 77, 3000, 1};
    struct cd_digest d[N];
    uint8_t *p[N];
    struct cd_upload *u[N];
    for (int i = 0; i < N; i++) {
        p[i] = make_blob(sizes[i], 1300 + (uint64_t)i, &d[i]);
        assert_int_equal(cd_store_upload_begin(f->st, "o", &d[i], &u[i]), 0);
        assert_int_equal(cd_upload_write(u[i], p[i], sizes[i]), 0);
    }
    /* Newest id first; then a whole-blob put, whose id is newer still,
     * before the oldest upload. */
    assert_int_equal(cd_upload_commit(u[3]), 0);
    assert_int_equal(cd_upload_commit(u[2]), 0);
    struct cd_digest dx;
    uint8_t *px = make_blob(2048, 1399, &dx);
    assert_int_equal(cd_store_blob_put(f->st, "o", &dx, px, 2048), 0);
    assert_int_equal(cd_upload_commit(u[1]), 0);
    assert_int_equal(cd_upload_commit(u[0]), 0);
    reopen(f);
    struct cd_store_stats s;
    cd_store_stats_get(f->st, &s);
    assert_int_equal(s.blobs, N + 1);
    for (int i = 0; i < N; i++) {
        read_back(f->st, "o", &d[i], p[i], 4096);
        free(p[i]);
    }
    read_back(f->st, "o", &dx, px, 4096);
    free(px);
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
        cmocka_unit_test_setup_teardown(test_put_many_own_results, setup_small,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_publish_out_of_id_order, setup_chunkwise,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_group_concurrent_small, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_read_while_upload,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
