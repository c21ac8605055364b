/* Reading protobuf wire format in place, over the pieces a message arrived
 * in (gRPC hands a received message over as a list of slices).
 *
 * For the two hot paths where unpacking with protobuf-c costs more than the
 * work itself: ByteStream WriteRequest, whose data field (1 MiB) would be
 * copied twice to be made contiguous and unpacked, and the digests of a
 * stored ActionResult, read on every GetActionResult. Everything else uses
 * protobuf-c.
 *
 * A struct cd_wire is a window of `left` bytes starting at piece i, offset
 * off. It borrows the pieces (and their bytes) from the caller; copying a
 * struct cd_wire is how a position is remembered. Every read checks the
 * window's bounds; a varint longer than 10 bytes, a length past the
 * window, a key or length prefix over 5 bytes (as protobuf-c, which decodes
 * every other message), a group or an unknown wire type is malformed
 * (-1). Pure
 * functions over caller memory; thread-safe. */
#ifndef CAIRN_SERVER_WIRE_H
#define CAIRN_SERVER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CD_WIRE_VARINT 0
#define CD_WIRE_FIXED64 1
#define CD_WIRE_LEN 2
#define CD_WIRE_FIXED32 5

/* One piece of a message. */
struct cd_iov {
    const uint8_t *p;
    size_t n;
};

struct cd_wire {
    const struct cd_iov *v;
    size_t nv;
    size_t i;    /* current piece */
    size_t off;  /* offset in it */
    size_t left; /* bytes left in this window */
};

/* A window over all nv pieces. */
void cd_wire_init(struct cd_wire *w, const struct cd_iov *v, size_t nv);

static inline bool cd_wire_more(const struct cd_wire *w)
{
    return w->left > 0;
}

/* Reads a varint. Returns 0 or -1. */
int cd_wire_varint(struct cd_wire *w, uint64_t *v);
/* Reads a field key: field number (1 .. 2^29-1) and wire type. */
int cd_wire_key(struct cd_wire *w, uint32_t *field, uint32_t *type);
/* Reads a length prefix and returns the next that many bytes as *sub;
 * w moves past them. */
int cd_wire_len(struct cd_wire *w, struct cd_wire *sub);
/* Skips a value of wire type type. */
int cd_wire_skip(struct cd_wire *w, uint32_t type);
/* Copies the next n bytes to dst. Returns 0 or -1 (fewer are left). */
int cd_wire_copy(struct cd_wire *w, void *dst, size_t n);
/* Calls fn(ctx, p, n) for each contiguous run of the bytes left in w, in
 * order; stops at the first non-zero return and returns it. */
int cd_wire_each(struct cd_wire w, int (*fn)(void *ctx, const uint8_t *p, size_t n), void *ctx);

#endif
