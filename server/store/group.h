/* A group-commit queue: writers hand in items and one committer thread
 * applies whatever has queued up as one batch (for the store: one LMDB
 * write txn and one sync for many small blobs), then tells each item's
 * writer how its item went. It knows nothing of LMDB: the batch is applied
 * by the run function given at open (server/store/store_group.c for the
 * store), so the queue is tested on its own.
 *
 * Order: items are applied in the order they were submitted (one FIFO),
 * and a batch's done callbacks run only once it is durable, in the same
 * order.
 *
 * Durability, with a sync function: run commits a batch without making
 * it durable, and a run that returns 0 makes every batch run before it
 * durable (for LMDB with MDB_NOMETASYNC: the next commit's fdatasync also
 * writes out the previous commit's meta page). So while writers keep
 * coming, a batch is answered after the next batch's run, and each batch
 * costs one sync instead of two; when nothing else is queued (or the next
 * run failed), sync is called before answering. Without a sync function,
 * run must make its batch durable itself. A batch holds at most max_items items and, past its
 * first item, at most max_bytes of their weight (a writer says what an
 * item weighs: the store uses its unstaged bytes, so one commit's dirty
 * pages stay bounded).
 *
 * Thread-safety: submit and put may be called from any thread; open and
 * close from one. An item is owned by the queue from submit until its
 * done callback starts. */
#ifndef CAIRN_SERVER_STORE_GROUP_H
#define CAIRN_SERVER_STORE_GROUP_H

#include <stddef.h>
#include <stdint.h>

struct cd_group_item {
    struct cd_group_item *next; /* the queue's and the batch's link */
    uint64_t weight;            /* set by the writer before submit */
    int rc;                     /* the item's result, set by run */
    /* Called once on the committer thread after the batch is applied;
     * may free the item. NULL for items of cd_group_put. */
    void (*done)(struct cd_group_item *it);
    void *ctx; /* the writer's */
    void *wait; /* cd_group_put's, do not touch */
};

/* Applies a batch (a list linked through next, in submission order):
 * sets every item's rc (0, or that item's own error) and returns 0, or
 * returns an error that failed the whole batch (a failed commit or
 * sync), which the queue then gives every item of the batch. */
typedef int cd_group_run_fn(void *ctx, struct cd_group_item *batch);
/* Makes the last batch run durable. Returns 0 or an error that the queue
 * gives every item of that batch. */
typedef int cd_group_sync_fn(void *ctx);

struct cd_group;

/* Starts the committer thread. sync may be NULL (see Durability above).
 * ctx is borrowed until cd_group_close. Returns 0 or CAIRN_E_NOMEM. */
int cd_group_open(cd_group_run_fn *run, cd_group_sync_fn *sync, void *ctx,
                  size_t max_items, uint64_t max_bytes,
                  struct cd_group **out);
/* Applies what is queued, stops the thread and frees g. Accepts NULL.
 * Nothing may be submitted any more. */
void cd_group_close(struct cd_group *g);

/* Queues it (it->done non-NULL) and returns at once; it->done(it) follows
 * on the committer thread with it->rc set. */
void cd_group_submit(struct cd_group *g, struct cd_group_item *it);
/* Queues n items as consecutive entries (so they usually share one batch)
 * and waits until all are applied. Each item's rc says how it went; the
 * return value is 0. done is ignored (set to NULL). */
int cd_group_put(struct cd_group *g, struct cd_group_item **items, size_t n);

#endif
