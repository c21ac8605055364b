/* Inflating cairn's member-layout gzip layers on several cores
 * (client/store/layer_gunzip.h; the layout in client/store/layer_gzm.h).
 *
 * The slots form a ring in blob order. The caller's thread fills the slot
 * after the last one in use with the next member's bytes, queues it when
 * the member is complete, and hands slots out from the oldest one; the
 * workers take queued slots in ring order. Because members are filled,
 * queued and taken in order, the queued slots are always the run that
 * starts at next_job, so a count says all the workers need to know. */
#include "client/store/layer_gunzip.h"

#include "common/error.h"

#include <libdeflate.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Slots per thread: one being inflated, one inflated and waiting for its
 * turn, and one being filled, so neither side waits on the other in the
 * common case. */
#define GUNZIP_SLOTS_PER_THREAD 3

enum slot_state {
    SLOT_FREE,
    SLOT_FILLING, /* the caller copies the member in */
    SLOT_QUEUED,  /* complete, waiting for a thread */
    SLOT_BUSY,    /* a thread inflates it */
    SLOT_DONE,    /* inflated (or failed: rc) */
};

struct slot {
    enum slot_state state;
    uint8_t *in;     /* the member: LAYER_GUNZIP_MEMBER_MAX bytes */
    size_t in_len;   /* bytes copied in so far */
    size_t size;     /* the header's size field; 0 until the header is in */
    uint64_t offset; /* where the member starts in the blob */
    uint8_t *out;    /* LAYER_GZM_BLOCK bytes */
    size_t out_len;
    int rc;
    char msg[160];
};

struct layer_gunzip {
    pthread_mutex_t mu;
    pthread_cond_t work; /* a slot was queued, or stop */
    pthread_cond_t done; /* a slot was inflated */
    struct slot *slots;
    size_t nslots;
    /* The caller's side, touched only by the caller's thread. */
    size_t head;     /* the oldest slot in use */
    size_t used;     /* slots in use from head on */
    bool handed_out; /* head's output is the caller's until its next call */
    /* The last slot in use is being filled. Kept here rather than read
     * from the slots' states, which the workers write. */
    bool filling;
    uint64_t fed;                       /* blob bytes taken so far */
    uint64_t members;                   /* members queued so far */
    struct libdeflate_decompressor *dd; /* the caller's own */
    int rc;                             /* sticky */
    char msg[200];
    /* Shared with the workers, under mu. */
    size_t next_job; /* the first queued slot */
    size_t pending;  /* queued slots, from next_job on */
    bool stop;
    pthread_t *threads;
    size_t nthreads;   /* started */
    size_t maxthreads; /* workers wanted: the threads asked for, less one */
};

/* The fixed bytes of every member header (layer_gzm.h): everything but
 * the four bytes of the size field. */
static const uint8_t gzm_fixed[LAYER_GZM_HEAD - 4] = {
    0x1f, 0x8b, 0x08, 0x04, 0x00,          0x00,          0x00, 0x00,
    0x00, 0xff, 0x08, 0x00, LAYER_GZM_SI1, LAYER_GZM_SI2, 0x04, 0x00};

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

bool layer_gunzip_detect(const uint8_t *p, size_t n)
{
    return n >= LAYER_GZM_HEAD && memcmp(p, gzm_fixed, sizeof gzm_fixed) == 0;
}

static int gunzip_fail(struct layer_gunzip *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int gunzip_fail(struct layer_gunzip *g, const char *fmt, ...)
{
    if (g->rc == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->msg, sizeof g->msg, fmt, ap);
        va_end(ap);
        g->rc = CAIRN_E_CORRUPT;
    }
    return g->rc;
}

/* Inflates one complete member into s->out and checks it against its
 * trailer. Runs on any thread, touching only s and d. */
