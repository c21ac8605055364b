/* Parallel deterministic gzip in cairn's member layout
 * (client/store/layer_pgzip.h, client/store/layer_gzm.h).
 *
 * A ring of slots holds blocks on their way: the caller fills the slot of
 * block `fill`, workers turn blocks into whole gzip members in sequence
 * (`work`), and the caller hands finished members to the sink in sequence
 * (`emit`), so emit <= work <= fill and at most nslots blocks are in
 * flight. One mutex guards the counters and slot states; block data is
 * touched only by the side that owns the slot in its current state.
 *
 * A block ends at LAYER_GZM_BLOCK bytes or at a cut the caller asked for
 * (layer_pgzip_cut_at), whichever comes first; the cuts wait in a queue
 * until the input reaches them. With reuse on, a worker hashes its block
 * and, when an earlier blob holds the same member, copies that member
 * after checking it, instead of deflating. */
#include "client/store/layer_pgzip.h"

#include "cachekey/digest.h"
#include "common/error.h"

#include <fcntl.h>
#include <libdeflate.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    bool keyed;  /* key holds the member's key (reuse on, big enough) */
    bool reused; /* out came from an earlier blob */
    uint8_t key[LAYER_PGZIP_KEY_LEN];
};

struct pgz_cut {
    uint64_t off;
    size_t min;
};

struct pgz_worker {
    struct layer_pgzip *g;
    struct libdeflate_compressor *deflate; /* at the level */
    struct libdeflate_compressor *store;   /* level 0 */
    struct libdeflate_compressor *probe;   /* level 1 */
    uint8_t probe_in[PGZ_PROBES * PGZ_PROBE];
    uint8_t *probe_out;
    size_t probe_cap;
    /* reuse only: the member key's hash, and inflating a candidate */
    struct ck_sha256 *hash;
    struct libdeflate_decompressor *inflate;
    uint8_t *check; /* LAYER_GZM_BLOCK bytes */
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
    uint64_t in_pos; /* input bytes taken so far */
    struct pgz_cut cuts[LAYER_PGZIP_MAX_CUTS]; /* a ring, in offset order */
    size_t cut_head, cut_n;
    uint64_t cut_last; /* the last offset queued */
    bool reuse_on;
    struct layer_pgzip_reuse reuse;
    uint8_t tag[LAYER_PGZIP_KEY_LEN]; /* the codec tag of the keys */
    uint64_t out_pos; /* output bytes emitted so far */
    struct layer_pgzip_member *recs;
    size_t nrecs, caprecs;
    size_t reused;
};

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* The fixed part of every member header (client/store/layer_gzm.h); the
 * member's size follows. */
static const uint8_t gzm_head[LAYER_GZM_HEAD - 4] = {
    0x1f, 0x8b, 8,    4, 0, 0, 0, 0, 0, 0xff, /* FLG FEXTRA, OS 255 */
    8,    0,                                  /* XLEN */
    LAYER_GZM_SI1, LAYER_GZM_SI2, 4, 0};     /* subfield, LEN 4 */

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
                        size_t out_cap, bool compresses)
{
    struct libdeflate_compressor *c = compresses ? wk->deflate : wk->store;
    size_t room = out_cap - LAYER_GZM_HEAD - LAYER_GZM_TRAILER;
    size_t n = libdeflate_deflate_compress(c, s->in, s->in_len,
                                           s->out + LAYER_GZM_HEAD, room);
    if (n == 0)
        return CAIRN_E_IO;
    size_t total = LAYER_GZM_HEAD + n + LAYER_GZM_TRAILER;
    memcpy(s->out, gzm_head, sizeof gzm_head);
    put_le32(s->out + sizeof gzm_head, (uint32_t)total);
    uint8_t *t = s->out + LAYER_GZM_HEAD + n;
    put_le32(t, libdeflate_crc32(0, s->in, s->in_len));
    put_le32(t + 4, (uint32_t)s->in_len);
    s->out_len = total;
    return 0;
}

/* Whether the candidate the finder named for s's key is, byte for byte,
 * the member deflating s would make; when it is, s->out holds it. The
 * table only ever names members this program deflated (with the same
 * codec tag), so a candidate that carries the layout's exact header and
 * size and inflates to exactly s's bytes with the right CRC-32 and ISIZE
 * is that member; anything else (a blob pruned or rewritten since, a
 * wrong offset, a short file) is refused and s is deflated. */
