/* The blobs a serialised ActionResult references: the digests of its
 * output files, output directory trees and stdout/stderr, read straight
 * off the protobuf wire format (no unpacking, no allocation for the usual
 * handful). The ActionCache checks them at update (refusing malformed
 * digests) and at every lookup (a hit needs every blob in the CAS).
 * Not thread-safe per struct; separate structs are independent. */
#ifndef CAIRN_SERVER_ACREFS_H
#define CAIRN_SERVER_ACREFS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "server/reapi/resource.h"

/* Upper bound on blobs one result may reference; results come from
 * clients, so this is capped like all input. */
#define CD_ACREFS_MAX 100000
/* References kept without allocating (a layer result has one or two). */
#define CD_ACREFS_INLINE 8

/* The digests found, in wire order. d points at inline_d or the heap;
 * both are owned by the struct until cd_acrefs_free. */
struct cd_acrefs {
    struct cd_digest *d;
    size_t n, cap;
    struct cd_digest inline_d[CD_ACREFS_INLINE];
};

/* Empties r (no allocation). Call before the first scan. */
void cd_acrefs_init(struct cd_acrefs *r);
/* Frees what r allocated and empties it. */
void cd_acrefs_free(struct cd_acrefs *r);

/* Appends to r the digests p[0..len) references. A field repeated inside
 * a Digest takes its last value, as protobuf does; fields cairnd does not
 * know are skipped. Returns 0; CAIRN_E_INVAL for malformed input or a bad
 * digest (err names the output by its path); CAIRN_E_TOOBIG past
 * CD_ACREFS_MAX references; CAIRN_E_NOMEM. On failure r may hold the
 * digests read before the bad one. */
int cd_acrefs_scan(const uint8_t *p, size_t len, struct cd_acrefs *r,
                   struct cairn_err *err);

#endif
