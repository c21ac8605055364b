/* Writing layers (client/store/layer.h): the one-pass writer and its
 * mirror, entries added one by one or from a local archive (ADD). A RUN's
 * upper directory is walked into the writer by client/store/layer_upper.c;
 * reading, checking and unpacking blobs is client/store/layer_read.c. */
#include "client/store/layer.h"

#include "cachekey/digest.h"
#include "client/store/layer_rules.h"
#include "client/store/layer_impl.h"
#include "client/store/layer_pgzip.h"
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
/* Shared helpers                                                      */

void cairn_layer_digest_format(struct ck_sha256 *h,
                               char out[CAIRN_DIGEST_STR_LEN], int *rc)
{
    uint8_t bin[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    int r = ck_sha256_final(h, bin);
    if (r != 0) {
        *rc = r;
        return;
    }
    ck_hex_encode(bin, hex);
    snprintf(out, CAIRN_DIGEST_STR_LEN, "sha256:%s", hex);
}

const char *cairn_layer_media_type(enum cairn_compression c)
{
    switch (c) {
    case CAIRN_COMPRESS_GZIP:
        return CAIRN_MEDIA_LAYER_GZIP;
    case CAIRN_COMPRESS_ZSTD:
        return CAIRN_MEDIA_LAYER_ZSTD;
    case CAIRN_COMPRESS_NONE:
        break;
    }
    return CAIRN_MEDIA_LAYER_TAR;
}

/* A relative layer path as the contract describes it: not empty, no leading
 * "/", no empty, "." or ".." components, shorter than LAYER_PATH_MAX. */
static bool rel_path_ok(const char *p)
{
    if (p == NULL || p[0] == '\0' || p[0] == '/')
        return false;
    size_t n = strnlen(p, LAYER_PATH_MAX);
    if (n >= LAYER_PATH_MAX)
        return false;
    const char *s = p;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0 || (len == 1 && s[0] == '.') ||
            (len == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        if (e == NULL)
            return true;
        s = e + 1;
    }
}

/* ------------------------------------------------------------------ */
/* Writer: tar -> sha256 (diff_id) -> compressor -> sha256 (digest) -> file */

struct layer_mirror;

static void mirror_free(struct layer_mirror *m);
static void mirror_data(struct cairn_layer_writer *w, const void *p, size_t n);

static int writer_break(struct cairn_layer_writer *w, int code, const char *fmt,
                        ...) __attribute__((format(printf, 3, 4)));
static int writer_break(struct cairn_layer_writer *w, int code, const char *fmt,
                        ...)
{
    if (w->broken == 0) {
        w->broken = code;
        w->fail.code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->fail.msg, sizeof w->fail.msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* The blob is fdatasync'd before it is named (cairn_layer_writer_finish);
 * starting the write-back of each LAYER_WRITEBACK bytes as they are
 * written spreads that flush over the layer's writing instead of leaving
 * a whole 100 MB layer to the disk at the end. A hint: its errors are the
 * fdatasync's to report. */
#define LAYER_WRITEBACK ((uint64_t)8 << 20)

static void out_written(struct cairn_layer_writer *w, size_t n)
{
    w->blob_bytes += n;
    if (w->blob_bytes - w->blob_started >= LAYER_WRITEBACK) {
        (void)sync_file_range(w->fd, (off64_t)w->blob_started,
                              (off64_t)(w->blob_bytes - w->blob_started),
                              SYNC_FILE_RANGE_WRITE);
        w->blob_started = w->blob_bytes;
    }
}

static int out_flush(struct cairn_layer_writer *w)
{
    if (w->out_len == 0)
        return 0;
    int rc = ck_sha256_update(w->blob_hash, w->out, w->out_len);
    if (rc == 0)
        rc = cairn_write_all(w->fd, w->out, w->out_len);
    if (rc == 0) {
        out_written(w, w->out_len);
        w->out_len = 0;
    }
    return rc;
}

/* Feeds n tar bytes to the compressor (finish: ends the stream; p may then
 * be NULL) and writes out whatever fills the output buffer. */
static int out_compress(struct cairn_layer_writer *w, const void *p, size_t n,
                        bool finish)
{
    int rc = 0;
    switch (w->comp) {
    case CAIRN_COMPRESS_NONE: {
        const uint8_t *s = p;
        while (n > 0) {
            size_t room = LAYER_IO_BUF - w->out_len;
            size_t k = n < room ? n : room;
            memcpy(w->out + w->out_len, s, k);
            w->out_len += k;
            s += k;
            n -= k;
            if (w->out_len == LAYER_IO_BUF && (rc = out_flush(w)) != 0)
                return rc;
        }
        return 0;
    }
    case CAIRN_COMPRESS_GZIP:
        /* The compressed bytes reach pgzip_sink below, on this thread. */
        if (n > 0 && (rc = layer_pgzip_write(w->pgz, p, n)) != 0)
            return rc;
        return finish ? layer_pgzip_finish(w->pgz) : 0;
    case CAIRN_COMPRESS_ZSTD: {
        ZSTD_inBuffer in = {p, n, 0};
        for (;;) {
            ZSTD_outBuffer o = {w->out, LAYER_IO_BUF, w->out_len};
            size_t zr = ZSTD_compressStream2(
                w->zc, &o, &in, finish ? ZSTD_e_end : ZSTD_e_continue);
            w->out_len = o.pos;
            if (ZSTD_isError(zr))
                return CAIRN_E_IO;
            if (w->out_len == LAYER_IO_BUF && (rc = out_flush(w)) != 0)
                return rc;
            if (finish ? zr == 0 : in.pos == in.size)
                return 0;
        }
    }
    }
    return CAIRN_E_INVAL;
}

/* Every byte of the uncompressed layer passes here exactly once: hashed
 * for the diff_id, compressed, the output hashed for the digest and
 * written, all in this one pass. A failure breaks the writer. */
static int writer_stream(struct cairn_layer_writer *w, const void *buf,
                         size_t len)
{
    int rc = ck_sha256_update(w->tar_hash, buf, len);
    if (rc == 0)
        rc = out_compress(w, buf, len, false);
    if (rc != 0)
        return writer_break(w, rc, "writing layer %s: %s", w->path,
                            cairn_strerror(rc));
    w->tar_bytes += len;
    if (w->progress != NULL && w->tar_bytes >= w->next_progress) {
        w->progress(w->progress_arg, w->tar_bytes);
        w->next_progress = w->tar_bytes + LAYER_PROGRESS_STEP;
    }
    return 0;
}

/* libarchive's sink: the tar's bytes. */
static la_ssize_t tar_write_cb(struct archive *a, void *cd, const void *buf,
                               size_t len)
{
    struct cairn_layer_writer *w = cd;
    if (w->raw)
        return (la_ssize_t)len;
    if (w->broken) {
        archive_set_error(a, EIO, "layer pipeline failed earlier");
        return -1;
    }
    int rc = writer_stream(w, buf, len);
    if (rc != 0) {
        archive_set_error(a, EIO, "layer pipeline: %s", cairn_strerror(rc));
        return -1;
    }
    return (la_ssize_t)len;
}

int cairn_layer_add_raw(struct cairn_layer_writer *w, const void *p, size_t n,
                        struct cairn_err *err)
{
    if (w == NULL || (p == NULL && n > 0))
        return cairn_err_set(err, CAIRN_E_INVAL, "add_raw: bad arguments");
    if (w->broken)
        return layer_writer_fail_report(w, err);
    if (!w->raw) {
        if (w->entries > 0)
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "add_raw: the layer already has entries");
        /* From now on the tar writer's bytes (only its end-of-archive
         * blocks when it is freed) go nowhere: tar_write_cb drops them. */
        layer_mirror_drop(w);
        w->raw = true;
    }
    if (n > 0 && writer_stream(w, p, n) != 0)
        return layer_writer_fail_report(w, err);
    return 0;
}

/* The block-parallel gzip's output, one whole member per call: hashed and
 * written in order, on the writer's thread. */
static int pgzip_sink(void *arg, const void *p, size_t n)
{
    struct cairn_layer_writer *w = arg;
    int rc = ck_sha256_update(w->blob_hash, p, n);
    if (rc == 0)
        rc = cairn_write_all(w->fd, p, n);
    if (rc == 0)
        out_written(w, n);
    return rc;
}

void cairn_layer_reuse_clear(struct cairn_layer_reuse *r)
{
    if (r == NULL)
        return;
    free(r->members);
    r->members = NULL;
    r->nmembers = 0;
    r->reused = 0;
}

/* The member cut rule (client/store/layer_gzm.h): a member ends before
 * the header of every regular file of at least LAYER_CUT_BIG bytes, and
 * before an entry whose path hash selects it once the member holds
 * LAYER_CUT_BIG bytes, so that the members after a changed file are the
 * same as before it changed and can be reused. */
#define LAYER_CUT_BIG ((size_t)64 << 10)

/* FNV-1a, 32 bits: a fixed hash, the same on every host. */
static uint32_t path_hash(const char *p)
{
    uint32_t h = 2166136261u;
    for (; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

/* Asks the gzip compressor to cut before ae's header, when the rule
 * selects ae. The offset is the tar's byte count once the previous
 * entry's padding is out (archive_write_finish_entry writes it; the
 * header call would do it anyway): libarchive's first filter counts the
 * bytes the format writes, before they are blocked for tar_write_cb. */
static void writer_cut(struct cairn_layer_writer *w, struct archive_entry *ae)
{
    const char *path = archive_entry_pathname(ae);
    if (w->pgz == NULL || path == NULL)
        return;
    bool big = archive_entry_filetype(ae) == AE_IFREG &&
               archive_entry_size(ae) >= (la_int64_t)LAYER_CUT_BIG;
    if (!big && (path_hash(path) & 7) != 0)
        return;
    if (archive_write_finish_entry(w->ar) < ARCHIVE_WARN)
        return; /* the header call reports it */
    la_int64_t off = archive_filter_bytes(w->ar, 0);
    if (off >= 0)
        (void)layer_pgzip_cut_at(w->pgz, (uint64_t)off,
                                 big ? 1 : LAYER_CUT_BIG);
}

static int compressor_init(struct cairn_layer_writer *w)
{
    unsigned threads = layer_threads_default();
    switch (w->comp) {
    case CAIRN_COMPRESS_NONE:
        return 0;
    case CAIRN_COMPRESS_GZIP:
        /* One gzip member per block, deflated by libdeflate on every
         * core, the same bytes whatever their number
         * (client/store/layer_pgzip.h, the layout of layer_gzm.h); the
         * headers have no name, no mtime and OS 255, so the blob depends
         * only on the tar bytes and libdeflate's version. */
        {
            int rc = layer_pgzip_new(LAYER_GZIP_LEVEL, threads, pgzip_sink, w,
                                     &w->pgz);
            if (rc == 0 && w->reuse != NULL) {
                struct layer_pgzip_reuse r = {w->reuse->find, w->reuse->arg};
                rc = layer_pgzip_reuse_set(w->pgz, &r);
            }
            return rc;
        }
    case CAIRN_COMPRESS_ZSTD:
        /* Always at least one worker, and a pinned job size: zstd's
         * multi-threaded frames differ from its single-threaded ones but
         * not between 1 and N workers, so the digest does not depend on
         * the machine's cores (tests/unit/client/store/test_layer.c
         * checks it). */
        w->zc = ZSTD_createCCtx();
        if (w->zc == NULL)
            return CAIRN_E_NOMEM;
        if (ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel,
                                                LAYER_ZSTD_LEVEL)) ||
            ZSTD_isError(
                ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_nbWorkers,
                                                (int)threads)) ||
            ZSTD_isError(ZSTD_CCtx_setParameter(w->zc, ZSTD_c_jobSize,
                                                (int)LAYER_ZSTD_JOB)))
            return CAIRN_E_INVAL;
        return 0;
    }
    return CAIRN_E_INVAL;
}

static void writer_free(struct cairn_layer_writer *w, bool remove_file)
{
    if (w == NULL)
        return;
    mirror_free(w->mirror);
    if (w->ar != NULL)
        archive_write_free(w->ar); /* also closes; errors are moot here */
    layer_pgzip_free(w->pgz);
    ZSTD_freeCCtx(w->zc);
    if (w->fd >= 0)
        close(w->fd);
    if (remove_file && w->path != NULL)
        unlink(w->path);
    free(w->path);
    free(w->out);
    free(w->copy);
    ck_sha256_free(w->tar_hash);
    ck_sha256_free(w->blob_hash);
    free(w);
}

int cairn_layer_writer_new(const char *tmpdir,
                           const struct cairn_layer_opts *opts,
                           struct cairn_layer_writer **out,
                           struct cairn_err *err)
{
    if (tmpdir == NULL || opts == NULL || out == NULL)
        return cairn_err_set(err, CAIRN_E_INVAL, "layer writer: bad arguments");
    if (opts->compression != CAIRN_COMPRESS_GZIP &&
        opts->compression != CAIRN_COMPRESS_ZSTD &&
        opts->compression != CAIRN_COMPRESS_NONE)
        return cairn_err_set(err, CAIRN_E_INVAL, "unknown layer compression %d",
                             (int)opts->compression);
    struct cairn_layer_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    w->fd = -1;
    w->comp = opts->compression;
    w->epoch = opts->source_date_epoch;
    w->progress = opts->progress;
    w->progress_arg = opts->progress_arg;
    w->next_progress = LAYER_PROGRESS_STEP;
    w->reuse = opts->reuse != NULL && opts->reuse->find != NULL ? opts->reuse
                                                                : NULL;
    int rc = 0;

    size_t plen = strlen(tmpdir) + sizeof "/layer-XXXXXX";
    w->path = malloc(plen);
    w->out = malloc(LAYER_IO_BUF);
    w->copy = malloc(LAYER_IO_BUF);
    if (w->path == NULL || w->out == NULL || w->copy == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto fail;
    }
    snprintf(w->path, plen, "%s/layer-XXXXXX", tmpdir);
    w->fd = mkostemp(w->path, O_CLOEXEC);
    if (w->fd < 0) {
        rc = -errno;
        free(w->path);
        w->path = NULL; /* nothing to unlink */
        cairn_err_set(err, rc, "cannot create a layer file in %s: %s", tmpdir,
                      cairn_strerror(rc));
        goto fail;
    }
    /* Blobs end up in the store, which other tools (skopeo, umoci) read. */
    if (fchmod(w->fd, 0644) != 0) {
        rc = -errno;
        cairn_err_set(err, rc, "chmod %s: %s", w->path, cairn_strerror(rc));
        goto fail;
    }
    if ((rc = ck_sha256_new(&w->tar_hash)) != 0 ||
        (rc = ck_sha256_new(&w->blob_hash)) != 0) {
        cairn_err_set(err, rc, "sha256: %s", cairn_strerror(rc));
        goto fail;
    }
    if ((rc = compressor_init(w)) != 0) {
        cairn_err_set(err, rc, "layer compressor: %s", cairn_strerror(rc));
        goto fail;
    }

    w->ar = archive_write_new();
    if (w->ar == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto fail;
    }
    /* Restricted pax: plain ustar headers unless a field does not fit
     * (long path, big file, large ids, xattrs). SCHILY.xattr is the xattr
     * header Docker and Go read; libarchive would otherwise also write its
     * own copy of each. Names are bytes: cairn never calls setlocale, so
     * libarchive runs in the C locale and stores non-ASCII names raw (with
     * hdrcharset=BINARY), the same on every host. No bytes_in_last_block
     * padding: the tar ends with its two zero blocks, like Docker's. */
    if (archive_write_set_format_pax_restricted(w->ar) != ARCHIVE_OK ||
        archive_write_set_format_option(w->ar, "pax", "xattrheader", "SCHILY") <
            ARCHIVE_OK ||
        archive_write_add_filter_none(w->ar) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(w->ar, LAYER_TAR_BLOCK) !=
            ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(w->ar, 1) != ARCHIVE_OK ||
        archive_write_open(w->ar, w, NULL, tar_write_cb, NULL) != ARCHIVE_OK) {
        rc = cairn_err_set(err, CAIRN_E_ARCHIVE, "layer tar writer: %s",
                           archive_error_string(w->ar));
        goto fail;
    }
    *out = w;
    return 0;
fail:
    writer_free(w, true);
    return rc;
}

static int64_t writer_mtime(const struct cairn_layer_writer *w, int64_t t)
{
    return w->epoch >= 0 && t > w->epoch ? w->epoch : t;
}

/* Reports the writer's sticky failure to the caller. */
int layer_writer_fail_report(struct cairn_layer_writer *w,
                             struct cairn_err *err)
{
    if (err != NULL)
        *err = w->fail;
    return w->broken;
}

/* Translates a libarchive failure on the writer: our own pipeline's error
 * when that is what made libarchive fail, else CAIRN_E_ARCHIVE. */
static int writer_archive_fail(struct cairn_layer_writer *w, const char *path,
                               struct cairn_err *err)
{
    const char *why = archive_error_string(w->ar);
    writer_break(w, CAIRN_E_ARCHIVE, "layer entry %s: %s", path,
                 why ? why : "tar writer failed");
    return layer_writer_fail_report(w, err);
}

int layer_writer_header(struct cairn_layer_writer *w, struct archive_entry *ae,
                        struct cairn_err *err)
{
    if (w->broken)
        return layer_writer_fail_report(w, err);
    if (w->raw)
        return cairn_err_set(err, CAIRN_E_INVAL,
                             "layer of raw bytes: no entries can be added");
    if (w->entries >= LAYER_MAX_ENTRIES)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "layer has more than %zu entries",
                             LAYER_MAX_ENTRIES);
    writer_cut(w, ae);
    /* ARCHIVE_WARN is accepted: libarchive warns about things like names it
     * cannot convert, and writes them unchanged (hdrcharset=BINARY). */
    if (archive_write_header(w->ar, ae) < ARCHIVE_WARN)
        return writer_archive_fail(w, archive_entry_pathname(ae), err);
    w->entries++;
    return 0;
}

