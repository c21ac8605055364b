/* The layout of cairn's gzip layers: a series of gzip members (RFC 1952,
 * section 2.2) of at most LAYER_GZM_BLOCK bytes of tar each, each deflated
 * on its own. Every gzip reader that follows the RFC (gzip, Go's
 * compress/gzip as docker and containerd use it, zlib's inflate looped
 * over members, pigz) reads the series as one stream.
 *
 * Where members end is a pure function of the tar (client/store/layer.c,
 * writer_cut): right before the header (a pax header included) of every
 * regular file of at least 64 KiB; right before an entry whose path's
 * FNV-1a hash has its low 3 bits zero, when the member already holds at
 * least 64 KiB; and wherever a member reaches LAYER_GZM_BLOCK bytes. So
 * the members after a changed file are the ones the unchanged tar had,
 * and the store can reuse them (docs/build.md, "Compression"); a member
 * may be shorter than the block anywhere in the series.
 *
 * Each member's header carries its own size, so a reader can hand whole
 * members to several threads without inflating to find where the next one
 * starts. The header is always exactly LAYER_GZM_HEAD bytes:
 *
 *   1f 8b 08 04  00 00 00 00  00 ff      ID1 ID2 CM=deflate FLG=FEXTRA,
 *                                        MTIME 0, XFL 0, OS 255
 *   08 00                                XLEN = 8
 *   43 7a 04 00  s0 s1 s2 s3             subfield 'C' 'z', LEN 4: the
 *                                        member's whole size (this header,
 *                                        the deflate data and the 8-byte
 *                                        trailer), little-endian
 *
 * followed by the deflate data and the trailer (CRC-32 and ISIZE of the
 * member's block, little-endian). A reader that trusts the size field
 * still checks everything else (the size against what is left of the
 * blob, the CRC, ISIZE against LAYER_GZM_BLOCK, that the deflate data
 * ends exactly where the size says) and treats a gzip stream without this
 * header (a registry's layer, an old store's) as a plain stream.
 *
 * The block size, the cut rule and the header are part of what a layer
 * digest means: changing any of them changes the gzip layer digests cairn
 * writes (the cut rule did, once). */
#ifndef CAIRN_CLIENT_STORE_LAYER_GZM_H
#define CAIRN_CLIENT_STORE_LAYER_GZM_H

#include <stddef.h>

#define LAYER_GZM_BLOCK ((size_t)256 << 10)
#define LAYER_GZM_HEAD 20
#define LAYER_GZM_TRAILER 8
#define LAYER_GZM_SI1 0x43 /* 'C' */
#define LAYER_GZM_SI2 0x7a /* 'z' */

#endif
