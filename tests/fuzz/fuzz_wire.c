/* Fuzz target for server/wire and server/writereq: a protobuf message cut
 * into pieces at fuzzer-chosen points (empty pieces included), decoded the
 * way the Write handler decodes what gRPC received (cd_write_req_parse
 * over the pieces), must decode exactly as the same bytes in one piece,
 * and whatever it accepts protobuf-c must accept with the same fields.
 * A generic walk over every field (as the ActionResult scanner reads
 * digests) must also not depend on the split. Any mismatch aborts.
 *
 * Input: byte 0 is the number of cuts (mod 16), the next bytes (two per
 * cut, little endian) the cut positions, taken modulo the message length
 * and sorted; the rest is the message. */
#include "google/bytestream/bytestream.pb-c.h"
#include "server/reapi/wire.h"
#include "server/reapi/writereq.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_CUTS 15
#define FUZZ_WALK_DEPTH 4

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* The bytes of a window, copied out (caller frees). */
static uint8_t *flatten(struct cd_wire w)
{
    uint8_t *p = malloc(w.left ? w.left : 1);
    if (p == NULL || cd_wire_copy(&w, p, w.left) != 0)
        abort();
    return p;
}

/* Folds every field into *sum, descending into length-delimited values
 * that parse as messages. Returns -1 when malformed at the top level. */
static int walk(struct cd_wire w, int depth, uint64_t *sum)
{
    while (cd_wire_more(&w)) {
        uint32_t f, t;
        uint64_t x = 0;
        struct cd_wire sub;
        if (cd_wire_key(&w, &f, &t) != 0)
            return -1;
        *sum = *sum * 31 + f * 8 + t;
        if (t == CD_WIRE_VARINT) {
            if (cd_wire_varint(&w, &x) != 0)
                return -1;
        } else if (t == CD_WIRE_LEN) {
            if (cd_wire_len(&w, &sub) != 0)
                return -1;
            x = sub.left;
            uint64_t inner = 0;
            if (depth > 0 && walk(sub, depth - 1, &inner) == 0)
                x = x * 131 + inner;
        } else if (cd_wire_skip(&w, t) != 0) {
            return -1;
        }
        *sum = *sum * 31 + x;
    }
    return 0;
}

static void check_write_req(const struct cd_iov *v, size_t nv, const uint8_t *msg, size_t len)
{
    static struct cd_write_req split, whole;
    struct cairn_err err;
    struct cd_iov one = {msg, len};
    int rc_split = cd_write_req_parse(v, nv, &split, &err);
    int rc_whole = cd_write_req_parse(&one, 1, &whole, &err);
    if (rc_split != rc_whole)
        abort();
    if (rc_whole != 0)
        return;
    if (strcmp(split.name, whole.name) != 0 || split.offset != whole.offset ||
        split.finish != whole.finish || split.data.left != whole.data.left)
        abort();
    uint8_t *a = flatten(split.data), *b = flatten(whole.data);
    if (memcmp(a, b, whole.data.left) != 0)
        abort();
    /* Accepted by us: protobuf-c must agree on every field. */
    Google__Bytestream__WriteRequest *pb = google__bytestream__write_request__unpack(NULL, len, msg);
    if (pb == NULL)
        abort();
    const char *pbname = pb->resource_name ? pb->resource_name : "";
    if (strcmp(pbname, whole.name) != 0 || pb->write_offset != whole.offset ||
        (pb->finish_write != 0) != whole.finish || pb->data.len != whole.data.left ||
        (pb->data.len > 0 && memcmp(pb->data.data, b, pb->data.len) != 0))
        abort();
    google__bytestream__write_request__free_unpacked(pb, NULL);
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    size_t ncuts = data[0] % (FUZZ_MAX_CUTS + 1);
    if (size < 1 + 2 * ncuts)
        return 0;
    const uint8_t *msg = data + 1 + 2 * ncuts;
    size_t len = size - 1 - 2 * ncuts;
    size_t cuts[FUZZ_MAX_CUTS];
    for (size_t i = 0; i < ncuts; i++) {
        size_t c = (size_t)data[1 + 2 * i] | (size_t)data[2 + 2 * i] << 8;
        cuts[i] = len ? c % (len + 1) : 0;
    }
    qsort(cuts, ncuts, sizeof *cuts, cmp_size);
    /* Each piece is its own allocation, so ASan sees a read past a
     * piece's end even when the next piece follows in the input. */
    struct cd_iov v[FUZZ_MAX_CUTS + 1];
    uint8_t *pieces[FUZZ_MAX_CUTS + 1];
    size_t nv = 0, at = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        size_t n = end - at;
        pieces[nv] = malloc(n ? n : 1);
        if (pieces[nv] == NULL)
            abort();
        memcpy(pieces[nv], msg + at, n);
        v[nv] = (struct cd_iov){n ? pieces[nv] : NULL, n};
        nv++;
        at = end;
    }

    struct cd_wire ws, ww;
    struct cd_iov one = {msg, len};
    cd_wire_init(&ws, v, nv);
    cd_wire_init(&ww, &one, 1);
    uint64_t sum_split = 0, sum_whole = 0;
    int rc_split = walk(ws, FUZZ_WALK_DEPTH, &sum_split);
    int rc_whole = walk(ww, FUZZ_WALK_DEPTH, &sum_whole);
    if (rc_split != rc_whole || (rc_whole == 0 && sum_split != sum_whole))
        abort();
    check_write_req(v, nv, msg, len);

    for (size_t i = 0; i < nv; i++)
        free(pieces[i]);
    return 0;
}