static bool slot_reuse(struct pgz_slot *s, struct pgz_worker *wk,
                       size_t out_cap, uint32_t crc)
{
    const struct layer_pgzip_reuse *r = &wk->g->reuse;
    char path[4096];
    uint64_t off = 0;
    uint32_t size = 0;
    if (r->find(r->arg, s->key, path, sizeof path, &off, &size) != 0 ||
        memchr(path, '\0', sizeof path) == NULL)
        return false;
    if (size < LAYER_GZM_HEAD + LAYER_GZM_TRAILER || size > out_cap ||
        off > (uint64_t)INT64_MAX - size)
        return false;
    /* O_NONBLOCK and the type check: whatever sits at the path (a FIFO
     * put there by hand), reading it never blocks the layer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return false;
    struct stat st;
    bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    size_t got = 0;
    while (regular && got < size) {
        ssize_t k = pread(fd, s->out + got, size - got, (off_t)(off + got));
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    const uint8_t *t = s->out + size - LAYER_GZM_TRAILER;
    if (got != size || memcmp(s->out, gzm_head, sizeof gzm_head) != 0 ||
        get_le32(s->out + sizeof gzm_head) != size || get_le32(t) != crc ||
        get_le32(t + 4) != (uint32_t)s->in_len)
        return false;
    size_t dlen = size - LAYER_GZM_HEAD - LAYER_GZM_TRAILER, in_used = 0,
           out_got = 0;
    if (libdeflate_deflate_decompress_ex(
            wk->inflate, s->out + LAYER_GZM_HEAD, dlen, wk->check,
            LAYER_GZM_BLOCK, &in_used, &out_got) != LIBDEFLATE_SUCCESS ||
        in_used != dlen || out_got != s->in_len ||
        memcmp(wk->check, s->in, s->in_len) != 0)
        return false;
    s->out_len = size;
    return true;
}

/* Makes s's member: from an earlier blob when reuse is on and one checks
 * out, else by deflating. A block that will be stored is neither hashed
 * nor recorded: storing it costs less than hashing it. A hashing failure
 * only costs the reuse. */
static int slot_make(struct pgz_slot *s, struct pgz_worker *wk, size_t out_cap)
{
    struct layer_pgzip *g = wk->g;
    s->keyed = false;
    s->reused = false;
    bool compresses = slot_compresses(s, wk);
    if (compresses && g->reuse_on && s->in_len >= LAYER_PGZIP_REUSE_MIN &&
        ck_sha256_update(wk->hash, g->tag, sizeof g->tag) == 0 &&
        ck_sha256_update(wk->hash, s->in, s->in_len) == 0 &&
        ck_sha256_final(wk->hash, s->key) == 0) {
        s->keyed = true;
        uint32_t crc = libdeflate_crc32(0, s->in, s->in_len);
        if (slot_reuse(s, wk, out_cap, crc)) {
            s->reused = true;
            return 0;
        }
    }
    return slot_deflate(s, wk, out_cap, compresses);
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
        int rc = slot_make(s, wk, g->out_cap);
        pthread_mutex_lock(&g->mu);
        s->rc = rc;
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&g->done_cv);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* Remembers an emitted member for the caller (layer_pgzip_members). Out
 * of memory only stops the recording: the output does not depend on it. */
static void member_record(struct layer_pgzip *g, const struct pgz_slot *s)
{
    if (s->reused)
        g->reused++;
    if (s->keyed && g->nrecs == g->caprecs && g->caprecs != SIZE_MAX) {
        size_t cap = g->caprecs ? 2 * g->caprecs : 64;
        void *p = realloc(g->recs, cap * sizeof *g->recs);
        if (p != NULL) {
            g->recs = p;
            g->caprecs = cap;
        } else {
            g->caprecs = SIZE_MAX; /* stop trying */
        }
    }
    if (s->keyed && g->nrecs < g->caprecs && g->caprecs != SIZE_MAX) {
        struct layer_pgzip_member *m = &g->recs[g->nrecs++];
        memcpy(m->key, s->key, sizeof m->key);
        m->offset = g->out_pos;
        m->size = (uint32_t)s->out_len;
    }
    g->out_pos += s->out_len;
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
    if (rc == 0)
        member_record(g, s);
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

int layer_pgzip_cut_at(struct layer_pgzip *g, uint64_t offset, size_t min)
{
    if (offset < g->in_pos || (g->cut_n > 0 && offset < g->cut_last))
        return CAIRN_E_INVAL;
    if (g->cut_n == LAYER_PGZIP_MAX_CUTS)
        return 0;
    struct pgz_cut *c =
        &g->cuts[(g->cut_head + g->cut_n) % LAYER_PGZIP_MAX_CUTS];
    c->off = offset;
    c->min = min ? min : 1;
    g->cut_n++;
    g->cut_last = offset;
    return 0;
}

/* Whether the member being filled (len bytes) ends here, at in_pos:
 * takes the cuts the input has reached off the queue. */
static bool cut_due(struct layer_pgzip *g, size_t len)
{
    bool cut = false;
    while (g->cut_n > 0 && g->cuts[g->cut_head].off <= g->in_pos) {
        const struct pgz_cut *c = &g->cuts[g->cut_head];
        if (c->off == g->in_pos && len >= c->min)
            cut = true;
        g->cut_head = (g->cut_head + 1) % LAYER_PGZIP_MAX_CUTS;
        g->cut_n--;
    }
    return cut;
}

int layer_pgzip_write(struct layer_pgzip *g, const void *p, size_t n)
{
    if (g->broken)
        return g->broken;
    const uint8_t *b = p;
    while (n > 0) {
        struct pgz_slot *s = &g->slots[g->fill % g->nslots];
        /* A member is dispatched only once more input arrives, so the
         * last one (which layer_pgzip_finish dispatches) is never empty
         * unless the whole input is. */
        bool cut = cut_due(g, s->in_len);
        if (s->in_len == LAYER_GZM_BLOCK || (cut && s->in_len > 0)) {
            int rc = dispatch(g);
            if (rc != 0)
                return g->broken = rc;
            s = &g->slots[g->fill % g->nslots];
        }
        size_t k = LAYER_GZM_BLOCK - s->in_len;
        if (k > n)
            k = n;
        if (g->cut_n > 0 && g->cuts[g->cut_head].off - g->in_pos < k)
            k = (size_t)(g->cuts[g->cut_head].off - g->in_pos);
        memcpy(s->in + s->in_len, b, k);
        s->in_len += k;
        g->in_pos += k;
        b += k;
        n -= k;
    }
    return 0;
}

static int pgz_tag(int level, uint8_t tag[LAYER_PGZIP_KEY_LEN]);

int layer_pgzip_reuse_set(struct layer_pgzip *g,
                          const struct layer_pgzip_reuse *r)
{
    if (r == NULL || r->find == NULL || g->in_pos > 0)
        return CAIRN_E_INVAL;
    int rc = pgz_tag(g->level, g->tag);
    for (unsigned i = 0; rc == 0 && i < g->nworkers; i++) {
        struct pgz_worker *wk = &g->workers[i];
        if (wk->hash != NULL)
            continue;
        wk->inflate = libdeflate_alloc_decompressor();
        wk->check = malloc(LAYER_GZM_BLOCK);
        if (wk->inflate == NULL || wk->check == NULL)
            rc = CAIRN_E_NOMEM;
        else
            rc = ck_sha256_new(&wk->hash);
    }
    if (rc != 0)
        return rc;
    /* The workers read reuse only for blocks dispatched from now on, under
     * the mutex's ordering. */
    pthread_mutex_lock(&g->mu);
    g->reuse = *r;
    g->reuse_on = true;
    pthread_mutex_unlock(&g->mu);
    return 0;
}

void layer_pgzip_members(const struct layer_pgzip *g,
                         const struct layer_pgzip_member **v, size_t *n,
                         size_t *reused)
{
    *v = g->recs;
    *n = g->nrecs;
    *reused = g->reused;
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
        ck_sha256_free(wk->hash);
        libdeflate_free_decompressor(wk->inflate);
        free(wk->check);
    }
    for (size_t i = 0; g->slots != NULL && i < g->nslots; i++) {
        free(g->slots[i].in);
        free(g->slots[i].out);
    }
    free(g->slots);
    free(g->workers);
    free(g->recs);
    pthread_cond_destroy(&g->work_cv);
    pthread_cond_destroy(&g->done_cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* The codec tag that starts every member key: libdeflate's version and
 * the level, and what libdeflate makes here of a fixed sample at that
 * level, at level 0 and at the probe's level 1. A libdeflate that writes
 * other bytes (a new version under the same header, another build) gets
 * other keys, so a member deflated by one is never taken as what the
 * other would write. */
static int pgz_tag(int level, uint8_t tag[LAYER_PGZIP_KEY_LEN])
{
    enum { SAMPLE = 8192 };
    uint8_t *in = malloc(SAMPLE), *out = NULL;
    struct ck_sha256 *h = NULL;
    int rc = in == NULL ? CAIRN_E_NOMEM : ck_sha256_new(&h);
    char head[64];
    int hn = snprintf(head, sizeof head, "cairn-gzm 1 libdeflate %s level %d",
                      LIBDEFLATE_VERSION_STRING, level);
    if (rc == 0)
        rc = ck_sha256_update(h, head, (size_t)hn);
    if (rc == 0) {
        uint32_t x = 0x9e3779b9u;
        for (size_t i = 0; i < SAMPLE; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            /* half text, half noise: both of deflate's paths */
            in[i] = i < SAMPLE / 2 ? (uint8_t)("tag sample "[i % 11] + (x & 1))
                                   : (uint8_t)x;
        }
    }
    const int levels[] = {level, 0, 1};
    for (size_t i = 0; rc == 0 && i < sizeof levels / sizeof levels[0]; i++) {
        struct libdeflate_compressor *c = libdeflate_alloc_compressor(levels[i]);
        size_t cap = c ? libdeflate_deflate_compress_bound(c, SAMPLE) : 0;
        free(out);
        out = c ? malloc(cap) : NULL;
        size_t n = out ? libdeflate_deflate_compress(c, in, SAMPLE, out, cap) : 0;
        libdeflate_free_compressor(c);
        rc = n == 0 ? CAIRN_E_NOMEM : ck_sha256_update(h, out, n);
    }
    if (rc == 0)
        rc = ck_sha256_final(h, tag);
    ck_sha256_free(h);
    free(in);
    free(out);
    return rc;
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
