/* The group-commit queue (server/store/group.h) on its own, with a run
 * function that records what it was given: order, batching, each item's
 * own result, a failed batch reaching every one of its waiters, and the
 * asynchronous completions. The store's use of it (one LMDB txn per
 * batch) is tested in test_store.c and test_store_integrity.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/error.h"
#include "server/store/group.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WRITERS 16
#define PER_WRITER 200

struct item {
    struct cd_group_item g; /* first: the run function casts */
    int writer;
    int seq;
    int fail_with; /* the run function gives the item this result */
    int batch;     /* which batch applied it */
    atomic_bool done;
};

struct recorder {
    pthread_mutex_t mu;
    int batches;
    size_t max_batch;
    /* Per writer, the last seq applied: must grow by one each time. */
    int last[WRITERS];
    bool out_of_order;
    int fail_batch; /* this batch number fails as a whole (0: none) */
    useconds_t delay; /* per batch, so that writers pile up */
    bool bad; /* something the committer thread saw was wrong (cmocka's
               * asserts belong to the test's own thread) */
    /* With sync_record: the last batch made durable (by a later run that
     * returned 0, or a sync), syncs made, and which one fails. */
    int durable;
    int syncs;
    int fail_sync;
    bool self_sync; /* no sync function: run makes its own batch durable */
};

static int run_record(void *ctx, struct cd_group_item *batch)
{
    struct recorder *r = ctx;
    pthread_mutex_lock(&r->mu);
    int b = ++r->batches;
    size_t n = 0;
    for (struct cd_group_item *g = batch; g != NULL; g = g->next, n++) {
        struct item *it = (struct item *)g;
        if (g->rc != 0 || atomic_load(&it->done)) /* the queue clears rc */
            r->bad = true;
        if (it->seq != r->last[it->writer] + 1)
            r->out_of_order = true;
        r->last[it->writer] = it->seq;
        it->batch = b;
        g->rc = it->fail_with;
    }
    if (n > r->max_batch)
        r->max_batch = n;
    int fail = r->fail_batch == b ? CAIRN_E_DB : 0;
    if (fail == 0) /* a run that works covers earlier batches */
        r->durable = r->self_sync ? b : b - 1;
    pthread_mutex_unlock(&r->mu);
    if (r->delay)
        usleep(r->delay);
    return fail;
}

static int sync_record(void *ctx)
{
    struct recorder *r = ctx;
    pthread_mutex_lock(&r->mu);
    r->durable = r->batches;
    int fail = ++r->syncs == r->fail_sync ? CAIRN_E_DB : 0;
    pthread_mutex_unlock(&r->mu);
    return fail;
}

