/* The reader of cairn's own gzip layers (client/store/layer_gunzip.c): a
 * blob in the member layout of client/store/layer_gzm.h, inflated whole
 * member by whole member on several threads with libdeflate and handed
 * back in order. Private to client/store/layer_read.c, whose blob reader
 * keeps both hashes and the raw reads; blobs without the layout (a
 * registry's, an old store's, zstd) never come here.
 *
 * Memory is bounded: a fixed ring of slots (a few per thread), each one
 * member in (at most LAYER_GUNZIP_MEMBER_MAX bytes) and one block out.
 * Every member is checked whole: its header, its size field against the
 * cap, the deflate data ending exactly where the size says, ISIZE and the
 * CRC-32. Any failure is CAIRN_E_CORRUPT with a sentence naming the
 * member's offset, and sticky. */
#ifndef CAIRN_CLIENT_STORE_LAYER_GUNZIP_H
#define CAIRN_CLIENT_STORE_LAYER_GUNZIP_H

#include "client/store/layer_gzm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest member a reader accepts: a header, a trailer and deflate
 * data for one block. Deflate's stored blocks cost 5 bytes per 64 KiB, and
 * the most pessimistic bound any deflate compressor promises (zlib's
 * deflateBound with non-default parameters) is under an eighth more than
 * its input: a quarter more is room to spare, and still a small cap on
 * what a lying size field can make us allocate or wait for. */
#define LAYER_GUNZIP_MEMBER_MAX                                                \
    (LAYER_GZM_HEAD + LAYER_GZM_BLOCK + LAYER_GZM_BLOCK / 4 + LAYER_GZM_TRAILER)
/* The most threads a reader starts, whatever it is asked for. */
#define LAYER_GUNZIP_MAX_THREADS 64

struct layer_gunzip;

/* Whether the n bytes at p begin with a member header of the layout (the
 * fixed bytes; not the size field, which the reader checks). Needs n >=
 * LAYER_GZM_HEAD to say yes. */
bool layer_gunzip_detect(const uint8_t *p, size_t n);

/* A reader inflating on threads threads in all (1..LAYER_GUNZIP_MAX_THREADS,
 * larger is clamped): the caller's thread, which helps while it waits, and
 * up to threads - 1 workers (a worker that cannot start leaves its share
 * to the others). *out owns them; free with layer_gunzip_free. Returns 0,
 * CAIRN_E_INVAL or CAIRN_E_NOMEM. */
int layer_gunzip_new(unsigned threads, struct layer_gunzip **out);

/* Takes up to n bytes of the blob, in order, from the caller's buffer
 * (copied; p is borrowed for the call only). *used says how many were
 * taken: fewer than n when every slot is full, and then the caller takes
 * output with layer_gunzip_next before feeding the rest. A member that is
 * complete goes to the workers (started with the second member). Returns
 * 0, CAIRN_E_CORRUPT (a header out of the layout, a size field out of
 * bounds) or CAIRN_E_NOMEM (a slot's buffers, allocated at first use). */
int layer_gunzip_feed(struct layer_gunzip *g, const uint8_t *p, size_t n,
                      size_t *used);

/* The next block of inflated bytes, in blob order, waiting for (or doing)
 * its inflation. *n == 0 when no complete member is left to hand out:
 * feed more, or call layer_gunzip_end at the end of the blob. *p is
 * borrowed until the next call on g. Returns 0 or CAIRN_E_CORRUPT (a bad
 * member). */
int layer_gunzip_next(struct layer_gunzip *g, const uint8_t **p, size_t *n);

/* The blob ended: fails (CAIRN_E_CORRUPT) if it ended inside a member.
 * Call after layer_gunzip_next returned *n == 0. */
int layer_gunzip_end(struct layer_gunzip *g);

/* The sentence for the last failure ("" if none); borrowed from g. */
const char *layer_gunzip_error(const struct layer_gunzip *g);

/* Stops the workers (waiting for a member in flight) and frees
 * everything; NULL is fine. */
void layer_gunzip_free(struct layer_gunzip *g);

#endif
