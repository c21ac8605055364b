/* Parallel deterministic gzip (client/store/layer_pgzip.h).
 *
 * A ring of slots holds blocks on their way: the caller fills the slot of
 * block `fill`, workers deflate blocks in sequence (`work`), and the caller
 * hands finished blocks to the sink in sequence (`emit`), so
 * emit <= work <= fill and at most nslots blocks are in flight. One mutex
 * guards the counters and slot states; block data is touched only by the
 * side that owns the slot in its current state. */
#include "client/store/layer_pgzip.h"

#include "common/error.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define PGZ_DICT ((size_t)32 << 10) /* deflate's window */
/* The incompressible-block probe: PGZ_PROBES slices of PGZ_PROBE bytes
 * spread over the block, deflated at level 1; a block whose probe does not
 * shrink below PGZ_PROBE_KEEP percent is stored, not deflated. */
#define PGZ_PROBE ((size_t)4 << 10)
#define PGZ_PROBES 4
#define PGZ_PROBE_KEEP 97

enum slot_state { SLOT_FREE, SLOT_READY, SLOT_BUSY, SLOT_DONE };

struct pgz_slot {
    enum slot_state state;
    bool last;
    uint8_t *in; /* LAYER_PGZIP_BLOCK bytes */
    size_t in_len;
    uint8_t dict[PGZ_DICT]; /* the input just before this block */
    size_t dict_len;
    uint8_t *out;
    size_t out_cap;
    size_t out_len;
    uLong crc; /* CRC-32 of in[0..in_len) */
    int rc;
};

struct pgz_worker {
    struct layer_pgzip *g;
    z_stream z;
    bool z_live;
    z_stream probe; /* raw deflate at level 1 */
    bool probe_live;
    uint8_t probe_out[PGZ_PROBES * PGZ_PROBE + 1024];
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
    uint64_t fill, work, emit;
    struct pgz_worker *workers;
    unsigned nworkers;
    uint8_t dict[PGZ_DICT]; /* the last PGZ_DICT input bytes dispatched */
    size_t dict_len;
    uLong crc;
    uint64_t total; /* input bytes, for ISIZE */
    bool header_done;
    int broken;
};

/* Whether the block is worth deflating. Already compressed content (zipped
 * archives, images, random bytes) costs deflate as much CPU as text and
 * gains nothing; such blocks are stored. The answer depends only on the
 * block's bytes, so the output stays a function of the input. */
static bool slot_compresses(struct pgz_slot *s, struct pgz_worker *wk)
{
    if (s->in_len < PGZ_PROBES * PGZ_PROBE)
        return true; /* small: deflating costs little */
    z_stream *z = &wk->probe;
    if (deflateReset(z) != Z_OK)
        return true;
    z->next_out = wk->probe_out;
    z->avail_out = (uInt)sizeof wk->probe_out;
    size_t step = s->in_len / PGZ_PROBES;
    for (size_t i = 0; i < PGZ_PROBES; i++) {
        z->next_in = s->in + i * step;
        z->avail_in = (uInt)PGZ_PROBE;
        if (deflate(z, i + 1 == PGZ_PROBES ? Z_FINISH : Z_NO_FLUSH) ==
                Z_STREAM_ERROR ||
            z->avail_out == 0)
            return false; /* did not even fit: it does not shrink */
    }
    return z->total_out * 100 <
           (uLong)(PGZ_PROBES * PGZ_PROBE) * PGZ_PROBE_KEEP;
}

/* Deflates one slot with the worker's stream (raw deflate), at the level or
 * stored (level 0), growing the output buffer if the bound was not
 * enough. */
static int slot_deflate(struct pgz_slot *s, struct pgz_worker *wk, int level)
{
    z_stream *z = &wk->z;
    if (deflateReset(z) != Z_OK)
        return CAIRN_E_IO;
    /* Right after a reset deflateParams only sets the level (nothing to
     * flush), so each block starts alike whatever block came before. */
    if (deflateParams(z, slot_compresses(s, wk) ? level : 0,
                      Z_DEFAULT_STRATEGY) != Z_OK)
        return CAIRN_E_IO;
    if (s->dict_len > 0 &&
        deflateSetDictionary(z, s->dict, (uInt)s->dict_len) != Z_OK)
        return CAIRN_E_IO;
    z->next_in = s->in;
    z->avail_in = (uInt)s->in_len;
    s->out_len = 0;
    int flush = s->last ? Z_FINISH : Z_SYNC_FLUSH;
    for (;;) {
        if (s->out_len == s->out_cap) {
            size_t cap = s->out_cap * 2;
            uint8_t *o = realloc(s->out, cap);
            if (o == NULL)
                return CAIRN_E_NOMEM;
            s->out = o;
            s->out_cap = cap;
        }
        z->next_out = s->out + s->out_len;
        z->avail_out = (uInt)(s->out_cap - s->out_len);
        int zr = deflate(z, flush);
        s->out_len = s->out_cap - z->avail_out;
        if (zr == Z_STREAM_ERROR)
            return CAIRN_E_IO;
        /* Done when the stream ended (Z_FINISH) or when a sync flush
         * consumed everything and left room: deflate fills the buffer
         * exactly when it may have more to write. */
        if (s->last ? zr == Z_STREAM_END : z->avail_in == 0 && z->avail_out > 0)
            break;
    }
    s->crc = crc32(0L, s->in, (uInt)s->in_len);
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
        int rc = slot_deflate(s, wk, g->level);
        pthread_mutex_lock(&g->mu);
        s->rc = rc;
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&g->done_cv);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