/* Whether item's batch was durable when the item was answered. */
static bool answered_durable(struct recorder *r, const struct item *it)
{
    pthread_mutex_lock(&r->mu);
    bool ok = it->batch <= r->durable;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static struct recorder *recorder_new(void)
{
    struct recorder *r = calloc(1, sizeof *r);
    assert_non_null(r);
    pthread_mutex_init(&r->mu, NULL);
    for (int i = 0; i < WRITERS; i++)
        r->last[i] = -1;
    return r;
}

static void recorder_free(struct recorder *r)
{
    pthread_mutex_destroy(&r->mu);
    free(r);
}

struct writer {
    struct cd_group *g;
    struct recorder *r;
    int id;
    bool bad;
    struct item items[PER_WRITER];
};

/* Each writer puts its items one at a time, waiting for each, like the
 * store's uploads do; item 7 of each writer fails on its own. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < PER_WRITER; i++) {
        struct item *it = &w->items[i];
        it->writer = w->id;
        it->seq = i;
        it->fail_with = i == 7 ? CAIRN_E_FULL : 0;
        struct cd_group_item *p = &it->g;
        if (cd_group_put(w->g, &p, 1) != 0 || it->batch == 0 ||
            it->g.rc != (i == 7 ? CAIRN_E_FULL : 0) || !answered_durable(w->r, it))
            w->bad = true;
        atomic_store(&it->done, true);
    }
    return NULL;
}

/* Many writers at once: every item applied once, each writer's in its
 * order, items batched together, and the one failing item's error goes
 * to that item only. */
static void group_order_and_own_errors(bool with_sync)
{
    struct recorder *r = recorder_new();
    r->delay = 2000;
    r->self_sync = !with_sync;
    struct cd_group *g = NULL;
    assert_int_equal(cd_group_open(run_record, with_sync ? sync_record : NULL, r, 4096,
                                   UINT64_MAX, &g), 0);
    struct writer *w = calloc(WRITERS, sizeof *w);
    assert_non_null(w);
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i].g = g;
        w[i].r = r;
        w[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    cd_group_close(g);
    assert_false(r->out_of_order);
    assert_false(r->bad);
    for (int i = 0; i < WRITERS; i++) {
        assert_false(w[i].bad);
        assert_int_equal(r->last[i], PER_WRITER - 1);
    }
    /* The writers piled up behind the slow batches: groups formed. */
    assert_true(r->max_batch > 1);
    assert_true(r->batches < WRITERS * PER_WRITER);
    /* With a sync function, writers that kept coming were answered after
     * the next batch's run: fewer syncs than batches. (Every answer came
     * after its batch was durable: answered_durable above.) */
    if (with_sync)
        assert_true(r->syncs < r->batches);
    recorder_free(r);
    free(w);
}

static void test_group_order_and_own_errors(void **state)
{
    (void)state;
    group_order_and_own_errors(false);
}

/* The same with a sync function: no item is answered before its batch is
 * durable, and syncs are saved. */
static void test_group_sync_shared(void **state)
{
    (void)state;
    group_order_and_own_errors(true);
}

/* A sync that fails reaches every item of the batch it was to make
 * durable, and only those; a failed run answers its own batch with the
 * error and the held batch after a sync of its own. */
static void test_group_sync_errors(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    r->fail_sync = 1;
    r->fail_batch = 3;
    struct cd_group *g = NULL;
    assert_int_equal(cd_group_open(run_record, sync_record, r, 4096, UINT64_MAX, &g), 0);
    struct item items[4][20];
    memset(items, 0, sizeof items);
    for (int b = 0; b < 4; b++) {
        struct cd_group_item *p[20];
        for (int i = 0; i < 20; i++) {
            items[b][i].seq = b * 20 + i;
            p[i] = &items[b][i].g;
        }
        /* Each put waits: nothing else is queued, so every batch is held
         * and then synced. */
        assert_int_equal(cd_group_put(g, p, 20), 0);
        for (int i = 0; i < 20; i++)
            if (items[b][i].g.rc == 0)
                assert_true(answered_durable(r, &items[b][i]));
    }
    cd_group_close(g);
    assert_false(r->bad);
    assert_int_equal(r->batches, 4);
    /* batch 1: sync 1 failed; 2: synced; 3: run failed (no sync needed);
     * 4: synced. */
    assert_int_equal(r->syncs, 3);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(items[0][i].g.rc, CAIRN_E_DB);
        assert_int_equal(items[1][i].g.rc, 0);
        assert_int_equal(items[2][i].g.rc, CAIRN_E_DB);
        assert_int_equal(items[3][i].g.rc, 0);
    }
    recorder_free(r);
}

/* A batch that fails as a whole (its commit or sync failed) gives that
 * error to every one of its items, and only to them: the batches before
 * and after succeed. cd_group_put of several items keeps them together
 * and in order. */