static void slot_inflate(struct libdeflate_decompressor *d, struct slot *s)
{
    const uint8_t *t = s->in + s->size - LAYER_GZM_TRAILER;
    uint32_t crc = le32(t);
    uint32_t isize = le32(t + 4);
    size_t deflate_len = s->size - LAYER_GZM_HEAD - LAYER_GZM_TRAILER;
    const char *why = NULL;
    size_t in_got = 0;
    size_t out_got = 0;
    s->rc = CAIRN_E_CORRUPT;
    if (isize > LAYER_GZM_BLOCK) {
        snprintf(s->msg, sizeof s->msg,
                 "its trailer says %lu bytes, more than a block of %zu",
                 (unsigned long)isize, LAYER_GZM_BLOCK);
        return;
    }
    /* With the actual sizes asked for, libdeflate never writes past
     * isize bytes and never reads past deflate_len: more output than
     * ISIZE is INSUFFICIENT_SPACE, data cut short is BAD_DATA. */
    enum libdeflate_result res =
        libdeflate_deflate_decompress_ex(d, s->in + LAYER_GZM_HEAD, deflate_len,
                                         s->out, isize, &in_got, &out_got);
    if (res == LIBDEFLATE_INSUFFICIENT_SPACE)
        why = "it inflates to more bytes than its trailer says";
    else if (res != LIBDEFLATE_SUCCESS)
        why = "bad deflate data (or a size field that cuts it short)";
    else if (in_got != deflate_len)
        snprintf(s->msg, sizeof s->msg,
                 "its deflate data ends %zu bytes before its size field says",
                 deflate_len - in_got);
    else if (out_got != isize)
        snprintf(s->msg, sizeof s->msg,
                 "it inflates to %zu bytes, its trailer says %lu", out_got,
                 (unsigned long)isize);
    else if (libdeflate_crc32(0, s->out, out_got) != crc)
        why = "CRC-32 mismatch";
    else
        s->rc = 0;
    if (why != NULL)
        snprintf(s->msg, sizeof s->msg, "%s", why);
    s->out_len = s->rc == 0 ? out_got : 0;
}

static void *gunzip_worker(void *arg)
{
    struct layer_gunzip *g = arg;
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->stop && (g->pending == 0 || d == NULL))
            pthread_cond_wait(&g->work, &g->mu);
        if (g->stop)
            break;
        struct slot *s = &g->slots[g->next_job];
        g->next_job = (g->next_job + 1) % g->nslots;
        g->pending--;
        s->state = SLOT_BUSY;
        pthread_mutex_unlock(&g->mu);
        slot_inflate(d, s);
        pthread_mutex_lock(&g->mu);
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&g->done);
    }
    pthread_mutex_unlock(&g->mu);
    libdeflate_free_decompressor(d);
    return NULL;
}

/* Starts the workers. One that cannot start only leaves more of the
 * work to the others and to the caller's thread, which inflates whatever
 * is queued while it waits: never an error. */
static void gunzip_workers_start(struct layer_gunzip *g)
{
    while (g->nthreads < g->maxthreads &&
           pthread_create(&g->threads[g->nthreads], NULL, gunzip_worker, g) ==
               0)
        g->nthreads++;
}

int layer_gunzip_new(unsigned threads, struct layer_gunzip **out)
{
    if (threads == 0 || out == NULL)
        return CAIRN_E_INVAL;
    if (threads > LAYER_GUNZIP_MAX_THREADS)
        threads = LAYER_GUNZIP_MAX_THREADS;
    struct layer_gunzip *g = calloc(1, sizeof *g);
    if (g == NULL)
        return CAIRN_E_NOMEM;
    /* With default attributes glibc's init functions cannot fail and hold
     * no resources, so one check covers the three. */
    if (pthread_mutex_init(&g->mu, NULL) != 0 ||
        pthread_cond_init(&g->work, NULL) != 0 ||
        pthread_cond_init(&g->done, NULL) != 0) {
        free(g);
        return CAIRN_E_NOMEM;
    }
    /* Slot buffers are allocated when a slot is first used and workers
     * start with the second member, so a small layer costs neither. */
    g->nslots = (size_t)threads * GUNZIP_SLOTS_PER_THREAD;
    g->maxthreads = threads - 1;
    g->slots = calloc(g->nslots, sizeof *g->slots);
    g->threads = calloc(threads, sizeof *g->threads);
    g->dd = libdeflate_alloc_decompressor();
    if (g->slots == NULL || g->threads == NULL || g->dd == NULL) {
        layer_gunzip_free(g);
        return CAIRN_E_NOMEM;
    }
    *out = g;
    return 0;
}

