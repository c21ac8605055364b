/* Parallel deterministic gzip in cairn's member layout
 * (client/store/layer_pgzip.h, client/store/layer_gzm.h).
 *
 * A ring of slots holds blocks on their way: the caller fills the slot of
 * block `fill`, workers turn blocks into whole gzip members in sequence
 * (`work`), and the caller hands finished members to the sink in sequence
 * (`emit`), so emit <= work <= fill and at most nslots blocks are in
 * flight. One mutex guards the counters and slot states; block data is
 * touched only by the side that owns the slot in its current state. */
#include "client/store/layer_pgzip.h"

#include "common/error.h"

#include <libdeflate.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The incompressible-block probe: PGZ_PROBES slices of PGZ_PROBE bytes
 * spread over the block, gathered and deflated at level 1; a block whose
 * probe does not shrink below PGZ_PROBE_KEEP percent is stored (level 0),
 * not deflated. */
#define PGZ_PROBE ((size_t)4 << 10)
#define PGZ_PROBES 4
#define PGZ_PROBE_KEEP 97

enum slot_state { SLOT_FREE, SLOT_READY, SLOT_BUSY, SLOT_DONE };

struct pgz_slot {
    enum slot_state state;
    uint8_t *in; /* LAYER_GZM_BLOCK bytes */
    size_t in_len;
    uint8_t *out; /* one whole member; out_cap fits the worst case */
    size_t out_len;
    int rc;
};

struct pgz_worker {
    struct layer_pgzip *g;
    struct libdeflate_compressor *deflate; /* at the level */
    struct libdeflate_compressor *store;   /* level 0 */
    struct libdeflate_compressor *probe;   /* level 1 */
    uint8_t probe_in[PGZ_PROBES * PGZ_PROBE];
    uint8_t *probe_out;
    size_t probe_cap;
    pthread_t th;
    bool started;
};

