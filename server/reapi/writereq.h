/* ByteStream WriteRequest, read in place over the pieces a message arrived
 * in (server/reapi/wire.h): the one decoder of Write messages, used by the
 * Write handler (server/reapi/bytestream.c) and by tests/fuzz/fuzz_wire.c.
 *
 * The data field is not copied: it is returned as a window over the
 * caller's pieces, which the handler feeds to the upload slice by slice.
 * Like protobuf, the last occurrence of a field wins; unknown fields are
 * skipped. Pure function over caller memory; thread-safe. */
#ifndef CAIRN_SERVER_WRITEREQ_H
#define CAIRN_SERVER_WRITEREQ_H

#include "common/error.h"
#include "server/reapi/resource.h"
#include "server/reapi/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cd_write_req {
    char name[CD_MAX_RESOURCE_NAME + 1]; /* resource_name; "" when unset */
    int64_t offset;                      /* write_offset */
    bool finish;                         /* finish_write */
    struct cd_wire data; /* the bytes of data, borrowed from the pieces
                          * (valid while they are); empty when unset */
};

/* Decodes the message made of the nv pieces v (empty pieces allowed).
 * Returns 0 with *out filled, CAIRN_E_PARSE (not a valid WriteRequest:
 * bad varint, length past the end, wrong wire type for a known field, a
 * group, a NUL in resource_name) or CAIRN_E_INVAL (resource_name longer
 * than CD_MAX_RESOURCE_NAME); err says which. *out is written only on
 * success. */
int cd_write_req_parse(const struct cd_iov *v, size_t nv, struct cd_write_req *out,
                       struct cairn_err *err);

#endif
