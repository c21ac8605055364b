#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cachekey/statcache.h"
#include "common/error.h"

struct fixture {
    char dir[64];
    MDB_env *env;
};

static int env_open(struct fixture *f)
{
    if (mdb_env_create(&f->env) != 0)
        return -1;
    mdb_env_set_maxdbs(f->env, 4);
    mdb_env_set_mapsize(f->env, 64u << 20);
    return mdb_env_open(f->env, f->dir, MDB_NOTLS, 0600) == 0 ? 0 : -1;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/cairn-sc-XXXXXX");
    if (mkdtemp(f->dir) == NULL || env_open(f) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    mdb_env_close(f->env);
    char p[128];
    snprintf(p, sizeof p, "%s/data.mdb", f->dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/lock.mdb", f->dir);
    unlink(p);
    rmdir(f->dir);
    free(f);
    return 0;
}

static struct stat fake_stat(void)
{
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_dev = 7;
    st.st_ino = 1234;
    st.st_size = 99;
    st.st_mtim.tv_sec = 1700000000;
    st.st_mtim.tv_nsec = 5;
    st.st_ctim.tv_sec = 1700000001;
    st.st_ctim.tv_nsec = 6;
    st.st_uid = 1;
    return st;
}

static void test_put_flush_lookup(void **state)
{
    struct fixture *f = *state;
    struct ck_statcache *sc = NULL;
    struct cairn_err err;
    assert_int_equal(ck_statcache_open(f->env, &sc, &err), 0);
    struct stat st = fake_stat();
    uint8_t d[CK_SHA256_LEN], got[CK_SHA256_LEN];
    memset(d, 0xab, sizeof d);
    assert_false(ck_statcache_lookup(sc, "/ctx/a", &st, got));
    assert_int_equal(ck_statcache_put(sc, "/ctx/a", &st, d), 0);
    /* Queued entries are seen before any flush (a later COPY of the same
     * files in a build hits while its entries wait for a commit). */
    assert_true(ck_statcache_lookup(sc, "/ctx/a", &st, got));
    assert_memory_equal(got, d, sizeof d);
    assert_int_equal(ck_statcache_flush(sc, &err), 0);
    memset(got, 0, sizeof got);
    assert_true(ck_statcache_lookup(sc, "/ctx/a", &st, got));
    assert_memory_equal(got, d, sizeof d);
    assert_false(ck_statcache_lookup(sc, "/ctx/b", &st, got));

    /* Every compared field invalidates; uid does not take part. */
    struct stat s2 = st;
    s2.st_uid = 42;
    assert_true(ck_statcache_lookup(sc, "/ctx/a", &s2, got));
    s2 = st;
    s2.st_dev++;
    assert_false(ck_statcache_lookup(sc, "/ctx/a", &s2, got));
    s2 = st;
    s2.st_ino++;
    assert_false(ck_statcache_lookup(sc, "/ctx/a", &s2, got));
    s2 = st;
    s2.st_size++;
    assert_false(ck_statcache_lookup(sc, "/ctx/a", &s2, got));
    s2 = st;
    s2.st_mtim.tv_nsec++;
    assert_false(ck_statcache_lookup(sc, "/ctx/a", &s2, got));
    s2 = st;
    s2.st_ctim.tv_nsec++;
    assert_false(ck_statcache_lookup(sc, "/ctx/a", &s2, got));
    ck_statcache_close(sc);
    ck_statcache_close(NULL);
}

static void test_close_flushes_and_persists(void **state)
{
    struct fixture *f = *state;
    struct ck_statcache *sc = NULL;
    assert_int_equal(ck_statcache_open(f->env, &sc, NULL), 0);
    struct stat st = fake_stat();
    uint8_t d[CK_SHA256_LEN], got[CK_SHA256_LEN];
    memset(d, 0x11, sizeof d);
    assert_int_equal(ck_statcache_put(sc, "/ctx/persist", &st, d), 0);
    ck_statcache_close(sc);

    /* A new environment (as in the next build) sees the entry. */
    mdb_env_close(f->env);
    assert_int_equal(env_open(f), 0);
    assert_int_equal(ck_statcache_open(f->env, &sc, NULL), 0);
    assert_true(ck_statcache_lookup(sc, "/ctx/persist", &st, got));
    assert_memory_equal(got, d, sizeof d);
    /* Overwrite with a new stat: the old stat no longer hits. */
    struct stat s2 = st;
    s2.st_size = 100;
    memset(d, 0x22, sizeof d);
    assert_int_equal(ck_statcache_put(sc, "/ctx/persist", &s2, d), 0);
    assert_int_equal(ck_statcache_flush(sc, NULL), 0);
    assert_false(ck_statcache_lookup(sc, "/ctx/persist", &st, got));
    assert_true(ck_statcache_lookup(sc, "/ctx/persist", &s2, got));
    assert_memory_equal(got, d, sizeof d);
    ck_statcache_close(sc);
}

static size_t last_txnid(MDB_env *env)
{
    MDB_envinfo info;
    assert_int_equal(mdb_env_info(env, &info), 0);
    return info.me_last_txnid;
}

/* A fresh store has no statcache database: opening must commit nothing
 * (that commit was a disk flush of its own), lookups miss, and the first
 * flush creates the database with the entries in one commit. Existing
 * databases are opened without a commit too. */
static void test_fresh_store_creates_in_first_flush(void **state)
{
    struct fixture *f = *state;
    struct ck_statcache *sc = NULL;
    struct cairn_err err;
    size_t t0 = last_txnid(f->env);
    assert_int_equal(ck_statcache_open(f->env, &sc, &err), 0);
    assert_int_equal(last_txnid(f->env), t0);

    struct stat st = fake_stat();
    uint8_t d[CK_SHA256_LEN], got[CK_SHA256_LEN];
    memset(d, 0x5a, sizeof d);
    assert_false(ck_statcache_lookup(sc, "/ctx/new", &st, got));
    assert_false(ck_statcache_dir_lookup(sc, "/ctx", &st, got, sizeof got,
                                         &(size_t){0}));
    /* Nothing queued: a flush writes nothing and creates nothing. */
    assert_int_equal(ck_statcache_flush(sc, &err), 0);
    assert_int_equal(last_txnid(f->env), t0);

    assert_int_equal(ck_statcache_put(sc, "/ctx/new", &st, d), 0);
    assert_int_equal(ck_statcache_flush(sc, &err), 0);
    assert_int_equal(last_txnid(f->env), t0 + 1);
    memset(got, 0, sizeof got);
    assert_true(ck_statcache_lookup(sc, "/ctx/new", &st, got));
    assert_memory_equal(got, d, sizeof d);
    ck_statcache_close(sc);

    /* The next build opens the database it made, again without a commit,
     * and sees the entry. */
    mdb_env_close(f->env);
    assert_int_equal(env_open(f), 0);
    t0 = last_txnid(f->env);
    assert_int_equal(ck_statcache_open(f->env, &sc, NULL), 0);
    assert_int_equal(last_txnid(f->env), t0);
    assert_true(ck_statcache_lookup(sc, "/ctx/new", &st, got));
    assert_memory_equal(got, d, sizeof d);
    ck_statcache_close(sc);
}

static void test_oversized_key_never_cached(void **state)
{
    struct fixture *f = *state;
    struct ck_statcache *sc = NULL;
    assert_int_equal(ck_statcache_open(f->env, &sc, NULL), 0);
    size_t n = (size_t)mdb_env_get_maxkeysize(f->env) + 10;
    char *path = malloc(n + 1);
    memset(path, 'x', n);
    path[0] = '/';
    path[n] = '\0';
    struct stat st = fake_stat();
    uint8_t d[CK_SHA256_LEN] = {1}, got[CK_SHA256_LEN];
    assert_int_equal(ck_statcache_put(sc, path, &st, d), 0);
    assert_int_equal(ck_statcache_flush(sc, NULL), 0);
    assert_false(ck_statcache_lookup(sc, path, &st, got));
    free(path);
    ck_statcache_close(sc);
}

static void test_dir_listing(void **state)
{
    struct fixture *f = *state;
    struct ck_statcache *sc = NULL;
    assert_int_equal(ck_statcache_open(f->env, &sc, NULL), 0);
    struct stat st = fake_stat();
    static const char list[] = "\x08a.c\0\x04sub\0";
    char buf[64];
    size_t len = 12345;
    assert_false(ck_statcache_dir_lookup(sc, "/ctx/d", &st, buf, sizeof buf,
                                         &len));
    assert_int_equal(len, 12345); /* untouched on a miss */
    assert_int_equal(ck_statcache_dir_put(sc, "/ctx/d", &st, list,
                                          sizeof list - 1), 0);
    assert_int_equal(ck_statcache_flush(sc, NULL), 0);
    assert_true(ck_statcache_dir_lookup(sc, "/ctx/d", &st, buf, sizeof buf,
                                        &len));
    assert_int_equal(len, sizeof list - 1);
    assert_memory_equal(buf, list, len);
    /* Too small a buffer is a miss, not a truncated listing. */
    assert_false(ck_statcache_dir_lookup(sc, "/ctx/d", &st, buf, 4, &len));

    /* Any stat change is a miss. */
    struct stat s2 = st;
    s2.st_mtim.tv_nsec++;
    assert_false(ck_statcache_dir_lookup(sc, "/ctx/d", &s2, buf, sizeof buf,
                                         &len));
    s2 = st;
    s2.st_ino++;
    assert_false(ck_statcache_dir_lookup(sc, "/ctx/d", &s2, buf, sizeof buf,
                                         &len));

    /* Files and directories share paths but never answer for each other,
     * even when the sizes happen to line up. */
    uint8_t d[CK_SHA256_LEN], got[CK_SHA256_LEN];
    memset(d, 0x5a, sizeof d);
    assert_false(ck_statcache_lookup(sc, "/ctx/d", &st, got));
    assert_int_equal(ck_statcache_dir_put(sc, "/ctx/e", &st, d, sizeof d), 0);
    assert_int_equal(ck_statcache_put(sc, "/ctx/f", &st, d), 0);
    assert_int_equal(ck_statcache_flush(sc, NULL), 0);
    assert_false(ck_statcache_lookup(sc, "/ctx/e", &st, got));
    assert_false(ck_statcache_dir_lookup(sc, "/ctx/f", &st, buf, sizeof buf,
                                         &len));
    assert_true(ck_statcache_lookup(sc, "/ctx/f", &st, got));

    /* Listings over the cap are not kept. */
    char *big = calloc(1, CK_STATCACHE_DIR_MAX + 1);
    assert_non_null(big);
    assert_int_equal(ck_statcache_dir_put(sc, "/ctx/big", &st, big,
                                          CK_STATCACHE_DIR_MAX + 1), 0);
    assert_int_equal(ck_statcache_flush(sc, NULL), 0);
    assert_false(ck_statcache_dir_lookup(sc, "/ctx/big", &st, big,
                                         CK_STATCACHE_DIR_MAX + 1, &len));
    free(big);
    ck_statcache_close(sc);
}

struct thr {
    struct ck_statcache *sc;
    int id;
    int hits;
};

static void *lookup_thread(void *p)
{
    struct thr *t = p;
    struct stat st = fake_stat();
    char path[64];
    uint8_t got[CK_SHA256_LEN];
    for (int i = 0; i < 2000; i++) {
        snprintf(path, sizeof path, "/ctx/f%d", i % 100);
        if (ck_statcache_lookup(t->sc, path, &st, got) &&
            got[0] == (uint8_t)(i % 100))
            t->hits++;
        snprintf(path, sizeof path, "/ctx/t%d/%d", t->id, i);
        uint8_t d[CK_SHA256_LEN] = {(uint8_t)i};
        ck_statcache_put(t->sc, path, &st, d);
    }
    return NULL;
}

static void test_concurrent_lookups_and_puts(void **state)
{
    struct fixture *f = *state;
    struct ck_statcache *sc = NULL;
    assert_int_equal(ck_statcache_open(f->env, &sc, NULL), 0);
    struct stat st = fake_stat();
    for (int i = 0; i < 100; i++) {
        char path[32];
        snprintf(path, sizeof path, "/ctx/f%d", i);
        uint8_t d[CK_SHA256_LEN] = {(uint8_t)i};
        assert_int_equal(ck_statcache_put(sc, path, &st, d), 0);
    }
    assert_int_equal(ck_statcache_flush(sc, NULL), 0);
    pthread_t tid[4];
    struct thr t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (struct thr){.sc = sc, .id = i};
        assert_int_equal(pthread_create(&tid[i], NULL, lookup_thread, &t[i]),
                         0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        assert_int_equal(t[i].hits, 2000);
    }
    assert_int_equal(ck_statcache_flush(sc, NULL), 0);
    uint8_t got[CK_SHA256_LEN];
    assert_true(ck_statcache_lookup(sc, "/ctx/t3/1999", &st, got));
    assert_int_equal(got[0], (uint8_t)1999);
    ck_statcache_close(sc);
}

/* Deferred: a flush commits nothing (the entries are seen from the
 * queue), the owner's write transaction carries them, an aborted one
 * leaves them queued, and close writes what is left. */
static void test_deferred_ride_owner_txn(void **state)
{
    struct fixture *f = *state;
    struct ck_statcache *sc = NULL, *other = NULL;
    struct cairn_err err;
    assert_int_equal(ck_statcache_open(f->env, &sc, &err), 0);
    ck_statcache_set_defer(sc, true);
    struct stat st = fake_stat();
    uint8_t d[CK_SHA256_LEN], got[CK_SHA256_LEN];
    memset(d, 0x31, sizeof d);
    size_t t0 = last_txnid(f->env);
    assert_int_equal(ck_statcache_put(sc, "/ctx/a", &st, d), 0);
    d[0] = 0x32; /* queued twice: the newest value wins */
    assert_int_equal(ck_statcache_put(sc, "/ctx/a", &st, d), 0);
    assert_int_equal(ck_statcache_flush(sc, &err), 0);
    assert_int_equal(last_txnid(f->env), t0);
    assert_true(ck_statcache_lookup(sc, "/ctx/a", &st, got));
    assert_int_equal(got[0], 0x32);

    /* An aborted transaction of the owner leaves them queued. */
    MDB_txn *txn = NULL;
    uint64_t upto = 0;
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
    assert_int_equal(ck_statcache_txn_put(sc, txn, &upto), 0);
    mdb_txn_abort(txn);
    assert_int_equal(last_txnid(f->env), t0);
    assert_true(ck_statcache_lookup(sc, "/ctx/a", &st, got));

    /* A committed one records them: another cache opened now sees them. */
    assert_int_equal(mdb_txn_begin(f->env, NULL, 0, &txn), 0);
    assert_int_equal(ck_statcache_txn_put(sc, txn, &upto), 0);
    /* Queued after the put: waits for the next transaction. */
    d[0] = 0x33;
    assert_int_equal(ck_statcache_put(sc, "/ctx/b", &st, d), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    ck_statcache_txn_done(sc, upto);
    assert_int_equal(last_txnid(f->env), t0 + 1);
    assert_int_equal(ck_statcache_open(f->env, &other, &err), 0);
    memset(got, 0, sizeof got);
    assert_true(ck_statcache_lookup(other, "/ctx/a", &st, got));
    assert_int_equal(got[0], 0x32);
    assert_false(ck_statcache_lookup(other, "/ctx/b", &st, got));
    ck_statcache_close(other);
    /* Ours still sees both: /ctx/a from the database, /ctx/b queued. */
    assert_true(ck_statcache_lookup(sc, "/ctx/a", &st, got));
    assert_int_equal(got[0], 0x32);
    assert_true(ck_statcache_lookup(sc, "/ctx/b", &st, got));
    assert_int_equal(got[0], 0x33);
    /* A second done with the same token drops nothing more. */
    ck_statcache_txn_done(sc, upto);
    assert_true(ck_statcache_lookup(sc, "/ctx/b", &st, got));

    /* Close writes /ctx/b in a commit of its own. */
    ck_statcache_close(sc);
    assert_int_equal(last_txnid(f->env), t0 + 2);
    assert_int_equal(ck_statcache_open(f->env, &other, &err), 0);
    assert_true(ck_statcache_lookup(other, "/ctx/b", &st, got));
    assert_int_equal(got[0], 0x33);
    ck_statcache_close(other);
}

/* Deferred, yet a queue past its cap is flushed so that it stays
 * bounded; lookups of many queued keys all hit (the table grows). */
static void test_deferred_cap_flushes(void **state)
{
    struct fixture *f = *state;
    struct ck_statcache *sc = NULL;
    assert_int_equal(ck_statcache_open(f->env, &sc, NULL), 0);
    ck_statcache_set_defer(sc, true);
    struct stat st = fake_stat();
    size_t t0 = last_txnid(f->env);
    char path[64];
    static char list[CK_STATCACHE_DIR_MAX];
    enum { N = 300 }; /* 300 * 64 KiB: past the 16 MiB cap */
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "/ctx/dir%d", i);
        list[0] = (char)i;
        assert_int_equal(ck_statcache_dir_put(sc, path, &st, list, sizeof list),
                         0);
    }
    static char got[CK_STATCACHE_DIR_MAX];
    size_t len = 0;
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "/ctx/dir%d", i);
        assert_true(ck_statcache_dir_lookup(sc, path, &st, got, sizeof got,
                                            &len));
        assert_int_equal(got[0], (char)i);
    }
    assert_int_equal(ck_statcache_flush(sc, NULL), 0);
    assert_int_equal(last_txnid(f->env), t0 + 1);
    assert_true(ck_statcache_dir_lookup(sc, "/ctx/dir7", &st, got, sizeof got,
                                        &len));
    ck_statcache_close(sc);
    assert_int_equal(last_txnid(f->env), t0 + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_flush_lookup, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_flushes_and_persists,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_key_never_cached,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_lookups_and_puts,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_fresh_store_creates_in_first_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_ride_owner_txn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deferred_cap_flushes, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
