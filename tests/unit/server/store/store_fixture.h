/* The store tests' shared fixture: a store in a fresh temp dir (setup*,
 * teardown), deterministic blobs and a read-back check. Used by
 * test_store.c (blobs, uploads, the action cache, eviction) and
 * test_store_integrity.c (kill -9 durability, verification, scrub). */
#ifndef CAIRN_TESTS_UNIT_SERVER_STORE_STORE_FIXTURE_H
#define CAIRN_TESTS_UNIT_SERVER_STORE_STORE_FIXTURE_H

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

static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static inline void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rng_next(&s) >> 32);
}

static inline void digest_of(const void *p, size_t n, struct cd_digest *d)
{
    assert_int_equal(ck_sha256(p, n, d->hash), 0);
    d->size = (int64_t)n;
}

/* A blob made from seed, with its digest; caller frees *data. */
static inline uint8_t *make_blob(size_t n, uint64_t seed, struct cd_digest *d)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    fill(p, n, seed);
    digest_of(p, n, d);
    return p;
}

static inline void store_open_ok(struct fixture *f)
{
    struct cairn_err err;
    cairn_err_clear(&err);
    int rc = cd_store_open(&f->opts, &f->st, &err);
    if (rc != 0)
        fail_msg("open: %s", err.msg);
}

static inline void rm_store_dir(const char *dir)
{
    char p[128];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/lock.mdb", dir);
    unlink(p);
    rmdir(dir);
}

static inline int setup_opts(void **state, uint64_t max_size, unsigned ttl,
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

static inline int setup_sized(void **state, uint64_t max_size, unsigned ttl)
{
    return setup_opts(state, max_size, ttl, 0);
}

static inline int setup(void **state)
{
    return setup_sized(state, 0, 3600);
}

/* Stages every chunk in its own txn: staged chunks show up in the stats
 * as soon as a chunk is full. */
static inline int setup_chunkwise(void **state)
{
    return setup_opts(state, 0, 3600, MIB);
}

static inline int setup_small(void **state)
{
    /* Room for about three 1 MiB blobs. */
    return setup_sized(state, 3 * MIB + MIB / 2, 3600);
}

static inline int setup_ttl0(void **state)
{
    return setup_opts(state, 0, 0, MIB);
}

static inline int setup_batch4(void **state)
{
    return setup_opts(state, 0, 3600, 4 * MIB + 123);
}

static inline int teardown(void **state)
{
    struct fixture *f = *state;
    cd_store_close(f->st);
    rm_store_dir(f->dir);
    free(f);
    return 0;
}

static inline void reopen(struct fixture *f)
{
    cd_store_close(f->st);
    f->st = NULL;
    store_open_ok(f);
}

/* Reads the whole blob through a reader in pieces of step bytes and
 * compares it with want. */
static inline void read_back(struct cd_store *st, const char *inst,
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

#endif
