/* A gzip compressor that uses several cores and still writes the same bytes
 * whatever the number of threads (client/store/layer_pgzip.c; the reasons in
 * docs/build.md, "Compression"). Private to client/store/layer*.c.
 *
 * The output is the member layout of client/store/layer_gzm.h: the input is
 * cut into members at the offsets the caller names (layer_pgzip_cut_at)
 * and wherever a member reaches LAYER_GZM_BLOCK bytes, each deflated on
 * its own by libdeflate (no preset dictionary) and wrapped in a gzip
 * member whose header carries the member's size. The output depends only
 * on the input, the cut offsets, the level and libdeflate's version:
 * threads only change when each member is done, and a member taken from
 * an earlier blob (struct layer_pgzip_reuse) is used only when it is
 * byte for byte what deflating would make. */
#ifndef CAIRN_CLIENT_STORE_LAYER_PGZIP_H
#define CAIRN_CLIENT_STORE_LAYER_PGZIP_H

#include "client/store/layer_gzm.h"

#include <stddef.h>
#include <stdint.h>

#define LAYER_PGZIP_MAX_THREADS 64
/* Members shorter than this (uncompressed) are neither looked up nor
 * recorded: hashing and a lookup would cost about what deflating them
 * does. */
#define LAYER_PGZIP_REUSE_MIN ((size_t)16 << 10)
/* Cut offsets waiting for their input; more are ignored (a pure function
 * of the calls, so still deterministic). The layer writer has at most one
 * per 512-byte tar header of the block libarchive holds back. */
#define LAYER_PGZIP_MAX_CUTS 1024
#define LAYER_PGZIP_KEY_LEN 32
/* libdeflate's levels: 1 (fastest) .. 12 (smallest). */
#define LAYER_PGZIP_MAX_LEVEL 12

struct layer_pgzip;

/* Where earlier members may be found: find(arg, key, path, cap, &offset,
 * &size) names a file (path, NUL-terminated, at most cap bytes) holding,
 * at offset, a whole member of size bytes said to be the member whose
 * key is key (layer_pgzip_member.key). Returns 0, or anything else for
 * "not known" (never an error of the compressor). Called from the worker
 * threads at once: must be thread-safe. The candidate is read and checked
 * (header, size, CRC-32, ISIZE, and that it inflates to exactly the
 * member's bytes) before it is used; a candidate that fails any check is
 * ignored and the member deflated. */
struct layer_pgzip_reuse {
    int (*find)(void *arg, const uint8_t key[LAYER_PGZIP_KEY_LEN], char *path,
                size_t cap, uint64_t *offset, uint32_t *size);
    void *arg;
};

/* A member of the output worth remembering (at least
 * LAYER_PGZIP_REUSE_MIN bytes uncompressed, and deflated: a block the
 * probe stores is cheaper to store again than to hash): key is the SHA-256 of a
 * codec tag (libdeflate's version, the level, and a fingerprint of
 * libdeflate's output made at startup) followed by the member's
 * uncompressed bytes; offset and size place it in the output. */
struct layer_pgzip_member {
    uint8_t key[LAYER_PGZIP_KEY_LEN];
    uint64_t offset;
    uint32_t size;
};

/* Where finished output goes, in order, on the thread that called
 * layer_pgzip_write or layer_pgzip_finish. Returns 0 or a negative
 * errno / CAIRN_E_* code, which stops the compressor. */
typedef int (*layer_pgzip_sink)(void *arg, const void *p, size_t n);

/* A compressor at libdeflate level (1..LAYER_PGZIP_MAX_LEVEL) with threads
 * worker threads (1..LAYER_PGZIP_MAX_THREADS); sink(arg, ...) receives the
 * gzip bytes, one whole member per call. On success *out owns the threads;
 * free it with layer_pgzip_free. Returns 0, CAIRN_E_INVAL or CAIRN_E_NOMEM
 * (threads or memory). */
int layer_pgzip_new(int level, unsigned threads, layer_pgzip_sink sink,
                    void *arg, struct layer_pgzip **out);

/* Turns on member reuse and recording before the first write: r is
 * copied. Without it no member is hashed. Returns 0, CAIRN_E_INVAL (a
 * write already happened, NULL find) or CAIRN_E_CRYPTO / CAIRN_E_NOMEM
 * (the codec tag could not be made). */
int layer_pgzip_reuse_set(struct layer_pgzip *g,
                          const struct layer_pgzip_reuse *r);

/* Ends the member being filled right before input offset (counted from
 * the first byte written), when the member then holds at least min bytes
 * (min 0 acts as 1: a member is never empty). Offsets must not go back:
 * an offset before one already given or before the input written so far
 * is CAIRN_E_INVAL; past LAYER_PGZIP_MAX_CUTS waiting cuts, later ones
 * are dropped. The cuts decide the output bytes: give the same ones for
 * the same input. */
int layer_pgzip_cut_at(struct layer_pgzip *g, uint64_t offset, size_t min);

/* After layer_pgzip_finish: the members recorded (reuse_set only; *v is
 * borrowed until layer_pgzip_free, possibly incomplete if memory ran
 * out) and how many members were taken from earlier blobs. */
void layer_pgzip_members(const struct layer_pgzip *g,
                         const struct layer_pgzip_member **v, size_t *n,
                         size_t *reused);

/* Feeds n bytes. Blocks when every slot is busy; may call the sink. A
 * failure (a worker's or the sink's) is sticky. */
int layer_pgzip_write(struct layer_pgzip *g, const void *p, size_t n);

/* Ends the stream: the last member (an empty input still makes one, so
 * the output is always a valid gzip file), all through the sink. Call
 * once; afterwards only layer_pgzip_free. */
int layer_pgzip_finish(struct layer_pgzip *g);

/* Stops the workers and frees everything; NULL is fine. */
void layer_pgzip_free(struct layer_pgzip *g);

/* The worker count the layer writer uses: CAIRN_LAYER_THREADS from the
 * environment when it is a number in 1..LAYER_PGZIP_MAX_THREADS, else the
 * online CPUs (at least 1, at most 8). Never changes output bytes. */
unsigned layer_threads_default(void);

#endif
