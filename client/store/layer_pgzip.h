/* A gzip compressor that uses several cores and still writes the same bytes
 * whatever the number of threads (client/store/layer_pgzip.c; the reasons in
 * docs/build.md, "Compression"). Private to client/store/layer*.c.
 *
 * The input is cut into blocks of a fixed size; each block is deflated on
 * its own, primed with the 32 KiB of input before it as a preset
 * dictionary, and ended with a sync flush (the last one with the final
 * bit), as pigz does. The joined blocks are one deflate stream inside one
 * gzip member (header: no name, mtime 0, OS 255), whose CRC-32 is combined
 * from the blocks'. The output depends only on the input, the level and
 * the block size: threads only change when each block is done. */
#ifndef CAIRN_CLIENT_STORE_LAYER_PGZIP_H
#define CAIRN_CLIENT_STORE_LAYER_PGZIP_H

#include <stddef.h>

/* The block size: part of the output's definition, never change it without
 * accepting that every gzip layer digest changes. */
#define LAYER_PGZIP_BLOCK ((size_t)256 << 10)
#define LAYER_PGZIP_MAX_THREADS 64

struct layer_pgzip;

/* Where finished output goes, in order, on the thread that called
 * layer_pgzip_write or layer_pgzip_finish. Returns 0 or a negative
 * errno / CAIRN_E_* code, which stops the compressor. */
typedef int (*layer_pgzip_sink)(void *arg, const void *p, size_t n);

/* A compressor at zlib level (1..9) with threads worker threads (1..
 * LAYER_PGZIP_MAX_THREADS); sink(arg, ...) receives the gzip bytes. On
 * success *out owns the threads; free it with layer_pgzip_free. Returns
 * 0, CAIRN_E_INVAL or CAIRN_E_NOMEM (threads or memory). */
int layer_pgzip_new(int level, unsigned threads, layer_pgzip_sink sink,
                    void *arg, struct layer_pgzip **out);

/* Feeds n bytes. Blocks when every slot is busy; may call the sink. A
 * failure (a worker's or the sink's) is sticky. */
int layer_pgzip_write(struct layer_pgzip *g, const void *p, size_t n);

/* Ends the stream: the last block, the trailer, all through the sink.
 * Call once; afterwards only layer_pgzip_free. */
int layer_pgzip_finish(struct layer_pgzip *g);

/* Stops the workers and frees everything; NULL is fine. */
void layer_pgzip_free(struct layer_pgzip *g);

/* The worker count the layer writer uses: CAIRN_LAYER_THREADS from the
 * environment when it is a number in 1..LAYER_PGZIP_MAX_THREADS, else the
 * online CPUs (at least 1, at most 8). Never changes output bytes. */
unsigned layer_threads_default(void);

#endif