struct layer_pgzip {
    int level;
    layer_pgzip_sink sink;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a slot became READY, or stop */
    pthread_cond_t done_cv; /* a slot became DONE */
    bool stop;
    struct pgz_slot *slots;
    size_t nslots;
    size_t out_cap;
    uint64_t fill, work, emit;
    struct pgz_worker *workers;
    unsigned nworkers;
    int broken;
};

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Whether the block is worth deflating. Already compressed content (zipped
 * archives, images, random bytes) costs deflate CPU and gains nothing;
 * such blocks are stored. The answer depends only on the block's bytes
 * (and libdeflate's version), so the output stays a function of the
 * input. */
static bool slot_compresses(const struct pgz_slot *s, struct pgz_worker *wk)
{
    if (s->in_len < PGZ_PROBES * PGZ_PROBE)
        return true; /* small: deflating costs little */
    size_t step = s->in_len / PGZ_PROBES;
    for (size_t i = 0; i < PGZ_PROBES; i++)
        memcpy(wk->probe_in + i * PGZ_PROBE, s->in + i * step, PGZ_PROBE);
    size_t n = libdeflate_deflate_compress(wk->probe, wk->probe_in,
                                           sizeof wk->probe_in, wk->probe_out,
                                           wk->probe_cap);
    return n > 0 && n * 100 < sizeof wk->probe_in * PGZ_PROBE_KEEP;
}

/* Turns one slot's block into a whole member: the header of
 * client/store/layer_gzm.h with the member's size, the raw deflate data,
 * the CRC-32 and ISIZE. out_cap holds libdeflate's bound, so a 0 from it
 * is a broken library, not a full buffer. */
static int slot_deflate(struct pgz_slot *s, struct pgz_worker *wk,
                        size_t out_cap)
{
    struct libdeflate_compressor *c =
        slot_compresses(s, wk) ? wk->deflate : wk->store;
    size_t room = out_cap - LAYER_GZM_HEAD - LAYER_GZM_TRAILER;
    size_t n = libdeflate_deflate_compress(c, s->in, s->in_len,
                                           s->out + LAYER_GZM_HEAD, room);
    if (n == 0)
        return CAIRN_E_IO;
    size_t total = LAYER_GZM_HEAD + n + LAYER_GZM_TRAILER;
    static const uint8_t head[LAYER_GZM_HEAD - 4] = {
        0x1f, 0x8b, 8,    4, 0, 0, 0, 0, 0, 0xff, /* FLG FEXTRA, OS 255 */
        8,    0,                                  /* XLEN */
        LAYER_GZM_SI1, LAYER_GZM_SI2, 4, 0};     /* subfield, LEN 4 */
    memcpy(s->out, head, sizeof head);
    put_le32(s->out + sizeof head, (uint32_t)total);
    uint8_t *t = s->out + LAYER_GZM_HEAD + n;
    put_le32(t, libdeflate_crc32(0, s->in, s->in_len));
    put_le32(t + 4, (uint32_t)s->in_len);
    s->out_len = total;
    return 0;
}

static void *worker_main(void *p)
{
    struct pgz_worker *wk = p;
    struct layer_pgzip *g = wk->g;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->stop && g->work == g->fill)
            pthread_cond_wait(&g->work_cv, &g->mu);
        if (g->stop)
            break;
        struct pgz_slot *s = &g->slots[g->work % g->nslots];
        g->work++;
        s->state = SLOT_BUSY;
        pthread_mutex_unlock(&g->mu);
        int rc = slot_deflate(s, wk, g->out_cap);
        pthread_mutex_lock(&g->mu);
        s->rc = rc;
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&g->done_cv);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* Waits for the oldest block in flight and hands its member to the sink. */
static int emit_one(struct layer_pgzip *g)
{
    struct pgz_slot *s = &g->slots[g->emit % g->nslots];
    pthread_mutex_lock(&g->mu);
    while (s->state != SLOT_DONE)
        pthread_cond_wait(&g->done_cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    int rc = s->rc;
    if (rc == 0)
        rc = g->sink(g->arg, s->out, s->out_len);
    pthread_mutex_lock(&g->mu);
    s->state = SLOT_FREE;
    s->in_len = 0;
    g->emit++;
    pthread_mutex_unlock(&g->mu);
    return rc;
}

/* Hands the slot being filled to the workers and makes the next one ready
 * to fill, emitting the oldest block first when the ring is full. */
static int dispatch(struct layer_pgzip *g)
{
    struct pgz_slot *s = &g->slots[g->fill % g->nslots];
    pthread_mutex_lock(&g->mu);
    s->state = SLOT_READY;
    g->fill++;
    pthread_cond_signal(&g->work_cv);
    pthread_mutex_unlock(&g->mu);
    if (g->fill - g->emit == g->nslots)
        return emit_one(g);
    return 0;
}

int layer_pgzip_write(struct layer_pgzip *g, const void *p, size_t n)
{
    if (g->broken)
        return g->broken;
    const uint8_t *b = p;
    while (n > 0) {
        struct pgz_slot *s = &g->slots[g->fill % g->nslots];
        size_t k = LAYER_GZM_BLOCK - s->in_len;
        if (k > n)
            k = n;
        memcpy(s->in + s->in_len, b, k);
        s->in_len += k;
        b += k;
        n -= k;
        /* A full block is dispatched only once more input arrives, so the
         * last block (the one layer_pgzip_finish dispatches) is never
         * empty unless the whole input is. */
        if (s->in_len == LAYER_GZM_BLOCK && n > 0) {
            int rc = dispatch(g);
            if (rc != 0)
                return g->broken = rc;
        }
    }
    return 0;
}

int layer_pgzip_finish(struct layer_pgzip *g)
{
    if (g->broken)
        return g->broken;
    int rc = dispatch(g);
    while (rc == 0 && g->emit < g->fill)
        rc = emit_one(g);
    if (rc != 0)
        g->broken = rc;
    return rc;
}

void layer_pgzip_free(struct layer_pgzip *g)
{
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    g->stop = true;
    pthread_cond_broadcast(&g->work_cv);
    pthread_mutex_unlock(&g->mu);
    for (unsigned i = 0; i < g->nworkers; i++) {
        struct pgz_worker *wk = &g->workers[i];
        if (wk->started)
            pthread_join(wk->th, NULL);
        libdeflate_free_compressor(wk->deflate);
        libdeflate_free_compressor(wk->store);
        libdeflate_free_compressor(wk->probe);
        free(wk->probe_out);
    }
    for (size_t i = 0; g->slots != NULL && i < g->nslots; i++) {
        free(g->slots[i].in);
        free(g->slots[i].out);
    }
    free(g->slots);
    free(g->workers);
    pthread_cond_destroy(&g->work_cv);
    pthread_cond_destroy(&g->done_cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static int worker_init(struct pgz_worker *wk, struct layer_pgzip *g)
{
    wk->g = g;
    wk->deflate = libdeflate_alloc_compressor(g->level);
    wk->store = libdeflate_alloc_compressor(0);
    wk->probe = libdeflate_alloc_compressor(1);
    if (wk->deflate == NULL || wk->store == NULL || wk->probe == NULL)
        return CAIRN_E_NOMEM;
    wk->probe_cap =
        libdeflate_deflate_compress_bound(wk->probe, sizeof wk->probe_in);
    wk->probe_out = malloc(wk->probe_cap);
    return wk->probe_out == NULL ? CAIRN_E_NOMEM : 0;
}

int layer_pgzip_new(int level, unsigned threads, layer_pgzip_sink sink,
                    void *arg, struct layer_pgzip **out)
{
    if (level < 1 || level > LAYER_PGZIP_MAX_LEVEL || threads < 1 ||
        threads > LAYER_PGZIP_MAX_THREADS || sink == NULL || out == NULL)
        return CAIRN_E_INVAL;
    struct layer_pgzip *g = calloc(1, sizeof *g);
    if (g == NULL)
        return CAIRN_E_NOMEM;
    g->level = level;
    g->sink = sink;
    g->arg = arg;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->work_cv, NULL);
    pthread_cond_init(&g->done_cv, NULL);
    /* Two blocks per worker keep every worker busy while the caller fills
     * and emits; one more is the block being filled. */
    g->nslots = 2 * (size_t)threads + 1;
    g->slots = calloc(g->nslots, sizeof *g->slots);
    g->workers = calloc(threads, sizeof *g->workers);
    int rc = 0;
    if (g->slots == NULL || g->workers == NULL) {
        rc = CAIRN_E_NOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < threads; i++) {
        g->nworkers = i + 1;
        if ((rc = worker_init(&g->workers[i], g)) != 0)
            goto fail;
    }
    /* The bound covers stored blocks too (libdeflate never emits a
     * compressed block bigger than storing it would be). */
    g->out_cap = LAYER_GZM_HEAD +
                 libdeflate_deflate_compress_bound(g->workers[0].deflate,
                                                   LAYER_GZM_BLOCK) +
                 LAYER_GZM_TRAILER;
    for (size_t i = 0; i < g->nslots; i++) {
        g->slots[i].in = malloc(LAYER_GZM_BLOCK);
        g->slots[i].out = malloc(g->out_cap);
        if (g->slots[i].in == NULL || g->slots[i].out == NULL) {
            rc = CAIRN_E_NOMEM;
            goto fail;
        }
    }
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&g->workers[i].th, NULL, worker_main,
                           &g->workers[i]) != 0) {
            rc = CAIRN_E_NOMEM;
            goto fail;
        }
        g->workers[i].started = true;
    }
    *out = g;
    return 0;
fail:
    layer_pgzip_free(g);
    return rc;
}

unsigned layer_threads_default(void)
{
    const char *e = getenv("CAIRN_LAYER_THREADS");
    if (e != NULL && e[0] != '\0') {
        char *end = NULL;
        unsigned long v = strtoul(e, &end, 10);
        if (*end == '\0' && v >= 1 && v <= LAYER_PGZIP_MAX_THREADS)
            return (unsigned)v;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > 8 ? 8 : (unsigned)n;
}