static void test_group_batch_error_reaches_all(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    r->fail_batch = 2;
    struct cd_group *g = NULL;
    assert_int_equal(cd_group_open(run_record, NULL, r, 4096, UINT64_MAX, &g), 0);
    struct item items[3][50];
    memset(items, 0, sizeof items);
    for (int b = 0; b < 3; b++) {
        struct cd_group_item *p[50];
        for (int i = 0; i < 50; i++) {
            items[b][i].writer = 0;
            items[b][i].seq = b * 50 + i;
            p[i] = &items[b][i].g;
        }
        assert_int_equal(cd_group_put(g, p, 50), 0);
    }
    cd_group_close(g);
    assert_false(r->out_of_order);
    assert_false(r->bad);
    assert_int_equal(r->batches, 3); /* each put went as one batch */
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < 50; i++) {
            assert_int_equal(items[b][i].batch, b + 1);
            assert_int_equal(items[b][i].g.rc, b == 1 ? CAIRN_E_DB : 0);
        }
    recorder_free(r);
}

/* Caps: at most max_items per batch, and past the first item at most
 * max_bytes of weight; an item heavier than the cap still goes (alone). */
static void test_group_caps(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    struct cd_group *g = NULL;
    assert_int_equal(cd_group_open(run_record, NULL, r, 10, 1000, &g), 0);
    struct item items[25];
    struct cd_group_item *p[25];
    memset(items, 0, sizeof items);
    for (int i = 0; i < 25; i++) {
        items[i].seq = i;
        items[i].g.weight = i == 12 ? 5000 : 10;
        p[i] = &items[i].g;
    }
    assert_int_equal(cd_group_put(g, p, 25), 0);
    cd_group_close(g);
    assert_false(r->out_of_order);
    assert_true(r->max_batch <= 10);
    /* 0-9, 10-11 (12 is too heavy to join), 12 alone, 13-22, 23-24 */
    assert_int_equal(items[9].batch, 1);
    assert_int_equal(items[10].batch, 2);
    assert_int_equal(items[11].batch, 2);
    assert_int_equal(items[12].batch, 3);
    assert_int_equal(items[13].batch, 4);
    assert_int_equal(items[24].batch, 5);
    for (int i = 0; i < 25; i++)
        assert_int_equal(items[i].g.rc, 0);
    recorder_free(r);
}

/* Asynchronous submits: done runs once per item, after its batch, with
 * the item's own result, on the committer thread; close applies what is
 * still queued. */
static atomic_int async_done;
static atomic_bool async_bad;
static pthread_t async_main_thread;

static void async_done_fn(struct cd_group_item *g)
{
    struct item *it = (struct item *)g;
    if (it->batch == 0 || pthread_equal(pthread_self(), async_main_thread) ||
        g->rc != it->fail_with || atomic_exchange(&it->done, true))
        atomic_store(&async_bad, true);
    atomic_fetch_add(&async_done, 1);
}

static void test_group_async(void **state)
{
    (void)state;
    struct recorder *r = recorder_new();
    r->delay = 1000;
    async_main_thread = pthread_self();
    atomic_store(&async_done, 0);
    struct cd_group *g = NULL;
    assert_int_equal(cd_group_open(run_record, NULL, r, 4096, UINT64_MAX, &g), 0);
    struct item items[300];
    memset(items, 0, sizeof items);
    for (int i = 0; i < 300; i++) {
        items[i].seq = i;
        items[i].fail_with = i % 50 == 3 ? CAIRN_E_FULL : 0;
        items[i].g.done = async_done_fn;
        cd_group_submit(g, &items[i].g);
    }
    cd_group_close(g);
    assert_int_equal(atomic_load(&async_done), 300);
    assert_false(atomic_load(&async_bad));
    assert_false(r->bad);
    assert_false(r->out_of_order);
    assert_true(r->batches < 300);
    recorder_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_order_and_own_errors),
        cmocka_unit_test(test_group_sync_shared),
        cmocka_unit_test(test_group_sync_errors),
        cmocka_unit_test(test_group_batch_error_reaches_all),
        cmocka_unit_test(test_group_caps),
        cmocka_unit_test(test_group_async),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
