/* GET of a byte range, in parallel ranges delivered in order (s3.h).
 *
 * The range is cut in parts of part_size, at most `parallel` requested at
 * once. The part at the head of the range streams straight to the sink;
 * the ones after it fill a buffer each (at most parallel - 1 buffers of
 * part_size), handed to the sink when the head reaches them. A part may
 * start only while fewer than `parallel` parts are undelivered, so memory
 * stays bounded whatever order the answers come in. */
#include "server/s3/s3.h"

#include "server/s3/request.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Bookkeeping per part is small, but not unbounded. */
#define CD_S3_MAX_GET_PARTS (1u << 20)

struct part {
    char *buf; /* NULL until it needs one; only parts behind the head */
    size_t fill;
    bool done;
};

struct get {
    cd_s3_sink sink;
    void *ctx;
    struct part *parts;
    size_t n, head;
    unsigned window;
    size_t part_size;
    char **spare; /* buffers of delivered parts, for reuse */
    size_t nspare;
};

static int to_sink(struct get *g, const char *p, size_t n)
{
    return n ? g->sink(g->ctx, p, n) : 0;
}

static int on_part(struct cd_s3_req *r, const char *p, size_t n)
{
    struct get *g = r->ctx;
    struct part *pt = &g->parts[r->index];
    if (r->index == g->head)
        return to_sink(g, p, n);
    if (pt->buf == NULL) {
        pt->buf = g->nspare ? g->spare[--g->nspare] : malloc(g->part_size);
        if (pt->buf == NULL)
            return CAIRN_E_NOMEM;
    }
    /* on_write caps each part at its range, which is at most part_size. */
    memcpy(pt->buf + pt->fill, p, n);
    pt->fill += n;
    return 0;
}

static void release(struct get *g, struct part *pt)
{
    if (pt->buf != NULL) {
        g->spare[g->nspare++] = pt->buf;
        pt->buf = NULL;
    }
}

/* A part finished: move the head past every finished part, handing each
 * new head's buffered bytes to the sink. */
static int on_done(void *ctx, struct cd_s3_req *r)
{
    struct get *g = ctx;
    g->parts[r->index].done = true;
    while (g->head < g->n && g->parts[g->head].done) {
        release(g, &g->parts[g->head]);
        if (++g->head == g->n)
            break;
        struct part *next = &g->parts[g->head];
        int rc = to_sink(g, next->buf, next->fill);
        release(g, next);
        if (rc)
            return rc;
    }
    return 0;
}

static size_t limit(void *ctx)
{
    struct get *g = ctx;
    return g->head + g->window;
}

int cd_s3_get(struct cd_s3 *s3, const char *key, uint64_t offset,
              uint64_t len, cd_s3_sink sink, void *ctx,
              struct cairn_err *err)
{
    if (len == 0)
        return 0;
    if (offset > UINT64_MAX - len)
        return cairn_err_set(err, CAIRN_E_INVAL, "S3 GET %s: range overflows",
                             key);
    size_t psize = s3->part_size;
    uint64_t nparts = (len + psize - 1) / psize;
    if (nparts > CD_S3_MAX_GET_PARTS)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "S3 GET %s: %" PRIu64 " bytes in parts of %zu",
                             key, len, psize);
    struct get g = {.sink = sink, .ctx = ctx, .n = (size_t)nparts,
                    .window = s3->parallel, .part_size = psize};
    struct cd_s3_req *reqs = calloc(g.n, sizeof *reqs);
    struct cd_s3_req **order = calloc(g.n, sizeof *order);
    g.parts = calloc(g.n, sizeof *g.parts);
    g.spare = calloc(g.window + 1, sizeof *g.spare);
    size_t made = 0;
    int rc = 0;
    if (reqs == NULL || order == NULL || g.parts == NULL || g.spare == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "S3 GET %s", key);
        goto out;
    }
    for (; made < g.n; made++) {
        struct cd_s3_req *r = &reqs[made];
        rc = cd_s3_req_init(s3, r, "GET", key, NULL, err);
        if (rc) {
            made++;
            goto out;
        }
        r->range_start = offset + (uint64_t)made * psize;
        r->range_len = made + 1 < g.n ? psize : len - (uint64_t)made * psize;
        r->write = on_part;
        r->ctx = &g;
        r->index = (unsigned)made;
        order[made] = r;
    }
    struct cd_s3_batch_hooks hooks = {.limit = limit, .done = on_done,
                                      .ctx = &g};
    rc = cd_s3_batch_run(s3, order, g.n, g.window, &hooks, err);
out:
    for (size_t i = 0; i < made; i++)
        cd_s3_req_free(&reqs[i]);
    for (size_t i = 0; g.parts != NULL && i < g.n; i++)
        free(g.parts[i].buf);
    for (size_t i = 0; g.spare != NULL && i < g.nspare; i++)
        free(g.spare[i]);
    free(g.spare);
    free(g.parts);
    free(order);
    free(reqs);
    return rc;
}
