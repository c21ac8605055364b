/* The store under crashes and bit rot: a writer killed with -9 leaves
 * every acknowledged blob whole; reads verify what they hand out,
 * quarantine what fails, and the scrub finds the rest. The blob, upload
 * and cache basics are test_store.c's. */
#include "store_fixture.h"

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

/* --- kill -9 durability of group commits ----------------------------------
 * Many writers of small blobs at once, so that their publishes share
 * group commits (one txn and one sync for many blobs): every blob whose
 * call returned before the kill is there afterwards and verifies. A
 * writer is told only after the shared sync; acknowledging any earlier
 * would lose the blobs of a batch cut short by the kill. */

#define SMALL_THREADS 64
#define SMALL_ACKS 2000 /* acks the parent waits for before killing */
#define SMALL_MANY 8    /* blobs per cd_store_blob_put_many */

static size_t small_size(int t, uint64_t i)
{
    uint64_t s = (uint64_t)t * 7919 + i * 104729 + 3;
    rng_next(&s);
    return (size_t)(rng_next(&s) % 4096) + 1;
}

static uint8_t *small_blob(int round, int t, uint64_t i, struct cd_digest *d)
{
    return make_blob(small_size(t, i), ((uint64_t)round << 48) | ((uint64_t)t << 32) | i, d);
}

/* Thread t stores its blobs 0, 1, 2, ... in steps: i % 3 == 0 alone with
 * cd_store_blob_put, 1 as an upload, 2 and the SMALL_MANY - 1 after it in
 * one cd_store_blob_put_many; each step is acked (its last index) once
 * its call returned. */
static void *small_writer(void *arg)
{
    struct crash_child *c = arg;
    for (uint32_t i = 0;;) {
        struct cd_digest d[SMALL_MANY];
        uint8_t *p[SMALL_MANY];
        const void *data[SMALL_MANY];
        int rcs[SMALL_MANY];
        uint32_t n = i % 3 == 2 ? SMALL_MANY : 1;
        for (uint32_t k = 0; k < n; k++) {
            p[k] = small_blob(c->round, c->t, i + k, &d[k]);
            data[k] = p[k];
            rcs[k] = 0;
        }
        int rc;
        if (n > 1) {
            rc = cd_store_blob_put_many(c->st, "small", n, d, data, rcs);
            for (uint32_t k = 0; k < n && rc == 0; k++)
                rc = rcs[k];
        } else if (i % 3 == 0) {
            rc = cd_store_blob_put(c->st, "small", &d[0], p[0], (size_t)d[0].size);
        } else {
            struct cd_upload *u = NULL;
            rc = cd_store_upload_begin(c->st, "small", &d[0], &u);
            if (rc == 0)
                rc = cd_upload_write(u, p[0], (size_t)d[0].size);
            rc = rc == 0 ? cd_upload_commit(u) : rc;
        }
        for (uint32_t k = 0; k < n; k++)
            free(p[k]);
        if (rc != 0)
            _exit(3);
        i += n;
        crash_send(c, CRASH_ACK, i - 1);
    }
    return NULL;
}

static void small_child_run(const char *dir, int fd, int round)
{
    struct cd_store_opts o = {.dir = dir, .max_size = 0, .upload_ttl_s = 3600};
    struct cd_store *st = NULL;
    if (cd_store_open(&o, &st, NULL) != 0)
        _exit(2);
    pthread_mutex_t mu;
    pthread_mutex_init(&mu, NULL);
    static struct crash_child c[SMALL_THREADS];
    pthread_t th;
    for (int t = 0; t < SMALL_THREADS; t++) {
        c[t] = (struct crash_child){st, fd, t, round, &mu};
        if (pthread_create(&th, NULL, small_writer, &c[t]) != 0)
            _exit(5);
    }
    for (;;)
        pause(); /* until SIGKILL */
}

/* 1 when blob i of thread t is stored and verifies, 0 when absent. */
static int small_check(struct cd_store *st, int round, int t, uint64_t i)
{
    struct cd_digest d;
    uint8_t *p = small_blob(round, t, i, &d);
    void *got = NULL;
    int rc = cd_store_blob_get(st, "small", &d, 1u << 20, &got);
    free(p);
    if (rc == CAIRN_E_NOTFOUND)
        return 0;
    /* cd_store_blob_get hashes what it read: the blob is whole. */
    assert_int_equal(rc, 0);
    free(got);
    return 1;
}

static void test_kill9_group_commit(void **state)
{
    struct fixture *f = *state;
    cd_store_close(f->st);
    f->st = NULL;
    srand((unsigned)time(NULL) ^ 0x5a5a);
    for (int round = 0; round < 2; round++) {
        rm_store_dir(f->dir);
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            small_child_run(f->dir, fds[1], round);
        }
        close(fds[1]);
        int64_t last[SMALL_THREADS];
        for (int t = 0; t < SMALL_THREADS; t++)
            last[t] = -1;
        struct crash_ack a;
        unsigned acks = 0;
        bool killed = false;
        while (read(fds[0], &a, sizeof a) == (ssize_t)sizeof a) {
            assert_int_equal(a.kind, CRASH_ACK);
            assert_true(a.t < SMALL_THREADS);
            assert_true((int64_t)a.i > last[a.t]); /* in order */
            last[a.t] = a.i;
            if (++acks == SMALL_ACKS && !killed) {
                /* Killed in full swing, wherever the commits are. */
                struct timespec ts = {0, (rand() % 20) * 1000000L};
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
        assert_true(killed);
        store_open_ok(f);
        struct cd_store_stats s;
        cd_store_stats_get(f->st, &s);
        uint64_t visible = 0, acked = 0;
        for (int t = 0; t < SMALL_THREADS; t++) {
            for (int64_t i = 0; i <= last[t]; i++)
                assert_int_equal(small_check(f->st, round, t, (uint64_t)i), 1);
            acked += (uint64_t)(last[t] + 1);
            /* The step in flight at the kill may be there or not (whole
             * either way); nothing after it can be. */
            uint64_t i = (uint64_t)(last[t] + 1);
            for (; i < (uint64_t)(last[t] + 1 + SMALL_MANY); i++)
                visible += (uint64_t)small_check(f->st, round, t, i);
            assert_int_equal(small_check(f->st, round, t, i + SMALL_MANY), 0);
        }
        visible += acked;
        print_message("round %d: %llu blobs acked, %llu visible\n", round,
                      (unsigned long long)acked, (unsigned long long)visible);
        assert_true(acked >= SMALL_ACKS);
        assert_int_equal(s.blobs, visible); /* nothing else is there */
        cd_store_close(f->st);
        f->st = NULL;
    }
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
        cmocka_unit_test_setup_teardown(test_kill9_durability, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_group_commit, setup, teardown),
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
