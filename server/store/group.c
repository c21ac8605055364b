/* The group-commit queue (group.h): one FIFO, one committer thread. While
 * the committer applies one batch (for the store, mostly waiting on the
 * disk's sync), the next writers queue up behind it and go together in
 * the next batch: the more writers, the more items share one sync; and
 * with a sync function, the next batch's commit is also the previous
 * one's sync. */
#include "server/store/group.h"

#include "common/error.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct cd_group {
    cd_group_run_fn *run;
    cd_group_sync_fn *sync;
    void *ctx;
    size_t max_items;
    uint64_t max_bytes;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* wakes the committer */
    struct cd_group_item *head, *tail;
    bool stop;
    pthread_t thread;
};

/* cd_group_put's waiter: how many of its items are not applied yet. */
struct group_wait {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    size_t left;
};

/* Takes the next batch off the queue (g->mu held, queue not empty). */
static struct cd_group_item *group_take(struct cd_group *g)
{
    struct cd_group_item *first = g->head, *last = first;
    size_t n = 1;
    uint64_t bytes = first->weight;
    while (last->next != NULL && n < g->max_items &&
           bytes + last->next->weight <= g->max_bytes) {
        last = last->next;
        bytes += last->weight;
        n++;
    }
    g->head = last->next;
    if (g->head == NULL)
        g->tail = NULL;
    last->next = NULL;
    return first;
}

static void group_finish(struct cd_group_item *it)
{
    if (it->done != NULL) {
        it->done(it);
        return;
    }
    struct group_wait *w = it->wait;
    pthread_mutex_lock(&w->mu);
    if (--w->left == 0)
        pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

/* Answers every item of batch; rc non-zero overrides their own results. */
static void group_answer(struct cd_group_item *batch, int rc)
{
    /* The links are read before done, which may free the item. */
    for (struct cd_group_item *it = batch, *next; it != NULL; it = next) {
        next = it->next;
        if (rc != 0)
            it->rc = rc;
        group_finish(it);
    }
}

static void *group_main(void *arg)
{
    struct cd_group *g = arg;
    /* The last batch run, not yet durable (only with g->sync). */
    struct cd_group_item *held = NULL;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->stop && g->head == NULL && held == NULL)
            pthread_cond_wait(&g->cond, &g->mu);
        if (g->head == NULL && held == NULL)
            break; /* stopping, and nothing left */
        if (g->head == NULL) {
            /* Nobody to share the next sync with: sync now. */
            pthread_mutex_unlock(&g->mu);
            group_answer(held, g->sync(g->ctx));
            held = NULL;
            pthread_mutex_lock(&g->mu);
            continue;
        }
        struct cd_group_item *batch = group_take(g);
        pthread_mutex_unlock(&g->mu);
        for (struct cd_group_item *it = batch; it != NULL; it = it->next)
            it->rc = 0;
        int rc = g->run(g->ctx, batch);
        if (held != NULL) {
            /* This run made the held batch durable, unless it failed. */
            group_answer(held, rc == 0 ? 0 : g->sync(g->ctx));
            held = NULL;
        }
        if (rc == 0 && g->sync != NULL)
            held = batch;
        else
            group_answer(batch, rc);
        pthread_mutex_lock(&g->mu);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

int cd_group_open(cd_group_run_fn *run, cd_group_sync_fn *sync, void *ctx,
                  size_t max_items, uint64_t max_bytes, struct cd_group **out)
{
    struct cd_group *g = calloc(1, sizeof *g);
    if (g == NULL)
        return CAIRN_E_NOMEM;
    g->run = run;
    g->sync = sync;
    g->ctx = ctx;
    g->max_items = max_items ? max_items : 1;
    g->max_bytes = max_bytes;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cond, NULL);
    if (pthread_create(&g->thread, NULL, group_main, g) != 0) {
        pthread_cond_destroy(&g->cond);
        pthread_mutex_destroy(&g->mu);
        free(g);
        return CAIRN_E_NOMEM;
    }
    *out = g;
    return 0;
}

void cd_group_close(struct cd_group *g)
{
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* Appends the chain first..last (linked) to the queue. */
static void group_append(struct cd_group *g, struct cd_group_item *first,
                         struct cd_group_item *last)
{
    last->next = NULL;
    pthread_mutex_lock(&g->mu);
    if (g->tail != NULL)
        g->tail->next = first;
    else
        g->head = first;
    g->tail = last;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->mu);
}

void cd_group_submit(struct cd_group *g, struct cd_group_item *it)
{
    group_append(g, it, it);
}

int cd_group_put(struct cd_group *g, struct cd_group_item **items, size_t n)
{
    if (n == 0)
        return 0;
    struct group_wait w = {.left = n};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cond, NULL);
    for (size_t i = 0; i < n; i++) {
        items[i]->done = NULL;
        items[i]->wait = &w;
        items[i]->next = i + 1 < n ? items[i + 1] : NULL;
    }
    group_append(g, items[0], items[n - 1]);
    pthread_mutex_lock(&w.mu);
    while (w.left > 0)
        pthread_cond_wait(&w.cond, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.mu);
    return 0;
}
