/* Reading layers (client/store/layer.h): a blob streamed through both
 * hashes (digest, diff_id), unpacked into a snapshot directory under the
 * entry rules, or checked against what a cache entry claims. Writing is
 * client/store/layer.c. */
#include "client/store/layer.h"

#include "cachekey/digest.h"
#include "client/store/layer_gunzip.h"
#include "client/store/layer_impl.h"
#include "client/store/layer_pgzip.h"
#include "client/store/layer_rules.h"
#include "common/fdio.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

/* ------------------------------------------------------------------ */
/* Reader: file -> sha256 (digest) -> decompressor -> sha256 (diff_id)  */

/* Streams a blob's uncompressed tar, hashing both sides as it goes. The
 * compression is detected from the magic bytes, so a layer stored under
 * the wrong media type still reads correctly. */
struct blob_reader {
    int fd;
    bool own_fd;
    uint64_t max_blob; /* 0: no cap */
    uint64_t max_tar;  /* 0: no cap on the uncompressed bytes */
    enum cairn_compression comp;
    uint8_t *raw; /* LAYER_IO_BUF bytes read from the file */
    size_t raw_len;
    size_t raw_pos;
    bool raw_eof;
    uint8_t *out; /* LAYER_IO_BUF bytes of decompressed tar */
    z_stream z;
    bool z_live;
    bool z_member_done; /* the last gzip member ended cleanly */
    /* gzip in cairn's member layout (layer_gzm.h): inflated on every
     * core instead of through z. */
    struct layer_gunzip *gz;
    ZSTD_DCtx *zd;
    size_t zd_hint; /* 0 when the last zstd frame is complete */
    bool started;
    bool eof;
    struct ck_sha256 *tar_hash;
    struct ck_sha256 *blob_hash;
    uint64_t tar_bytes;
    uint64_t blob_bytes;
    /* The first failure; libarchive only sees "read error", the caller
     * gets this. */
    int rc;
    char msg[256];
};

static int reader_fail(struct blob_reader *r, int code, const char *what)
{
    if (r->rc == 0) {
        r->rc = code;
        snprintf(r->msg, sizeof r->msg, "%s", what);
    }
    return code;
}

/* Reads the next piece of the blob into r->raw at offset at (0: replace
 * what is there; more: append, for the magic bytes), hashing it. */