void layer_gunzip_free(struct layer_gunzip *g)
{
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_broadcast(&g->work);
    pthread_mutex_unlock(&g->mu);
    for (size_t i = 0; i < g->nthreads; i++)
        pthread_join(g->threads[i], NULL);
    for (size_t i = 0; g->slots != NULL && i < g->nslots; i++) {
        free(g->slots[i].in);
        free(g->slots[i].out);
    }
    free(g->slots);
    free(g->threads);
    libdeflate_free_decompressor(g->dd);
    pthread_cond_destroy(&g->done);
    pthread_cond_destroy(&g->work);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

const char *layer_gunzip_error(const struct layer_gunzip *g)
{
    return g->msg;
}

/* Checks a member's header, now complete in s->in, and takes its size. */
static int slot_header(struct layer_gunzip *g, struct slot *s)
{
    if (memcmp(s->in, gzm_fixed, sizeof gzm_fixed) != 0)
        return gunzip_fail(g,
                           "gzip member at offset %llu is not in cairn's "
                           "member layout (or the blob has trailing bytes)",
                           (unsigned long long)s->offset);
    uint32_t size = le32(s->in + sizeof gzm_fixed);
    if (size <= LAYER_GZM_HEAD + LAYER_GZM_TRAILER ||
        size > LAYER_GUNZIP_MEMBER_MAX)
        return gunzip_fail(g,
                           "gzip member at offset %llu: size field %lu is "
                           "out of bounds (%d..%zu)",
                           (unsigned long long)s->offset, (unsigned long)size,
                           LAYER_GZM_HEAD + LAYER_GZM_TRAILER + 1,
                           (size_t)LAYER_GUNZIP_MEMBER_MAX);
    s->size = size;
    return 0;
}

int layer_gunzip_feed(struct layer_gunzip *g, const uint8_t *p, size_t n,
                      size_t *used)
{
    size_t took = 0;
    while (g->rc == 0 && took < n) {
        struct slot *s;
        if (g->filling) {
            s = &g->slots[(g->head + g->used - 1) % g->nslots];
        } else {
            if (g->used == g->nslots)
                break;
            s = &g->slots[(g->head + g->used) % g->nslots];
            if (s->in == NULL)
                s->in = malloc(LAYER_GUNZIP_MEMBER_MAX);
            if (s->out == NULL)
                s->out = malloc(LAYER_GZM_BLOCK);
            if (s->in == NULL || s->out == NULL) {
                g->rc = CAIRN_E_NOMEM;
                snprintf(g->msg, sizeof g->msg, "out of memory");
                break;
            }
            g->used++;
            g->filling = true;
            s->state = SLOT_FILLING;
            s->in_len = 0;
            s->size = 0;
            s->offset = g->fed + took;
        }
        size_t want = s->size == 0 ? LAYER_GZM_HEAD : s->size;
        size_t k = want - s->in_len;
        if (k > n - took)
            k = n - took;
        memcpy(s->in + s->in_len, p + took, k);
        s->in_len += k;
        took += k;
        if (s->in_len < want)
            continue;
        if (s->size == 0) {
            if (slot_header(g, s) != 0)
                break;
            continue;
        }
        g->filling = false;
        pthread_mutex_lock(&g->mu);
        s->state = SLOT_QUEUED;
        g->pending++;
        pthread_cond_signal(&g->work);
        pthread_mutex_unlock(&g->mu);
        if (++g->members == 2)
            gunzip_workers_start(g);
    }
    g->fed += took;
    *used = took;
    return g->rc;
}

int layer_gunzip_next(struct layer_gunzip *g, const uint8_t **p, size_t *n)
{
    *n = 0;
    if (g->rc != 0)
        return g->rc;
    for (;;) {
        if (g->handed_out) {
            g->slots[g->head].state = SLOT_FREE;
            g->head = (g->head + 1) % g->nslots;
            g->used--;
            g->handed_out = false;
        }
        if (g->used == 0 || (g->used == 1 && g->filling))
            return 0;
        struct slot *s = &g->slots[g->head];
        pthread_mutex_lock(&g->mu);
        /* Waiting is wasted: this thread inflates the first queued member
         * itself (the head's, or a later one a worker would take next). */
        while (s->state != SLOT_DONE) {
            if (g->pending == 0) {
                pthread_cond_wait(&g->done, &g->mu);
                continue;
            }
            struct slot *job = &g->slots[g->next_job];
            g->next_job = (g->next_job + 1) % g->nslots;
            g->pending--;
            job->state = SLOT_BUSY;
            pthread_mutex_unlock(&g->mu);
            slot_inflate(g->dd, job);
            pthread_mutex_lock(&g->mu);
            job->state = SLOT_DONE;
        }
        pthread_mutex_unlock(&g->mu);
        g->handed_out = true;
        if (s->rc != 0)
            return gunzip_fail(g, "gzip member at offset %llu: %s",
                               (unsigned long long)s->offset, s->msg);
        if (s->out_len > 0) {
            *p = s->out;
            *n = s->out_len;
            return 0;
        }
    }
}

int layer_gunzip_end(struct layer_gunzip *g)
{
    if (g->rc != 0)
        return g->rc;
    if (g->filling) {
        struct slot *s = &g->slots[(g->head + g->used - 1) % g->nslots];
        return gunzip_fail(g,
                           "the blob ends inside the gzip member at offset "
                           "%llu (%zu of its %s bytes)",
                           (unsigned long long)s->offset, s->in_len,
                           s->size == 0 ? "header's" : "announced");
    }
    return 0;
}