static int emit_header(struct layer_pgzip *g)
{
    /* As zlib writes it for these levels (XFL 2: best, 4: fastest), with
     * no name, no mtime and OS 255 ("unknown"), as Go's compress/gzip. */
    uint8_t h[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255};
    h[8] = g->level == 9 ? 2 : g->level == 1 ? 4 : 0;
    g->header_done = true;
    return g->sink(g->arg, h, sizeof h);
}

/* Waits for the oldest block in flight and hands it to the sink. */
static int emit_one(struct layer_pgzip *g)
{
    struct pgz_slot *s = &g->slots[g->emit % g->nslots];
    pthread_mutex_lock(&g->mu);
    while (s->state != SLOT_DONE)
        pthread_cond_wait(&g->done_cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    int rc = s->rc;
    if (rc == 0 && !g->header_done)
        rc = emit_header(g);
    if (rc == 0)
        rc = g->sink(g->arg, s->out, s->out_len);
    if (rc == 0)
        g->crc = crc32_combine(g->crc, s->crc, (z_off_t)s->in_len);
    pthread_mutex_lock(&g->mu);
    s->state = SLOT_FREE;
    s->in_len = 0;
    g->emit++;
    pthread_mutex_unlock(&g->mu);
    return rc;
}

/* Hands the slot being filled to the workers and makes the next one ready
 * to fill, emitting the oldest block first when the ring is full. */
static int dispatch(struct layer_pgzip *g, bool last)
{
    struct pgz_slot *s = &g->slots[g->fill % g->nslots];
    s->last = last;
    memcpy(s->dict, g->dict, g->dict_len);
    s->dict_len = g->dict_len;
    /* The next block's dictionary: the last 32 KiB of input so far. A
     * block is never shorter than that except the last one, after which
     * no dictionary is needed. */
    if (!last) {
        memcpy(g->dict, s->in + s->in_len - PGZ_DICT, PGZ_DICT);
        g->dict_len = PGZ_DICT;
    }
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
        size_t k = LAYER_PGZIP_BLOCK - s->in_len;
        if (k > n)
            k = n;
        memcpy(s->in + s->in_len, b, k);
        s->in_len += k;
        g->total += k;
        b += k;
        n -= k;
        /* A full block is dispatched only once more input arrives, so the
         * last block (the one layer_pgzip_finish ends) is never empty
         * unless the whole input is. */
        if (s->in_len == LAYER_PGZIP_BLOCK && n > 0) {
            int rc = dispatch(g, false);
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
    int rc = dispatch(g, true);
    while (rc == 0 && g->emit < g->fill)
        rc = emit_one(g);
    if (rc == 0) {
        uint8_t t[8];
        uint32_t crc = (uint32_t)g->crc, isz = (uint32_t)g->total;
        for (int i = 0; i < 4; i++) {
            t[i] = (uint8_t)(crc >> (8 * i));
            t[4 + i] = (uint8_t)(isz >> (8 * i));
        }
        rc = g->sink(g->arg, t, sizeof t);
    }
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
        if (g->workers[i].started)
            pthread_join(g->workers[i].th, NULL);
        if (g->workers[i].z_live)
            deflateEnd(&g->workers[i].z);
        if (g->workers[i].probe_live)
            deflateEnd(&g->workers[i].probe);
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

int layer_pgzip_new(int level, unsigned threads, layer_pgzip_sink sink,
                    void *arg, struct layer_pgzip **out)
{
    if (level < 1 || level > 9 || threads < 1 ||
        threads > LAYER_PGZIP_MAX_THREADS || sink == NULL || out == NULL)
        return CAIRN_E_INVAL;
    struct layer_pgzip *g = calloc(1, sizeof *g);
    if (g == NULL)
        return CAIRN_E_NOMEM;
    g->level = level;
    g->sink = sink;
    g->arg = arg;
    g->crc = crc32(0L, Z_NULL, 0);
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
        struct pgz_worker *wk = &g->workers[i];
        wk->g = g;
        g->nworkers = i + 1;
        /* windowBits -15: raw deflate; the gzip wrapper is ours. */
        if (deflateInit2(&wk->z, level, Z_DEFLATED, -15, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            rc = CAIRN_E_NOMEM;
            goto fail;
        }
        wk->z_live = true;
        if (deflateInit2(&wk->probe, 1, Z_DEFLATED, -15, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            rc = CAIRN_E_NOMEM;
            goto fail;
        }
        wk->probe_live = true;
    }
    size_t bound = deflateBound(&g->workers[0].z, LAYER_PGZIP_BLOCK) + 64;
    for (size_t i = 0; i < g->nslots; i++) {
        g->slots[i].in = malloc(LAYER_PGZIP_BLOCK);
        g->slots[i].out = malloc(bound);
        g->slots[i].out_cap = bound;
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
