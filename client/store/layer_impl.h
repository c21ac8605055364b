/* What the two halves of client/store/layer.h share and nobody else
 * sees: the caps and buffer sizes, the whiteout names, and two helpers.
 * client/store/layer.c writes layers; client/store/layer_read.c reads,
 * checks and unpacks them. Private to those two files. */
#ifndef CAIRN_CLIENT_STORE_LAYER_IMPL_H
#define CAIRN_CLIENT_STORE_LAYER_IMPL_H

#include "cachekey/digest.h"
#include "client/store/layer.h"

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
#define LAYER_GZIP_LEVEL 6
#define LAYER_ZSTD_LEVEL 3
/* The OS byte of the gzip header: 255 ("unknown"), as Go's compress/gzip
 * writes it, so our blobs do not depend on the build host. */
#define LAYER_GZIP_OS 255

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"

/* "sha256:<hex>" of h's final digest into out; a hash failure sets *rc
 * (out is then unchanged). */
void cairn_layer_digest_format(struct ck_sha256 *h,
                               char out[CAIRN_DIGEST_STR_LEN], int *rc);

/* The OCI media type of a layer blob compressed with c. */
const char *cairn_layer_media_type(enum cairn_compression c);

#endif
