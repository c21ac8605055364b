#include "server/reapi/writereq.h"

#include <string.h>

/* Field numbers (proto/google/bytestream/bytestream.proto). */
#define WR_RESOURCE_NAME 1
#define WR_WRITE_OFFSET 2
#define WR_FINISH_WRITE 3
#define WR_DATA 10

static int writereq_has_nul(void *ctx, const uint8_t *p, size_t n)
{
    (void)ctx;
    return memchr(p, '\0', n) != NULL;
}

int cd_write_req_parse(const struct cd_iov *v, size_t nv, struct cd_write_req *out,
                       struct cairn_err *err)
{
    struct cd_wire w, data = {NULL, 0, 0, 0, 0}, name = {NULL, 0, 0, 0, 0};
    cd_wire_init(&w, v, nv);
    uint64_t offset = 0, finish = 0;
    while (cd_wire_more(&w)) {
        uint32_t f, t;
        int rc;
        if (cd_wire_key(&w, &f, &t) != 0)
            goto malformed;
        if (f == WR_RESOURCE_NAME && t == CD_WIRE_LEN)
            rc = cd_wire_len(&w, &name);
        else if (f == WR_WRITE_OFFSET && t == CD_WIRE_VARINT)
            rc = cd_wire_varint(&w, &offset);
        else if (f == WR_FINISH_WRITE && t == CD_WIRE_VARINT)
            rc = cd_wire_varint(&w, &finish);
        else if (f == WR_DATA && t == CD_WIRE_LEN)
            rc = cd_wire_len(&w, &data);
        else if (f == WR_RESOURCE_NAME || f == WR_WRITE_OFFSET || f == WR_FINISH_WRITE ||
                 f == WR_DATA)
            rc = -1; /* a known field with the wrong wire type */
        else
            rc = cd_wire_skip(&w, t);
        if (rc != 0)
            goto malformed;
    }
    if (name.left > CD_MAX_RESOURCE_NAME)
        return cairn_err_set(err, CAIRN_E_INVAL, "resource_name is longer than %d bytes",
                             CD_MAX_RESOURCE_NAME);
    if (cd_wire_each(name, writereq_has_nul, NULL) != 0)
        return cairn_err_set(err, CAIRN_E_PARSE, "malformed WriteRequest: NUL in resource_name");
    /* Copied only now: a name sent twice is copied once, and out stays
     * untouched on failure. */
    size_t n = name.left;
    if (cd_wire_copy(&name, out->name, n) != 0)
        goto malformed;
    out->name[n] = '\0';
    out->offset = (int64_t)offset;
    out->finish = finish != 0;
    out->data = data;
    return 0;
malformed:
    return cairn_err_set(err, CAIRN_E_PARSE,
                         "malformed WriteRequest: not a valid protobuf message");
}
