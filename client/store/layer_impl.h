/* What the parts of client/store/layer.h share and nobody else sees: the
 * caps and buffer sizes, the whiteout names, the writer's struct and the
 * helpers around it. client/store/layer.c writes layers,
 * client/store/layer_upper.c feeds a RUN's upper directory to the writer,
 * client/store/layer_read.c reads, checks and unpacks blobs. Private to
 * those three files. */
#ifndef CAIRN_CLIENT_STORE_LAYER_IMPL_H
#define CAIRN_CLIENT_STORE_LAYER_IMPL_H

#include "cachekey/digest.h"
#include "client/store/layer.h"
#include "common/error.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <zlib.h>
#include <zstd.h>

/* Size of the compressed-output buffer (writer) and of the raw-input and
 * decompressed-output buffers (reader). Large, so a layer costs few write(2)
 * calls and the hashes run over long runs of memory. */
#define LAYER_IO_BUF ((size_t)1 << 20)
/* libarchive hands us the tar stream in blocks of this size. It does not
 * change the bytes written: the last block is not padded (see
 * writer_new). */
#define LAYER_TAR_BLOCK (64 * 1024)
#define LAYER_PROGRESS_STEP ((uint64_t)8 << 20)
/* Caps on what a layer may hold, on both sides: paths longer than Linux's
 * PATH_MAX cannot be created anyway, and a few million entries is far more
 * than any real image layer. */
#define LAYER_PATH_MAX 4096
#define LAYER_MAX_ENTRIES ((size_t)1 << 21)
#define LAYER_XATTR_LIST_MAX 65536
#define LAYER_XATTR_VALUE_MAX 65536
/* libdeflate level 1: on ~256 MB of shared libraries 2.5x less CPU than
 * level 6 for 9% more bytes (bench/codec, docs/build.md "Compression");
 * the build waits on the CPU, a push spends the extra bytes once. */
#define LAYER_GZIP_LEVEL 1
#define LAYER_ZSTD_LEVEL 3
/* zstd's multi-threaded mode cuts the input into jobs of this size; its
 * output depends on the job size (and level) but not on the number of
 * workers, as long as there is at least one (docs/build.md,
 * "Compression"). Pinned so the bytes never depend on the machine. */
#define LAYER_ZSTD_JOB ((size_t)2 << 20)

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

/* "sha256:<hex>" of h's final digest into out; a hash failure sets *rc
 * (out is then unchanged). */
void cairn_layer_digest_format(struct ck_sha256 *h,
                               char out[CAIRN_DIGEST_STR_LEN], int *rc);

/* The OCI media type of a layer blob compressed with c. */
const char *cairn_layer_media_type(enum cairn_compression c);

/* The one-pass writer (client/store/layer.c); client/store/layer_upper.c
 * feeds it through the functions below. */
struct cairn_layer_writer {
    struct archive *ar;
    int fd;
    char *path; /* the temporary blob file */
    enum cairn_compression comp;
    int64_t epoch;
    void (*progress)(void *, uint64_t);
    void *progress_arg;
    struct ck_sha256 *tar_hash;
    struct ck_sha256 *blob_hash;
    ZSTD_CCtx *zc;
    struct layer_pgzip *pgz; /* gzip: the block-parallel compressor */
    struct cairn_layer_reuse *reuse; /* borrowed; NULL: none */
    uint8_t *out; /* LAYER_IO_BUF bytes of compressed output */
    size_t out_len;
    uint8_t *copy; /* LAYER_IO_BUF bytes for reading file content */
    uint64_t tar_bytes;
    uint64_t blob_bytes;
    uint64_t blob_started; /* of those, sent to the disk (out_written) */
    uint64_t next_progress;
    size_t entries;
    /* The first failure, sticky: after libarchive has seen a write error
     * or an entry was cut short the tar stream is unusable, so every later
     * call fails with the same code and message. */
    int broken;
    struct cairn_err fail;
    bool raw; /* cairn_layer_add_raw: bytes, not entries */
    struct layer_mirror *mirror; /* NULL: not mirrored (or dropped) */
};

/* Reports the writer's sticky failure to the caller. */
int layer_writer_fail_report(struct cairn_layer_writer *w,
                             struct cairn_err *err);

/* Writes ae's header, counted against LAYER_MAX_ENTRIES; a failure
 * breaks the writer. */
int layer_writer_header(struct cairn_layer_writer *w, struct archive_entry *ae,
                        struct cairn_err *err);

/* A new tar entry for path with the writer's time clamping applied. */
struct archive_entry *layer_entry_new(struct cairn_layer_writer *w,
                                      const char *path, mode_t mode, uid_t uid,
                                      gid_t gid, int64_t mtime);

/* Streams exactly size bytes of fd into the current entry. A file that
 * ends early breaks the writer: its header already promised size bytes. */
int layer_writer_copy_fd(struct cairn_layer_writer *w, int fd, int64_t size,
                         const char *path, struct cairn_err *err);

/* Gives up on the mirror: the layer goes on, the caller unpacks it when
 * it needs the tree. Never an error of the layer. */
void layer_mirror_drop(struct cairn_layer_writer *w);

/* Writes an empty marker file (whiteout or opaque marker). Mode 0, owner
 * 0:0 and mtime 0 as Docker and containerd write them, so a deletion makes
 * the same bytes whenever it runs. */
int layer_writer_marker(struct cairn_layer_writer *w, const char *name,
                        struct cairn_err *err);

/* Joins dir (may be "") and a prefixed base name into buf. */
int layer_marker_name(char *buf, size_t cap, const char *dir, size_t dirlen,
                      const char *prefix, const char *base);

#endif