static int writer_data(struct cairn_layer_writer *w, const void *p, size_t n,
                       const char *path, struct cairn_err *err)
{
    const uint8_t *s = p;
    while (n > 0) {
        la_ssize_t k = archive_write_data(w->ar, s, n);
        if (k <= 0)
            return writer_archive_fail(w, path, err);
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

struct archive_entry *layer_entry_new(struct cairn_layer_writer *w,
                                      const char *path, mode_t mode, uid_t uid,
                                      gid_t gid, int64_t mtime)
{
    struct archive_entry *ae = archive_entry_new();
    if (ae == NULL)
        return NULL;
    archive_entry_copy_pathname(ae, path);
    archive_entry_set_mode(ae, mode);
    archive_entry_set_uid(ae, uid);
    archive_entry_set_gid(ae, gid);
    archive_entry_set_mtime(ae, writer_mtime(w, mtime), 0);
    return ae;
}

/* Streams exactly size bytes of fd into the current entry. A file that
 * ends early breaks the writer: its header already promised size bytes. */
int layer_writer_copy_fd(struct cairn_layer_writer *w, int fd, int64_t size,
                         const char *path, struct cairn_err *err)
{
    uint64_t left = (uint64_t)size;
    while (left > 0) {
        size_t want = left < LAYER_IO_BUF ? (size_t)left : LAYER_IO_BUF;
        ssize_t r = read(fd, w->copy, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int rc = -errno;
            writer_break(w, rc, "reading %s: %s", path, cairn_strerror(rc));
            return layer_writer_fail_report(w, err);
        }
        if (r == 0) {
            writer_break(w, CAIRN_E_IO, "%s shrank while it was being added",
                         path);
            return layer_writer_fail_report(w, err);
        }
        int rc = writer_data(w, w->copy, (size_t)r, path, err);
        if (rc != 0)
            return rc;
        mirror_data(w, w->copy, (size_t)r);
        left -= (uint64_t)r;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Mirror: the unpacked tree of a layer, written while the layer is     */

/* A directory whose mode and times are set at the end, as libarchive's
 * unpack does: creating its entries changes its mtime, and a read-only
 * mode set early could keep them out. */
struct mirror_dir {
    char *path; /* layer path */
    mode_t perm;
    int64_t mtime;
    size_t seq; /* order added */
};

struct layer_mirror {
    int root;       /* the mirror's root directory */
    int dir;        /* open directory dir_path, -1: none */
    char *dir_path; /* layer path of dir ("" = root) */
    /* The regular file being written, -1 between entries, and what it
     * gets once its content is in (chown first: it clears set-id bits). */
    int file;
    uid_t uid;
    gid_t gid;
    mode_t perm;
    int64_t mtime;
    /* libarchive gives an entry without an atime the time the unpack
     * started; so does the mirror. */
    int64_t atime;
    struct mirror_dir *dirs;
    size_t ndirs, cap;
};

static void mirror_free(struct layer_mirror *m)
{
    if (m == NULL)
        return;
    if (m->file >= 0)
        close(m->file);
    if (m->dir >= 0)
        close(m->dir);
    if (m->root >= 0)
        close(m->root);
    free(m->dir_path);
    for (size_t i = 0; i < m->ndirs; i++)
        free(m->dirs[i].path);
    free(m->dirs);
    free(m);
}

/* Gives up on the mirror: the layer goes on, the caller unpacks it when
 * it needs the tree. Never an error of the layer. */
void layer_mirror_drop(struct cairn_layer_writer *w)
{
    mirror_free(w->mirror);
    w->mirror = NULL;
}

/* Opens the directory holding path (its parent, which an earlier entry
 * made) without following symlinks, and points *base at the last
 * component. The last directory stays open: entries come in tree order,
 * so the next one is almost always in the same place. */
static int mirror_parent(struct layer_mirror *m, const char *path, int *dfd,
                         const char **base)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 0;
    *base = slash ? slash + 1 : path;
    if (m->dir >= 0 && strlen(m->dir_path) == len &&
        memcmp(m->dir_path, path, len) == 0) {
        *dfd = m->dir;
        return 0;
    }
    if (m->dir >= 0)
        close(m->dir);
    m->dir = -1;
    free(m->dir_path);
    m->dir_path = strndup(path, len);
    if (m->dir_path == NULL)
        return CAIRN_E_NOMEM;
    int fd = dup(m->root);
    for (const char *c = path; fd >= 0 && c < path + len;) {
        const char *e = memchr(c, '/', (size_t)(path + len - c));
        size_t n = e ? (size_t)(e - c) : (size_t)(path + len - c);
        char name[256];
        if (n >= sizeof name) {
            close(fd);
            return -ENAMETOOLONG;
        }
        memcpy(name, c, n);
        name[n] = '\0';
        int nfd =
            openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        fd = nfd;
        c += n + 1;
    }
    if (fd < 0)
        return -errno;
    m->dir = fd;
    *dfd = fd;
    return 0;
}

/* Makes room for a non-directory at name the way libarchive does: an
 * earlier file or symlink of this layer there is replaced; a directory is
 * not (the mirror is dropped and the unpack decides). */
static int mirror_clear(int dfd, const char *name)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    return unlinkat(dfd, name, 0) == 0 ? 0 : -errno;
}

static int mirror_times(int dfd, const char *name, int64_t atime, int64_t mtime)
{
    struct timespec ts[2] = {{.tv_sec = (time_t)atime},
                             {.tv_sec = (time_t)mtime}};
    return utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

static int mirror_dir_add(struct layer_mirror *m, const char *path, mode_t perm,
                          int64_t mtime)
{
    if (m->ndirs == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 64;
        struct mirror_dir *nd = realloc(m->dirs, nc * sizeof *nd);
        if (nd == NULL)
            return CAIRN_E_NOMEM;
        m->dirs = nd;
        m->cap = nc;
    }
    char *p = strdup(path);
    if (p == NULL)
        return CAIRN_E_NOMEM;
    m->dirs[m->ndirs] = (struct mirror_dir){p, perm, mtime, m->ndirs};
    m->ndirs++;
    return 0;
}

/* Creates entry path (mode with type bits; mtime already clamped) in the
 * mirror. A regular file is left open for mirror_data and
 * mirror_file_end. */
static void mirror_begin(struct cairn_layer_writer *w, const char *path,
                         mode_t mode, uid_t uid, gid_t gid, int64_t mtime,
                         const char *link_target)
{
    struct layer_mirror *m = w->mirror;
    if (m == NULL)
        return;
    int dfd = -1;
    const char *base = NULL;
    if (mirror_parent(m, path, &dfd, &base) != 0)
        goto drop;
    if (S_ISDIR(mode)) {
        struct stat st;
        if (mkdirat(dfd, base, 0700) != 0 &&
            (errno != EEXIST ||
             fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
             !S_ISDIR(st.st_mode)))
            goto drop;
        if (fchownat(dfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) != 0 ||
            mirror_dir_add(m, path, mode & 07777, mtime) != 0)
            goto drop;
        return;
    }
    if (S_ISLNK(mode)) {
        if (symlinkat(link_target, dfd, base) != 0 &&
            (errno != EEXIST || mirror_clear(dfd, base) != 0 ||
             symlinkat(link_target, dfd, base) != 0))
            goto drop;
        if (fchownat(dfd, base, uid, gid, AT_SYMLINK_NOFOLLOW) != 0 ||
            mirror_times(dfd, base, m->atime, mtime) != 0)
            goto drop;
        return;
    }
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    m->file = openat(dfd, base, flags, 0600);
    if (m->file < 0 && (errno != EEXIST || mirror_clear(dfd, base) != 0 ||
                        (m->file = openat(dfd, base, flags, 0600)) < 0))
        goto drop;
    m->uid = uid;
    m->gid = gid;
    m->perm = mode & 07777;
    m->mtime = mtime;
    return;
drop:
    layer_mirror_drop(w);
}

static void mirror_data(struct cairn_layer_writer *w, const void *p, size_t n)
{
    if (w->mirror != NULL && cairn_write_all(w->mirror->file, p, n) != 0)
        layer_mirror_drop(w);
}

static void mirror_file_end(struct cairn_layer_writer *w)
{
    struct layer_mirror *m = w->mirror;
    if (m == NULL)
        return;
    struct timespec ts[2] = {{.tv_sec = (time_t)m->atime},
                             {.tv_sec = (time_t)m->mtime}};
    int rc = fchown(m->file, m->uid, m->gid) != 0 ||
             fchmod(m->file, m->perm) != 0 || futimens(m->file, ts) != 0;
    rc |= close(m->file) != 0;
    m->file = -1;
    if (rc)
        layer_mirror_drop(w);
}

int cairn_layer_writer_mirror(struct cairn_layer_writer *w, const char *dir,
                              struct cairn_err *err)
{
    if (w == NULL || dir == NULL || w->mirror != NULL || w->entries > 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "layer mirror: bad arguments");
    struct layer_mirror *m = calloc(1, sizeof *m);
    if (m == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    m->dir = -1;
    m->file = -1;
    m->atime = (int64_t)time(NULL);
    m->root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (m->root < 0) {
        int rc = -errno;
        mirror_free(m);
        return cairn_err_set(err, rc, "open %s: %s", dir, cairn_strerror(rc));
    }
    w->mirror = m;
    return 0;
}

static int mirror_dir_cmp(const void *a, const void *b)
{
    const struct mirror_dir *x = a, *y = b;
    int c = strcmp(y->path, x->path);
    if (c != 0)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int cairn_layer_writer_mirror_end(struct cairn_layer_writer *w, bool *complete)
{
    if (w == NULL || complete == NULL)
        return CAIRN_E_INVAL;
    struct layer_mirror *m = w->mirror;
    bool ok = m != NULL && m->file < 0 && !w->broken;
    if (ok) {
        /* Deepest first, as libarchive applies its fixups; a directory
         * added twice gets the metadata of its last entry. */
        if (m->ndirs > 0)
            qsort(m->dirs, m->ndirs, sizeof *m->dirs, mirror_dir_cmp);
        for (size_t i = 0; ok && i < m->ndirs; i++) {
            const struct mirror_dir *d = &m->dirs[i];
            ok = fchmodat(m->root, d->path, d->perm, 0) == 0 &&
                 mirror_times(m->root, d->path, m->atime, d->mtime) == 0;
        }
    }
    layer_mirror_drop(w);
    *complete = ok;
    return 0;
}

int cairn_layer_add(struct cairn_layer_writer *w,
                    const struct cairn_layer_entry *e, struct cairn_err *err)
{
    if (w == NULL || e == NULL || !rel_path_ok(e->path))
        return cairn_err_set(err, CAIRN_E_INVAL, "bad layer path '%s'",
                             e && e->path ? e->path : "(null)");
    bool lnk = S_ISLNK(e->mode);
    if (!S_ISDIR(e->mode) && !lnk)
        return cairn_err_set(
            err, CAIRN_E_INVAL,
            "%s: only directories and symlinks have no content", e->path);
    if (lnk && (e->link_target == NULL || e->link_target[0] == '\0' ||
                strnlen(e->link_target, LAYER_PATH_MAX) >= LAYER_PATH_MAX))
        return cairn_err_set(err, CAIRN_E_INVAL, "%s: bad symlink target",
                             e->path);
    struct archive_entry *ae =
        layer_entry_new(w, e->path, e->mode, e->uid, e->gid, e->mtime);
    if (ae == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    if (lnk)
        archive_entry_copy_symlink(ae, e->link_target);
    int rc = layer_writer_header(w, ae, err);
    archive_entry_free(ae);
    if (rc == 0)
        mirror_begin(w, e->path, e->mode, e->uid, e->gid,
                     writer_mtime(w, e->mtime), e->link_target);
    return rc;
}

int cairn_layer_add_file(struct cairn_layer_writer *w,
                         const struct cairn_layer_entry *e, int fd,
                         int64_t size, struct cairn_err *err)
{
    if (w == NULL || e == NULL || !rel_path_ok(e->path) || size < 0 || fd < 0)
        return cairn_err_set(err, CAIRN_E_INVAL, "bad layer file '%s'",
                             e && e->path ? e->path : "(null)");
    struct archive_entry *ae = layer_entry_new(
        w, e->path, S_IFREG | (e->mode & 07777), e->uid, e->gid, e->mtime);
    if (ae == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    archive_entry_set_size(ae, size);
    int rc = layer_writer_header(w, ae, err);
    archive_entry_free(ae);
    if (rc == 0)
        mirror_begin(w, e->path, S_IFREG | (e->mode & 07777), e->uid, e->gid,
                     writer_mtime(w, e->mtime), NULL);
    if (rc == 0)
        rc = layer_writer_copy_fd(w, fd, size, e->path, err);
    if (rc == 0)
        mirror_file_end(w);
    return rc;
}

int cairn_layer_add_data(struct cairn_layer_writer *w,
                         const struct cairn_layer_entry *e, const void *data,
                         size_t len, struct cairn_err *err)
{
    if (w == NULL || e == NULL || !rel_path_ok(e->path) ||
        (data == NULL && len > 0) || len > INT64_MAX)
        return cairn_err_set(err, CAIRN_E_INVAL, "bad layer file '%s'",
                             e && e->path ? e->path : "(null)");
    struct archive_entry *ae = layer_entry_new(
        w, e->path, S_IFREG | (e->mode & 07777), e->uid, e->gid, e->mtime);
    if (ae == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    archive_entry_set_size(ae, (la_int64_t)len);
    int rc = layer_writer_header(w, ae, err);
    archive_entry_free(ae);
    if (rc == 0)
        mirror_begin(w, e->path, S_IFREG | (e->mode & 07777), e->uid, e->gid,
                     writer_mtime(w, e->mtime), NULL);
    if (rc == 0)
        rc = writer_data(w, data, len, e->path, err);
    if (rc == 0) {
        mirror_data(w, data, len);
        mirror_file_end(w);
    }
    return rc;
}

/* Writes an empty marker file (whiteout or opaque marker). Mode 0, owner
 * 0:0 and mtime 0 as Docker and containerd write them, so a deletion makes
 * the same bytes whenever it runs. */
int layer_writer_marker(struct cairn_layer_writer *w, const char *name,
                        struct cairn_err *err)
{
    layer_mirror_drop(w); /* a deletion needs the lower layers: not mirrored */
    struct archive_entry *ae = layer_entry_new(w, name, S_IFREG, 0, 0, 0);
    if (ae == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    archive_entry_set_size(ae, 0);
    int rc = layer_writer_header(w, ae, err);
    archive_entry_free(ae);
    return rc;
}

/* Joins dir (may be "") and a prefixed base name into buf. */
int layer_marker_name(char *buf, size_t cap, const char *dir, size_t dirlen,
                      const char *prefix, const char *base)
{
    int n = snprintf(buf, cap, "%.*s%s%s%s", (int)dirlen, dir,
                     dirlen ? "/" : "", prefix, base);
    return n < 0 || (size_t)n >= cap ? CAIRN_E_TOOBIG : 0;
}

int cairn_layer_add_whiteout(struct cairn_layer_writer *w, const char *path,
                             struct cairn_err *err)
{
    if (w == NULL || !rel_path_ok(path))
        return cairn_err_set(err, CAIRN_E_INVAL, "bad whiteout path '%s'",
                             path ? path : "(null)");
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) : 0;
    const char *base = slash ? slash + 1 : path;
    char name[LAYER_PATH_MAX];
    if (layer_marker_name(name, sizeof name, path, dirlen, WH_PREFIX, base) !=
        0)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "whiteout path too long: %s",
                             path);
    return layer_writer_marker(w, name, err);
}

int cairn_layer_add_opaque(struct cairn_layer_writer *w, const char *dir,
                           struct cairn_err *err)
{
    if (w == NULL || dir == NULL || (dir[0] != '\0' && !rel_path_ok(dir)))
        return cairn_err_set(err, CAIRN_E_INVAL, "bad opaque directory '%s'",
                             dir ? dir : "(null)");
    char name[LAYER_PATH_MAX];
    if (layer_marker_name(name, sizeof name, dir, strlen(dir), WH_OPAQUE, "") !=
        0)
        return cairn_err_set(err, CAIRN_E_TOOBIG, "opaque path too long: %s",
                             dir);
    return layer_writer_marker(w, name, err);
}

/* Hands the compressor's member records to the caller's reuse struct.
 * Out of memory leaves the list empty: only later reuse is lost. */
static void reuse_report(struct cairn_layer_writer *w)
{
    const struct layer_pgzip_member *v;
    size_t n, reused;
    layer_pgzip_members(w->pgz, &v, &n, &reused);
    cairn_layer_reuse_clear(w->reuse);
    w->reuse->reused = reused;
    w->reuse->members = n ? calloc(n, sizeof *w->reuse->members) : NULL;
    if (w->reuse->members == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        memcpy(w->reuse->members[i].key, v[i].key, sizeof v[i].key);
        w->reuse->members[i].offset = v[i].offset;
        w->reuse->members[i].size = v[i].size;
    }
    w->reuse->nmembers = n;
}

int cairn_layer_writer_finish(struct cairn_layer_writer *w,
                              struct cairn_layer_desc *desc, char **blob_path,
                              struct cairn_err *err)
{
    if (w == NULL || desc == NULL || blob_path == NULL) {
        writer_free(w, true);
        return cairn_err_set(err, CAIRN_E_INVAL, "layer finish: bad arguments");
    }
    int rc = 0;
    if (w->broken) {
        rc = layer_writer_fail_report(w, err);
        goto out;
    }
    /* Close writes the end-of-archive blocks through tar_write_cb. */
    if (!w->raw && archive_write_close(w->ar) != ARCHIVE_OK) {
        rc = writer_archive_fail(w, "(end of archive)", err);
        goto out;
    }
    if ((rc = out_compress(w, NULL, 0, true)) != 0 ||
        (rc = out_flush(w)) != 0) {
        cairn_err_set(err, rc, "writing layer %s: %s", w->path,
                      cairn_strerror(rc));
        goto out;
    }
    /* The blob is renamed into a content-addressed store next: make sure
     * its bytes are on disk before its name says they are there. */
    if (fdatasync(w->fd) != 0) {
        rc = -errno;
        cairn_err_set(err, rc, "sync %s: %s", w->path, cairn_strerror(rc));
        goto out;
    }
    struct cairn_layer_desc d;
    memset(&d, 0, sizeof d);
    cairn_layer_digest_format(w->tar_hash, d.diff_id, &rc);
    cairn_layer_digest_format(w->blob_hash, d.digest, &rc);
    if (rc != 0) {
        cairn_err_set(err, rc, "sha256: %s", cairn_strerror(rc));
        goto out;
    }
    d.size = (int64_t)w->blob_bytes;
    d.media_type = cairn_layer_media_type(w->comp);
    if (w->reuse != NULL && w->pgz != NULL)
        reuse_report(w);
    if (w->progress != NULL)
        w->progress(w->progress_arg, w->tar_bytes);
    *desc = d;
    *blob_path = w->path;
    w->path = NULL; /* handed to the caller: neither freed nor unlinked */
out:
    writer_free(w, true);
    return rc;
}

void cairn_layer_writer_abort(struct cairn_layer_writer *w)
{
    writer_free(w, true);
}

/* ------------------------------------------------------------------ */
/* ADD of a local archive                                              */

/* A reader for what Docker's ADD extracts (pkg/archive's
 * DecompressStream, then a tar reader): a tar, plain or inside gzip,
 * bzip2, xz or zstd. Zip, cpio and the rest stay files. */
static struct archive *add_reader_open(const char *path)
{
    struct archive *a = archive_read_new();
    if (a == NULL)
        return NULL;
    /* ARCHIVE_WARN: the filter runs through an external program. */
    if (archive_read_support_filter_gzip(a) < ARCHIVE_WARN ||
        archive_read_support_filter_bzip2(a) < ARCHIVE_WARN ||
        archive_read_support_filter_xz(a) < ARCHIVE_WARN ||
        archive_read_support_filter_zstd(a) < ARCHIVE_WARN ||
        archive_read_support_format_tar(a) != ARCHIVE_OK ||
        archive_read_open_filename(a, path, LAYER_TAR_BLOCK) != ARCHIVE_OK) {
        archive_read_free(a);
        return NULL;
    }
    return a;
}

int cairn_layer_is_archive(const char *path, bool *yes)
{
    *yes = false;
    struct archive *a = add_reader_open(path);
    if (a == NULL)
        return 0;
    struct archive_entry *ae = NULL;
    /* Docker asks the tar reader for a first header: an empty file or a
     * tar with no entries is no archive and is copied as it is. */
    int r = archive_read_next_header(a, &ae);
    *yes = r == ARCHIVE_OK || r == ARCHIVE_WARN;
    archive_read_free(a);
    return 0;
}

/* Cleans an archive path lexically into out: "", "." and leading "/"
 * dropped, ".." popping a component. Returns false when ".." climbs above
 * the root (Docker's "breakout") or the result does not fit. */
static bool add_clean(const char *base, const char *p, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        const char *s = pass == 0 ? base : p;
        while (s != NULL && *s) {
            const char *e = strchr(s, '/');
            size_t len = e ? (size_t)(e - s) : strlen(s);
            if (len == 2 && s[0] == '.' && s[1] == '.') {
                if (n == 0)
                    return false;
                while (n > 0 && out[n - 1] != '/')
                    n--;
                if (n > 0)
                    n--;
                out[n] = '\0';
            } else if (len > 0 && !(len == 1 && s[0] == '.')) {
                if (n + (n ? 1 : 0) + len + 1 > cap)
                    return false;
                if (n)
                    out[n++] = '/';
                memcpy(out + n, s, len);
                n += len;
                out[n] = '\0';
            }
            s = e ? e + 1 : NULL;
        }
    }
    return true;
}

/* dest + "/" + rel (either may be ""). */
static bool add_join(const char *dest, const char *rel, char *out, size_t cap)
{
    int n =
        snprintf(out, cap, "%s%s%s", dest, dest[0] && rel[0] ? "/" : "", rel);
    return n >= 0 && (size_t)n < cap;
}

struct add_state {
    struct cairn_layer_writer *w;
    const struct cairn_layer_extract *x;
    const char *src; /* for messages */
    struct archive *a;
    /* The unpack rules over the entries written (layer paths): a path
     * through a symlink the archive made, or a hard link to anything but
     * a file the archive made (outside the archive, /etc/shadow, through
     * one of its symlinks) would make a layer that cannot be unpacked. */
    struct cairn_layer_rules *rules;
};

static int add_refuse(struct add_state *s, const char *name, const char *why,
                      struct cairn_err *err)
{
    return cairn_err_set(err, CAIRN_E_CORRUPT, "archive %s: entry %s: %s",
                         s->src, name, why);
}

/* Checks the current entry's kind and link target (rel: its cleaned
 * path); a hard link's target, joined to dest, goes to target. *skip:
 * an entry that is left out (a socket). */
static int add_kind_check(struct add_state *s, struct archive_entry *in,
                          const char *name, const char *rel,
                          char target[LAYER_PATH_MAX], bool *skip,
                          struct cairn_err *err)
{
    mode_t type = archive_entry_filetype(in);
    const char *hard = archive_entry_hardlink(in);
    if (hard != NULL) {
        char hrel[LAYER_PATH_MAX];
        if (!add_clean("", hard, hrel, sizeof hrel) || hrel[0] == '\0' ||
            !add_join(s->x->dest, hrel, target, LAYER_PATH_MAX))
            return add_refuse(s, name, "hard link target escapes", err);
    } else if (type == AE_IFLNK) {
        const char *t = archive_entry_symlink(in);
        if (t == NULL || t[0] == '\0')
            return add_refuse(s, name, "symlink without a target", err);
        /* Docker's check: a relative target, joined to the link's
         * directory, stays inside dest. Absolute targets are resolved in
         * the container's root, so they cannot escape it. */
        char dir[LAYER_PATH_MAX], tmp[LAYER_PATH_MAX];
        snprintf(dir, sizeof dir, "%s", rel);
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = '\0';
        else
            dir[0] = '\0';
        if (t[0] != '/' && !add_clean(dir, t, tmp, sizeof tmp))
            return add_refuse(s, name, "symlink target escapes", err);
        if (strlen(t) >= LAYER_PATH_MAX)
            return add_refuse(s, name, "symlink target too long", err);
    } else if (type == AE_IFSOCK) {
        *skip = true; /* tar cannot hold sockets anyway */
    } else if (type == AE_IFCHR && archive_entry_rdev(in) == 0) {
        return add_refuse(s, name, "a 0/0 device is an overlay whiteout", err);
    } else if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFIFO &&
               type != AE_IFCHR && type != AE_IFBLK) {
        return add_refuse(s, name, "unknown entry type", err);
    }
    return 0;
}

/* Copies the current entry's size bytes of data into the layer (path:
 * its path there). The header promised size bytes: anything short
 * breaks the writer. */
static int add_data(struct add_state *s, const char *name, const char *path,
                    int64_t size, struct cairn_err *err)
{
    int64_t left = size;
    while (left > 0) {
        la_ssize_t r = archive_read_data(s->a, s->w->copy, LAYER_IO_BUF);
        if (r <= 0) {
            const char *why = archive_error_string(s->a);
            if (r == 0 || why == NULL)
                why = "truncated";
            writer_break(s->w, CAIRN_E_CORRUPT, "archive %s: entry %s: %s",
                         s->src, name, why);
            return layer_writer_fail_report(s->w, err);
        }
        if (r > left)
            r = (la_ssize_t)left;
        int rc = writer_data(s->w, s->w->copy, (size_t)r, path, err);
        if (rc != 0)
            return rc;
        left -= r;
    }
    return 0;
}

/* Adds the current entry of the archive (header in). */
static int add_one(struct add_state *s, struct archive_entry *in,
                   struct cairn_err *err)
{
    const struct cairn_layer_extract *x = s->x;
    const char *name = archive_entry_pathname(in);
    if (name == NULL || name[0] == '\0')
        return add_refuse(s, "(no name)", "entry without a path", err);
    char rel[LAYER_PATH_MAX], path[LAYER_PATH_MAX];
    if (!add_clean("", name, rel, sizeof rel))
        return add_refuse(s, name, "path escapes the destination", err);
    if (!add_join(x->dest, rel, path, sizeof path))
        return add_refuse(s, name, "path too long", err);
    mode_t type = archive_entry_filetype(in);
    const char *hard = archive_entry_hardlink(in);
    if (path[0] == '\0')
        return 0; /* "./" with dest "/": the root is never an entry */
    if (rel[0] == '\0' && (type != AE_IFDIR || hard != NULL))
        return add_refuse(s, name, "the archive root is not a directory", err);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0)
        return add_refuse(s, name, "\".wh.\" names are OCI whiteouts", err);

    char target[LAYER_PATH_MAX];
    bool skip = false;
    int rc = add_kind_check(s, in, name, rel, target, &skip, err);
    if (rc != 0 || skip)
        return rc;

    mode_t mode = (mode_t)(type | (archive_entry_perm(in) & 07777));
    if (hard != NULL)
        mode = (mode_t)(S_IFREG | (archive_entry_perm(in) & 07777));
    if (x->entry != NULL) {
        rc = x->entry(x->arg, path, mode, err);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    uid_t uid = x->chown ? x->uid : (uid_t)archive_entry_uid(in);
    gid_t gid = x->chown ? x->gid : (gid_t)archive_entry_gid(in);
    struct archive_entry *ae =
        layer_entry_new(s->w, path, mode, uid, gid, archive_entry_mtime(in));
    if (ae == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    int64_t size = 0;
    if (hard != NULL) {
        archive_entry_copy_hardlink(ae, target);
    } else if (type == AE_IFLNK) {
        archive_entry_copy_symlink(ae, archive_entry_symlink(in));
    } else if (type == AE_IFCHR || type == AE_IFBLK) {
        archive_entry_set_rdev(ae, archive_entry_rdev(in));
    } else if (type == AE_IFREG) {
        size = archive_entry_size(in);
    }
    archive_entry_set_size(ae, size);
    struct cairn_layer_rule_view v;
    char rwhy[512];
    rc = cairn_layer_rules_check(s->rules, path, hard ? S_IFREG : type,
                                     hard ? target : NULL, &v, rwhy,
                                     sizeof rwhy);
    if (rc != 0) {
        archive_entry_free(ae);
        return rc == CAIRN_E_NOMEM ? cairn_err_set(err, rc, "out of memory")
                                   : add_refuse(s, name, rwhy, err);
    }
    /* Extended attributes travel as Docker's untar restores them. */
    const char *xn;
    const void *xv;
    size_t xl;
    archive_entry_xattr_reset(in);
    while (archive_entry_xattr_next(in, &xn, &xv, &xl) == ARCHIVE_OK)
        archive_entry_xattr_add_entry(ae, xn, xv, xl);
    rc = layer_writer_header(s->w, ae, err);
    archive_entry_free(ae);
    if (rc != 0)
        return rc;
    return add_data(s, name, path, size, err);
}

int cairn_layer_add_archive(struct cairn_layer_writer *w, const char *path,
                            const struct cairn_layer_extract *x,
                            struct cairn_err *err)
{
    if (w == NULL || path == NULL || x == NULL || x->dest == NULL ||
        (x->dest[0] != '\0' && !rel_path_ok(x->dest)))
        return cairn_err_set(err, CAIRN_E_INVAL, "add archive: bad arguments");
    if (w->broken)
        return layer_writer_fail_report(w, err);
    layer_mirror_drop(w); /* links, devices, xattrs: left to the unpack */
    struct add_state s = {.w = w, .x = x, .src = path};
    s.rules = cairn_layer_rules_new();
    if (s.rules == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    s.a = add_reader_open(path);
    if (s.a == NULL) {
        cairn_layer_rules_free(s.rules);
        return cairn_err_set(err, CAIRN_E_ARCHIVE, "%s: not a tar archive",
                             path);
    }
    int rc = 0;
    for (;;) {
        struct archive_entry *in = NULL;
        int r = archive_read_next_header(s.a, &in);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            const char *why = archive_error_string(s.a);
            rc = cairn_err_set(err, CAIRN_E_CORRUPT, "archive %s: %s", path,
                               why ? why : "corrupt");
            break;
        }
        if ((rc = add_one(&s, in, err)) != 0)
            break;
    }
    archive_read_free(s.a);
    cairn_layer_rules_free(s.rules);
    return rc;
}
