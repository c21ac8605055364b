#include "server/reapi/wire.h"

#include <string.h>

void cd_wire_init(struct cd_wire *w, const struct cd_iov *v, size_t nv)
{
    w->v = v;
    w->nv = nv;
    w->i = 0;
    w->off = 0;
    w->left = 0;
    for (size_t k = 0; k < nv; k++)
        w->left += v[k].n;
}

/* Moves past n bytes (n <= w->left). Empty pieces are stepped over here,
 * so readers always find a byte at (i, off) when left > 0. */
static void wire_advance(struct cd_wire *w, size_t n)
{
    w->left -= n;
    while (w->i < w->nv) {
        size_t here = w->v[w->i].n - w->off;
        if (n < here || (n == here && w->left == 0)) {
            w->off += n;
            return;
        }
        n -= here;
        w->i++;
        w->off = 0;
    }
}

static void wire_settle(struct cd_wire *w)
{
    while (w->left > 0 && w->i < w->nv && w->off == w->v[w->i].n) {
        w->i++;
        w->off = 0;
    }
}

int cd_wire_varint(struct cd_wire *w, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        wire_settle(w);
        if (w->left == 0 || w->i >= w->nv)
            return -1;
        uint8_t b = w->v[w->i].p[w->off];
        wire_advance(w, 1);
        if (shift == 63 && b > 1)
            return -1; /* more than 64 bits */
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

int cd_wire_key(struct cd_wire *w, uint32_t *field, uint32_t *type)
{
    uint64_t k;
    size_t before = w->left;
    if (cd_wire_varint(w, &k) != 0 || (k >> 3) == 0 || (k >> 3) > 0x1fffffff)
        return -1;
    /* A key fits in 5 bytes; protobuf-c refuses longer (padded) ones. */
    if (before - w->left > 5)
        return -1;
    *field = (uint32_t)(k >> 3);
    *type = (uint32_t)(k & 7);
    return 0;
}

int cd_wire_len(struct cd_wire *w, struct cd_wire *sub)
{
    uint64_t n;
    size_t before = w->left;
    if (cd_wire_varint(w, &n) != 0 || n > w->left)
        return -1;
    /* Lengths are 32-bit in protobuf, and protobuf-c (which decodes every
     * other message we receive) refuses a length prefix over 5 bytes even
     * when it is a padded small number. Refusing it here too keeps the
     * in-place decoder from accepting what protobuf-c would not (found by
     * tests/fuzz/fuzz_wire.c). */
    if (before - w->left > 5 || n > UINT32_MAX)
        return -1;
    wire_settle(w);
    *sub = *w;
    sub->left = (size_t)n;
    wire_advance(w, (size_t)n);
    return 0;
}

int cd_wire_skip(struct cd_wire *w, uint32_t type)
{
    uint64_t v;
    struct cd_wire sub;
    switch (type) {
    case CD_WIRE_VARINT:
        return cd_wire_varint(w, &v);
    case CD_WIRE_FIXED64:
    case CD_WIRE_FIXED32: {
        size_t n = type == CD_WIRE_FIXED64 ? 8 : 4;
        if (w->left < n)
            return -1;
        wire_advance(w, n);
        return 0;
    }
    case CD_WIRE_LEN:
        return cd_wire_len(w, &sub);
    default:
        return -1; /* groups (3, 4) and the reserved types */
    }
}

int cd_wire_copy(struct cd_wire *w, void *dst, size_t n)
{
    if (n > w->left)
        return -1;
    uint8_t *d = dst;
    while (n > 0) {
        wire_settle(w);
        size_t here = w->v[w->i].n - w->off;
        size_t take = here < n ? here : n;
        memcpy(d, w->v[w->i].p + w->off, take);
        wire_advance(w, take);
        d += take;
        n -= take;
    }
    return 0;
}

int cd_wire_each(struct cd_wire w, int (*fn)(void *ctx, const uint8_t *p, size_t n), void *ctx)
{
    while (w.left > 0) {
        wire_settle(&w);
        size_t here = w.v[w.i].n - w.off;
        size_t take = here < w.left ? here : w.left;
        int rc = fn(ctx, w.v[w.i].p + w.off, take);
        if (rc != 0)
            return rc;
        wire_advance(&w, take);
    }
    return 0;
}
