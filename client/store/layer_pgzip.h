/* A gzip compressor that uses several cores and still writes the same bytes
 * whatever the number of threads (client/store/layer_pgzip.c; the reasons in
 * docs/build.md, "Compression"). Private to client/store/layer*.c.
 *
 * The output is the member layout of client/store/layer_gzm.h: the input is
 * cut into blocks of LAYER_GZM_BLOCK bytes (the last may be shorter), each
 * deflated on its own by libdeflate (no preset dictionary) and wrapped in a
 * gzip member whose header carries the member's size. The output depends
 * only on the input, the level and libdeflate's version: threads only
 * change when each block is done. */
#ifndef CAIRN_CLIENT_STORE_LAYER_PGZIP_H
#define CAIRN_CLIENT_STORE_LAYER_PGZIP_H

#include "client/store/layer_gzm.h"

#include <stddef.h>

#define LAYER_PGZIP_MAX_THREADS 64
/* libdeflate's levels: 1 (fastest) .. 12 (smallest). */
#define LAYER_PGZIP_MAX_LEVEL 12

struct layer_pgzip;

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