static int reader_read(struct blob_reader *r, size_t at)
{
    for (;;) {
        ssize_t n = read(r->fd, r->raw + at, LAYER_IO_BUF - at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return reader_fail(r, -errno, strerror(errno));
        r->raw_pos = 0;
        if (n == 0) {
            r->raw_eof = true;
            r->raw_len = at;
            return 0;
        }
        if (ck_sha256_update(r->blob_hash, r->raw + at, (size_t)n) != 0)
            return reader_fail(r, CAIRN_E_CRYPTO, "sha256 failed");
        r->blob_bytes += (uint64_t)n;
        if (r->max_blob > 0 && r->blob_bytes > r->max_blob)
            return reader_fail(r, CAIRN_E_TOOBIG,
                               "the blob is longer than its size says");
        r->raw_len = at + (size_t)n;
        return 0;
    }
}

static int reader_fill(struct blob_reader *r)
{
    return reader_read(r, 0);
}

/* Starts reading the blob from fd (borrowed unless own). */
static int reader_attach(struct blob_reader *r, int fd, bool own)
{
    memset(r, 0, sizeof *r);
    r->rc = 0;
    r->fd = fd;
    r->own_fd = own;
    if (r->fd < 0)
        return reader_fail(r, -errno, strerror(errno));
    r->raw = malloc(LAYER_IO_BUF);
    r->out = malloc(LAYER_IO_BUF);
    if (r->raw == NULL || r->out == NULL)
        return reader_fail(r, CAIRN_E_NOMEM, "out of memory");
    if (ck_sha256_new(&r->tar_hash) != 0 || ck_sha256_new(&r->blob_hash) != 0)
        return reader_fail(r, CAIRN_E_CRYPTO, "sha256 failed");
    int rc = reader_fill(r);
    /* A pipe or socket may hand out fewer bytes than the magic (or a
     * member header of cairn's gzip layout) needs. */
    while (rc == 0 && r->raw_len < LAYER_GZM_HEAD && !r->raw_eof)
        rc = reader_read(r, r->raw_len);
    if (rc != 0)
        return rc;
    const uint8_t *m = r->raw;
    if (layer_gunzip_detect(m, r->raw_len)) {
        r->comp = CAIRN_COMPRESS_GZIP;
        rc = layer_gunzip_new(layer_threads_default(), &r->gz);
        if (rc != 0)
            return reader_fail(r, rc, "cannot start the gzip reader");
    } else if (r->raw_len >= 2 && m[0] == 0x1f && m[1] == 0x8b) {
        r->comp = CAIRN_COMPRESS_GZIP;
        if (inflateInit2(&r->z, 15 + 16) != Z_OK)
            return reader_fail(r, CAIRN_E_NOMEM, "zlib init failed");
        r->z_live = true;
    } else if (r->raw_len >= 4 && m[0] == 0x28 && m[1] == 0xb5 &&
               m[2] == 0x2f && m[3] == 0xfd) {
        r->comp = CAIRN_COMPRESS_ZSTD;
        /* The default window limit (128 MiB) caps what a hostile frame
         * header can make us allocate. */
        r->zd = ZSTD_createDCtx();
        if (r->zd == NULL)
            return reader_fail(r, CAIRN_E_NOMEM, "zstd init failed");
    } else {
        r->comp = CAIRN_COMPRESS_NONE;
    }
    return 0;
}

static int reader_open(struct blob_reader *r, const char *path)
{
    return reader_attach(r, open(path, O_RDONLY | O_CLOEXEC), true);
}

static void reader_close(struct blob_reader *r)
{
    if (r->fd >= 0 && r->own_fd)
        close(r->fd);
    if (r->z_live)
        inflateEnd(&r->z);
    layer_gunzip_free(r->gz);
    ZSTD_freeDCtx(r->zd);
    free(r->raw);
    free(r->out);
    ck_sha256_free(r->tar_hash);
    ck_sha256_free(r->blob_hash);
}

/* The next block of a member-layout gzip blob: the raw bytes go to the
 * parallel reader as long as it has room, then the oldest member's tar
 * comes back. */
static int reader_produce_gzm(struct blob_reader *r, const uint8_t **p,
                              size_t *n)
{
    for (;;) {
        int rc;
        for (;;) {
            if (r->raw_pos == r->raw_len) {
                if (r->raw_eof)
                    break;
                if ((rc = reader_fill(r)) != 0)
                    return rc;
                if (r->raw_eof)
                    break;
            }
            size_t used;
            if ((rc = layer_gunzip_feed(r->gz, r->raw + r->raw_pos,
                                        r->raw_len - r->raw_pos, &used)) != 0)
                return reader_fail(r, rc, layer_gunzip_error(r->gz));
            r->raw_pos += used;
            if (r->raw_pos < r->raw_len)
                break; /* every slot is full */
        }
        if (layer_gunzip_next(r->gz, p, n) != 0)
            return reader_fail(r, CAIRN_E_CORRUPT, layer_gunzip_error(r->gz));
        if (*n > 0)
            return 0;
        if (r->raw_eof && r->raw_pos == r->raw_len) {
            if (layer_gunzip_end(r->gz) != 0)
                return reader_fail(r, CAIRN_E_CORRUPT,
                                   layer_gunzip_error(r->gz));
            r->eof = true;
            return 0;
        }
    }
}

/* Decompresses the next chunk into r->out (or, uncompressed, hands out
 * r->raw). *n == 0 means the end of the stream. Truncated or corrupt
 * streams fail with CAIRN_E_CORRUPT. */
static int reader_produce(struct blob_reader *r, const uint8_t **p, size_t *n)
{
    *n = 0;
    if (r->rc != 0)
        return r->rc;
    if (r->eof)
        return 0;
    int rc;
    switch (r->comp) {
    case CAIRN_COMPRESS_NONE:
        if (r->started && (rc = reader_fill(r)) != 0)
            return rc;
        r->started = true;
        if (r->raw_eof) {
            r->eof = true;
            return 0;
        }
        *p = r->raw;
        *n = r->raw_len;
        break;
    case CAIRN_COMPRESS_GZIP:
        if (r->gz != NULL) {
            if ((rc = reader_produce_gzm(r, p, n)) != 0 || *n == 0)
                return rc;
            break;
        }
        for (;;) {
            if (r->raw_pos == r->raw_len && !r->raw_eof &&
                (rc = reader_fill(r)) != 0)
                return rc;
            bool more = r->raw_pos < r->raw_len;
            if (r->z_member_done) {
                if (!more) {
                    r->eof = true;
                    return 0;
                }
                /* More bytes after a complete member: another member
                 * (pigz, concatenated gzip), or garbage, which inflate
                 * rejects. */
                if (inflateReset(&r->z) != Z_OK)
                    return reader_fail(r, CAIRN_E_CORRUPT, "zlib reset");
                r->z_member_done = false;
            }
            /* inflate runs even without new input: output it could not
             * hand out last time (a full buffer) may still be pending. */
            r->z.next_in = r->raw + r->raw_pos;
            r->z.avail_in = (uInt)(r->raw_len - r->raw_pos);
            r->z.next_out = r->out;
            r->z.avail_out = (uInt)LAYER_IO_BUF;
            int zr = inflate(&r->z, Z_NO_FLUSH);
            r->raw_pos = r->raw_len - r->z.avail_in;
            size_t got = LAYER_IO_BUF - r->z.avail_out;
            if (zr == Z_STREAM_END)
                r->z_member_done = true;
            else if (zr != Z_OK && zr != Z_BUF_ERROR)
                return reader_fail(r, CAIRN_E_CORRUPT,
                                   r->z.msg ? r->z.msg : "bad gzip data");
            if (got > 0) {
                *p = r->out;
                *n = got;
                break;
            }
            if (!more && r->raw_eof && !r->z_member_done)
                return reader_fail(r, CAIRN_E_CORRUPT,
                                   "gzip stream is truncated");
        }
        break;
    case CAIRN_COMPRESS_ZSTD:
        for (;;) {
            if (r->raw_pos == r->raw_len && !r->raw_eof &&
                (rc = reader_fill(r)) != 0)
                return rc;
            ZSTD_inBuffer in = {r->raw, r->raw_len, r->raw_pos};
            ZSTD_outBuffer o = {r->out, LAYER_IO_BUF, 0};
            size_t zr = ZSTD_decompressStream(r->zd, &o, &in);
            if (ZSTD_isError(zr))
                return reader_fail(r, CAIRN_E_CORRUPT, ZSTD_getErrorName(zr));
            /* A call that neither read nor wrote reports what the next
             * frame would need, not whether the last one ended. */
            if (in.pos != r->raw_pos || o.pos > 0)
                r->zd_hint = zr;
            r->raw_pos = in.pos;
            if (o.pos > 0) {
                *p = r->out;
                *n = o.pos;
                break;
            }
            if (r->raw_pos == r->raw_len && r->raw_eof) {
                if (r->zd_hint != 0)
                    return reader_fail(r, CAIRN_E_CORRUPT,
                                       "zstd stream is truncated");
                r->eof = true;
                return 0;
            }
        }
        break;
    }
    if (ck_sha256_update(r->tar_hash, *p, *n) != 0)
        return reader_fail(r, CAIRN_E_CRYPTO, "sha256 failed");
    r->tar_bytes += *n;
    /* Checked as the bytes come, so a bomb stops at the cap. */
    if (r->max_tar > 0 && r->tar_bytes > r->max_tar) {
        char m[128];
        snprintf(m, sizeof m,
                 "the uncompressed layer is larger than the cap of %llu bytes",
                 (unsigned long long)r->max_tar);
        return reader_fail(r, CAIRN_E_TOOBIG, m);
    }
    return 0;
}

/* Reads the rest of the stream, so both hashes cover every byte, and the
 * compressed stream's own checks (gzip CRC, zstd checksum) run to the
 * end even after the tar's end-of-archive blocks. */
static int reader_drain(struct blob_reader *r)
{
    for (;;) {
        const uint8_t *p;
        size_t n;
        int rc = reader_produce(r, &p, &n);
        if (rc != 0 || n == 0)
            return rc;
    }
}

static int reader_digests(struct blob_reader *r, struct cairn_layer_desc *d)
{
    int rc = 0;
    memset(d, 0, sizeof *d);
    cairn_layer_digest_format(r->tar_hash, d->diff_id, &rc);
    cairn_layer_digest_format(r->blob_hash, d->digest, &rc);
    d->size = (int64_t)r->blob_bytes;
    d->media_type = cairn_layer_media_type(r->comp);
    return rc;
}

int cairn_layer_digest_file(const char *blob_path,
                            struct cairn_layer_desc *desc,
                            struct cairn_err *err)
{
    if (blob_path == NULL || desc == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "digest_file: bad arguments");
    struct blob_reader r;
    struct cairn_layer_desc d;
    int rc = reader_open(&r, blob_path);
    if (rc == 0)
        rc = reader_drain(&r);
    if (rc == 0)
        rc = reader_digests(&r, &d);
    if (rc != 0)
        cairn_err_set(err, rc, "layer %s: %s", blob_path,
                      r.rc ? r.msg : cairn_strerror(rc));
    else
        *desc = d;
    reader_close(&r);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Unpack                                                              */

struct unpack {
    struct blob_reader r;
    struct archive *in;
    struct archive *disk;
    char *root; /* realpath of dest: no symlinks for libarchive to trip on */
    int rootfd;
    char *full; /* scratch: root + "/" + entry path */
    char *link; /* scratch: root + "/" + hard-link target */
    size_t scratch_cap;
    struct cairn_layer_rules *rules;
};

static la_ssize_t unpack_read_cb(struct archive *a, void *cd, const void **buf)
{
    struct blob_reader *r = cd;
    const uint8_t *p = NULL;
    size_t n = 0;
    if (reader_produce(r, &p, &n) != 0) {
        archive_set_error(a, EIO, "%s", r->msg);
        return -1;
    }
    *buf = p;
    return (la_ssize_t)n;
}

/* Opens directory rel (length len) beneath rootfd without following any
 * symlink, creating missing directories (a whiteout may come before, or
 * without, its directory's entry). */
static int open_beneath(int rootfd, const char *rel, size_t len, int *out,
                        struct cairn_err *err)
{
    char buf[LAYER_PATH_MAX];
    if (len >= sizeof buf)
        return cairn_err_set(err, CAIRN_E_CORRUPT, "path too long");
    memcpy(buf, rel, len);
    buf[len] = '\0';
    int fd = rootfd;
    char *save = NULL;
    for (char *c = strtok_r(buf, "/", &save); c != NULL;
         c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
        int nfd = openat(fd, c, flags);
        if (nfd < 0 && errno == ENOENT && mkdirat(fd, c, 0755) == 0)
            nfd = openat(fd, c, flags);
        int e = errno;
        if (fd != rootfd)
            close(fd);
        if (nfd < 0) {
            if (e == ELOOP || e == ENOTDIR)
                return cairn_err_set(err, CAIRN_E_CORRUPT,
                                     "whiteout under a symlink or file: %.*s",
                                     (int)len, rel);
            return cairn_err_set(err, -e, "open %.*s: %s", (int)len, rel,
                                 strerror(e));
        }
        fd = nfd;
    }
    if (fd == rootfd) {
        fd = dup(rootfd);
        if (fd < 0)
            return cairn_err_set(err, -errno, "dup: %s", strerror(errno));
    }
    *out = fd;
    return 0;
}

/* ".wh.<name>": overlayfs spells a deletion as a 0/0 character device. */
static int unpack_whiteout(struct unpack *u, const char *dir, size_t dirlen,
                           const char *name, size_t namelen,
                           struct cairn_err *err)
{
    char nm[256];
    if (namelen == 0 || namelen >= sizeof nm ||
        memchr(name, '/', namelen) != NULL ||
        (namelen == 1 && name[0] == '.') ||
        (namelen == 2 && name[0] == '.' && name[1] == '.'))
        return cairn_err_set(err, CAIRN_E_CORRUPT, "bad whiteout %.*s",
                             (int)(name + namelen - dir), dir);
    memcpy(nm, name, namelen);
    nm[namelen] = '\0';
    int dfd;
    int rc = open_beneath(u->rootfd, dir, dirlen, &dfd, err);
    if (rc != 0)
        return rc;
    /* Replace whatever this layer put there earlier: a file, a symlink
     * (unlinked, never followed) or an empty directory. */
    if (unlinkat(dfd, nm, 0) != 0 && errno == EISDIR)
        unlinkat(dfd, nm, AT_REMOVEDIR);
    if (mknodat(dfd, nm, S_IFCHR | 0, makedev(0, 0)) != 0) {
        rc = -errno;
        cairn_err_set(err, rc, "whiteout %.*s/%s: %s", (int)dirlen, dir, nm,
                      cairn_strerror(rc));
    }
    close(dfd);
    return rc;
}

/* ".wh..wh..opq": the directory hides the lower layers' contents. */
static int unpack_opaque(struct unpack *u, const char *dir, size_t dirlen,
                         struct cairn_err *err)
{
    int dfd;
    int rc = open_beneath(u->rootfd, dir, dirlen, &dfd, err);
    if (rc != 0)
        return rc;
    if (fsetxattr(dfd, "trusted.overlay.opaque", "y", 1, 0) != 0) {
        rc = -errno;
        cairn_err_set(err, rc, "opaque %.*s: %s", (int)dirlen, dir,
                      cairn_strerror(rc));
    }
    close(dfd);
    return rc;
}

/* Drops overlayfs' own xattrs from an entry: a layer must not be able to
 * plant redirects or opaque flags except through the OCI markers. */
static void strip_overlay_xattrs(struct archive_entry *ae)
{
    const char *n;
    const void *v;
    size_t l;
    bool found = false;
    archive_entry_xattr_reset(ae);
    while (archive_entry_xattr_next(ae, &n, &v, &l) == ARCHIVE_OK)
        if (strncmp(n, "trusted.overlay.", 16) == 0 ||
            strncmp(n, "user.overlay.", 13) == 0)
            found = true;
    if (!found)
        return;
    struct archive_entry *keep = archive_entry_new();
    if (keep == NULL)
        return;
    archive_entry_xattr_reset(ae);
    while (archive_entry_xattr_next(ae, &n, &v, &l) == ARCHIVE_OK)
        if (strncmp(n, "trusted.overlay.", 16) != 0 &&
            strncmp(n, "user.overlay.", 13) != 0)
            archive_entry_xattr_add_entry(keep, n, v, l);
    archive_entry_xattr_clear(ae);
    archive_entry_xattr_reset(keep);
    while (archive_entry_xattr_next(keep, &n, &v, &l) == ARCHIVE_OK)
        archive_entry_xattr_add_entry(ae, n, v, l);
    archive_entry_free(keep);
}

/* A failure of the tar reader: the decompressor's own error when it was
 * the cause, else libarchive's description of the bad tar. */
static int unpack_read_fail(struct unpack *u, const char *blob,
                            struct cairn_err *err)
{
    if (u->r.rc != 0)
        return cairn_err_set(err, u->r.rc, "layer %s: %s", blob, u->r.msg);
    const char *why = archive_error_string(u->in);
    return cairn_err_set(err, CAIRN_E_CORRUPT, "layer %s: %s", blob,
                         why ? why : "bad tar");
}

/* A failure of the disk writer. Resource problems keep their errno; the
 * rest (refusals to write through a symlink, bad links, ...) are the
 * archive's fault. */
static int unpack_disk_fail(struct unpack *u, const char *name,
                            struct cairn_err *err)
{
    int e = archive_errno(u->disk);
    int code = CAIRN_E_CORRUPT;
    switch (e) {
    case ENOSPC:
    case EDQUOT:
    case EIO:
    case ENOMEM:
    case EROFS:
    case EMFILE:
    case ENFILE:
    case EPERM:
    case EACCES:
        code = -e;
        break;
    default:
        break;
    }
    const char *why = archive_error_string(u->disk);
    return cairn_err_set(err, code, "unpacking %s: %s", name,
                         why ? why : "failed");
}

static int unpack_entries(struct unpack *u, const char *blob,
                          struct cairn_err *err)
{
    for (;;) {
        struct archive_entry *ae;
        int ar = archive_read_next_header(u->in, &ae);
        if (ar == ARCHIVE_EOF)
            return 0;
        /* Warnings (names not convertible to the locale) keep the raw
         * bytes, which is what a file system wants anyway. */
        if (ar < ARCHIVE_WARN)
            return unpack_read_fail(u, blob, err);
        /* The rules every layer's entries follow (client/store/layer_rules.h),
         * the same ones a fetched layer is checked against before it is
         * used; libarchive's own checks below are a second line. */
        struct cairn_layer_rule_view v;
        char why[512];
        const char *name = archive_entry_pathname(ae);
        int rc = cairn_layer_rules_check(u->rules, name,
                                         archive_entry_filetype(ae),
                                         archive_entry_hardlink(ae), &v, why,
                                         sizeof why);
        if (rc != 0)
            return cairn_err_set(err, rc, "layer %s: entry %s: %s", blob,
                                 name ? name : "(none)", why);
        if (v.kind == CAIRN_LAYER_RULE_SKIP)
            continue;
        if (v.kind == CAIRN_LAYER_RULE_OPAQUE ||
            v.kind == CAIRN_LAYER_RULE_WHITEOUT) {
            if (v.kind == CAIRN_LAYER_RULE_OPAQUE)
                rc = unpack_opaque(u, v.rel, v.dirlen, err);
            else
                rc = unpack_whiteout(u, v.rel, v.dirlen, v.wh_name, v.wh_len,
                                     err);
            if (rc != 0)
                return rc;
            continue;
        }
        const char *rel = v.rel;
        int n = snprintf(u->full, u->scratch_cap, "%s/%s", u->root, rel);
        if (n < 0 || (size_t)n >= u->scratch_cap)
            return cairn_err_set(err, CAIRN_E_CORRUPT, "path too long: %s",
                                 rel);
        if (v.hard_rel != NULL) {
            n = snprintf(u->link, u->scratch_cap, "%s/%s", u->root,
                         v.hard_rel);
            if (n < 0 || (size_t)n >= u->scratch_cap)
                return cairn_err_set(err, CAIRN_E_CORRUPT, "path too long: %s",
                                     v.hard_rel);
            archive_entry_copy_hardlink(ae, u->link);
        }
        /* From here on rel points into memory the entry may free. */
        archive_entry_copy_pathname(ae, u->full);
        strip_overlay_xattrs(ae);
        const char *shown = u->full + strlen(u->root) + 1;
        if (archive_write_header(u->disk, ae) != ARCHIVE_OK)
            return unpack_disk_fail(u, shown, err);
        if (archive_entry_size(ae) > 0) {
            for (;;) {
                const void *buf;
                size_t sz;
                la_int64_t off;
                ar = archive_read_data_block(u->in, &buf, &sz, &off);
                if (ar == ARCHIVE_EOF)
                    break;
                if (ar != ARCHIVE_OK)
                    return unpack_read_fail(u, blob, err);
                if (archive_write_data_block(u->disk, buf, sz, off) !=
                    ARCHIVE_OK)
                    return unpack_disk_fail(u, shown, err);
            }
        }
        /* A warning here means an owner, mode, time or xattr (file
         * capabilities!) was not restored: the snapshot would be wrong. */
        if (archive_write_finish_entry(u->disk) != ARCHIVE_OK)
            return unpack_disk_fail(u, shown, err);
    }
}

static int check_digest_arg(const char *d)
{
    uint8_t bin[CK_SHA256_LEN];
    if (d == NULL)
        return 0;
    if (strncmp(d, "sha256:", 7) != 0 || strlen(d + 7) != CK_SHA256_HEX_LEN ||
        ck_hex_decode(d + 7, bin) != 0)
        return CAIRN_E_INVAL;
    return 0;
}

int cairn_layer_unpack(const char *blob_path, const char *dest,
                       const char *diff_id, struct cairn_err *err)
{
    if (blob_path == NULL || dest == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "unpack: bad arguments");
    if (check_digest_arg(diff_id) != 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "bad diff_id '%s'", diff_id);
    struct unpack u;
    memset(&u, 0, sizeof u);
    u.rootfd = -1;
    u.r.fd = -1;
    int rc = 0;
    u.root = realpath(dest, NULL);
    if (u.root == NULL) {
        rc = -errno;
        cairn_err_set(err, rc, "unpack into %s: %s", dest, cairn_strerror(rc));
        goto out;
    }
    u.rootfd = open(u.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (u.rootfd < 0) {
        rc = -errno;
        cairn_err_set(err, rc, "open %s: %s", u.root, cairn_strerror(rc));
        goto out;
    }
    u.scratch_cap = strlen(u.root) + 2 + LAYER_PATH_MAX;
    u.full = malloc(u.scratch_cap);
    u.link = malloc(u.scratch_cap);
    u.rules = cairn_layer_rules_new();
    if (u.full == NULL || u.link == NULL || u.rules == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = reader_open(&u.r, blob_path)) != 0) {
        cairn_err_set(err, rc, "layer %s: %s", blob_path, u.r.msg);
        goto out;
    }
    /* The decompressed stream goes to libarchive as a plain tar (our own
     * decompressor hashes it on the way); no libarchive filter runs. */
    u.in = archive_read_new();
    u.disk = archive_write_disk_new();
    if (u.in == NULL || u.disk == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    if (archive_read_support_format_tar(u.in) != ARCHIVE_OK ||
        archive_read_open(u.in, &u.r, NULL, unpack_read_cb, NULL) !=
            ARCHIVE_OK) {
        rc = unpack_read_fail(&u, blob_path, err);
        goto out;
    }
    /* Paths handed to libarchive are absolute (root + entry) so nothing
     * depends on the process's working directory, which parallel unpacks
     * share; that is why SECURE_NOABSOLUTEPATHS is not set: the layer
     * rules refuse absolute entry names themselves. SECURE_SYMLINKS checks every
     * component, which is safe because root is a realpath. No
     * set_standard_lookup: owners are the numeric ids in the tar, never
     * names looked up on this host. */
    archive_write_disk_set_options(
        u.disk, ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                    ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_OWNER |
                    ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                    ARCHIVE_EXTRACT_XATTR);
    if ((rc = unpack_entries(&u, blob_path, err)) != 0)
        goto out;
    /* Close applies the deferred directory modes and times. */
    if (archive_write_close(u.disk) != ARCHIVE_OK) {
        rc = unpack_disk_fail(&u, dest, err);
        goto out;
    }
    if ((rc = reader_drain(&u.r)) != 0) {
        cairn_err_set(err, rc, "layer %s: %s", blob_path, u.r.msg);
        goto out;
    }
    struct cairn_layer_desc d;
    if ((rc = reader_digests(&u.r, &d)) != 0) {
        cairn_err_set(err, rc, "sha256: %s", cairn_strerror(rc));
        goto out;
    }
    if (diff_id != NULL && strcasecmp(d.diff_id, diff_id) != 0)
        rc = cairn_err_set(err, CAIRN_E_DIGEST,
                           "layer %s: uncompressed content is %s, expected %s",
                           blob_path, d.diff_id, diff_id);
out:
    if (u.in != NULL)
        archive_read_free(u.in);
    if (u.disk != NULL)
        archive_write_free(u.disk);
    reader_close(&u.r);
    if (u.rootfd >= 0)
        close(u.rootfd);
    free(u.root);
    free(u.full);
    free(u.link);
    cairn_layer_rules_free(u.rules);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Verify: a blob checked in one pass before anything uses it          */

static enum cairn_compression compression_of(const char *media_type)
{
    if (strcmp(media_type, CAIRN_MEDIA_LAYER_GZIP) == 0 ||
        strcmp(media_type, CAIRN_MEDIA_DOCKER_LAYER) == 0)
        return CAIRN_COMPRESS_GZIP;
    if (strcmp(media_type, CAIRN_MEDIA_LAYER_ZSTD) == 0)
        return CAIRN_COMPRESS_ZSTD;
    return CAIRN_COMPRESS_NONE;
}

static const char *compression_name(enum cairn_compression c)
{
    return c == CAIRN_COMPRESS_GZIP   ? "gzip"
           : c == CAIRN_COMPRESS_ZSTD ? "zstd"
                                      : "not compressed (or unknown)";
}

/* Walks the tar's headers with the layer rules, skipping the contents
 * (which still stream through both hashes). */
static int verify_entries(struct blob_reader *r, const char *shown,
                          struct cairn_layer_rules *rules,
                          struct cairn_err *err)
{
    struct archive *in = archive_read_new();
    if (in == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    int rc = 0;
    int ar0 = archive_read_support_format_tar(in);
    if (ar0 == ARCHIVE_OK)
        ar0 = archive_read_open(in, r, NULL, unpack_read_cb, NULL);
    while (rc == 0) {
        if (ar0 != ARCHIVE_OK) {
            const char *why = archive_error_string(in);
            rc = r->rc != 0 ? r->rc : CAIRN_E_CORRUPT;
            cairn_err_set(err, rc, "layer %s: %s", shown,
                          r->rc != 0 ? r->msg : why ? why : "not a tar");
            break;
        }
        struct archive_entry *ae;
        int ar = archive_read_next_header(in, &ae);
        if (ar == ARCHIVE_EOF)
            break;
        if (ar >= ARCHIVE_WARN) {
            struct cairn_layer_rule_view v;
            char why[512];
            const char *name = archive_entry_pathname(ae);
            rc = cairn_layer_rules_check(rules, name,
                                         archive_entry_filetype(ae),
                                         archive_entry_hardlink(ae), &v, why,
                                         sizeof why);
            if (rc != 0) {
                cairn_err_set(err, rc, "layer %s: entry %s: %s", shown,
                              name ? name : "(none)", why);
                break;
            }
            ar = archive_read_data_skip(in);
        }
        if (ar < ARCHIVE_WARN) {
            const char *why = archive_error_string(in);
            rc = r->rc != 0 ? r->rc : CAIRN_E_CORRUPT;
            cairn_err_set(err, rc, "layer %s: %s", shown,
                          r->rc != 0 ? r->msg : why ? why : "bad tar");
        }
    }
    archive_read_free(in);
    return rc;
}

int cairn_layer_verify_fd(int fd, const struct cairn_layer_expect *want,
                          struct cairn_err *err)
{
    if (fd < 0 || want == NULL || want->media_type == NULL ||
        check_digest_arg(want->digest) != 0 || want->digest == NULL ||
        check_digest_arg(want->diff_id) != 0 || want->diff_id == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "verify: bad arguments");
    const char *shown = want->digest;
    struct blob_reader r;
    struct cairn_layer_rules *rules = cairn_layer_rules_new();
    int rc = reader_attach(&r, fd, false);
    r.max_blob = want->size > 0 ? (uint64_t)want->size : 0;
    r.max_tar = want->max_tar > 0 ? (uint64_t)want->max_tar : 0;
    if (rc != 0) {
        cairn_err_set(err, rc, "layer %s: %s", shown, r.msg);
        goto out;
    }
    if (rules == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    /* The magic bytes must be the media type's: a blob that unpacks fine
     * under another compression still makes a manifest that lies. */
    enum cairn_compression c = compression_of(want->media_type);
    if (r.comp != c) {
        rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                           "layer %s: the blob is %s, but its media type %s "
                           "says %s",
                           shown, compression_name(r.comp), want->media_type,
                           compression_name(c));
        goto out;
    }
    if ((rc = verify_entries(&r, shown, rules, err)) != 0)
        goto out;
    if (cairn_layer_rules_count(rules) == 0) {
        rc = cairn_err_set(err, CAIRN_E_CORRUPT,
                           "layer %s: the tar has no entries (a step that "
                           "changed nothing has no layer)",
                           shown);
        goto out;
    }
    /* The rest of the stream (padding, the compressor's own checks). */
    if ((rc = reader_drain(&r)) != 0) {
        cairn_err_set(err, rc, "layer %s: %s", shown, r.msg);
        goto out;
    }
    struct cairn_layer_desc d;
    if ((rc = reader_digests(&r, &d)) != 0) {
        cairn_err_set(err, rc, "sha256: %s", cairn_strerror(rc));
        goto out;
    }
    if (strcmp(d.digest, want->digest) != 0 || d.size != want->size)
        rc = cairn_err_set(err, CAIRN_E_DIGEST,
                           "blob %s (%lld bytes) arrived as %s (%lld bytes)",
                           want->digest, (long long)want->size, d.digest,
                           (long long)d.size);
    else if (strcmp(d.diff_id, want->diff_id) != 0)
        rc = cairn_err_set(err, CAIRN_E_DIGEST,
                           "layer %s has diff_id %s, not %s", shown,
                           d.diff_id, want->diff_id);
out:
    reader_close(&r);
    cairn_layer_rules_free(rules);
    return rc;
}
