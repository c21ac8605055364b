#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cachekey/digest.h"
#include "client/layer.h"
#include "common/buf.h"
#include "common/error.h"

#define MIB ((size_t)1 << 20)

struct fixture {
    char dir[64]; /* scratch root: upper/, tmp/, out/ ... */
};

/* ---- helpers -------------------------------------------------------- */

static void path_in(char *buf, size_t cap, const struct fixture *f,
                    const char *rel)
{
    int n = snprintf(buf, cap, "%s/%s", f->dir, rel);
    assert_true(n > 0 && (size_t)n < cap);
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rng_next(&s) >> 32);
}

static void mkdir_at(const struct fixture *f, const char *rel, mode_t mode)
{
    char p[512];
    path_in(p, sizeof p, f, rel);
    assert_int_equal(mkdir(p, mode), 0);
    assert_int_equal(chmod(p, mode), 0); /* umask */
}

static void write_file_at(const struct fixture *f, const char *rel,
                          size_t size, uint64_t seed, mode_t mode)
{
    char p[512];
    path_in(p, sizeof p, f, rel);
    uint8_t *buf = malloc(size ? size : 1);
    assert_non_null(buf);
    fill(buf, size, seed);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, buf, size), (ssize_t)size);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    free(buf);
}

static int rm_cb(const char *p, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/cairn-layer-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    mkdir_at(f, "tmp", 0700);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void file_sha256(const char *path, char out[CAIRN_DIGEST_STR_LEN])
{
    struct ck_sha256 *h;
    assert_int_equal(ck_sha256_new(&h), 0);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        assert_int_equal(ck_sha256_update(h, buf, (size_t)n), 0);
    assert_int_equal(n, 0);
    close(fd);
    uint8_t bin[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    assert_int_equal(ck_sha256_final(h, bin), 0);
    ck_sha256_free(h);
    ck_hex_encode(bin, hex);
    snprintf(out, CAIRN_DIGEST_STR_LEN, "sha256:%s", hex);
}

/* sha256 of a command's stdout (gzip -dc / zstd -dc); false when the tool
 * is missing. */
static bool cmd_sha256(const char *cmd, char out[CAIRN_DIGEST_STR_LEN])
{
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return false;
    struct ck_sha256 *h;
    assert_int_equal(ck_sha256_new(&h), 0);
    uint8_t buf[65536];
    size_t n, total = 0;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
        assert_int_equal(ck_sha256_update(h, buf, n), 0);
        total += n;
    }
    int st = pclose(p);
    uint8_t bin[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    assert_int_equal(ck_sha256_final(h, bin), 0);
    ck_sha256_free(h);
    if (st != 0 || total == 0)
        return false;
    ck_hex_encode(bin, hex);
    snprintf(out, CAIRN_DIGEST_STR_LEN, "sha256:%s", hex);
    return true;
}

/* Lists a layer blob with libarchive's own decompressors: one line per
 * entry, "name type mode uid:gid size [-> link]" plus xattr names. */
static char *list_tar(const char *blob)
{
    struct archive *a = archive_read_new();
    assert_non_null(a);
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    assert_int_equal(archive_read_open_filename(a, blob, 65536), ARCHIVE_OK);
    struct cairn_buf b;
    cairn_buf_init(&b, 0);
    struct archive_entry *ae;
    int r;
    while ((r = archive_read_next_header(a, &ae)) == ARCHIVE_OK) {
        const char *type = "?";
        switch (archive_entry_filetype(ae)) {
        case AE_IFREG:
            type = archive_entry_hardlink(ae) ? "h" : "f";
            break;
        case AE_IFDIR:
            type = "d";
            break;
        case AE_IFLNK:
            type = "l";
            break;
        case AE_IFCHR:
            type = "c";
            break;
        case AE_IFBLK:
            type = "b";
            break;
        case AE_IFIFO:
            type = "p";
            break;
        }
        if (archive_entry_hardlink(ae))
            type = "h";
        assert_int_equal(
            cairn_buf_printf(&b, "%s %s %04o %ld:%ld %ld", archive_entry_pathname(ae),
                             type, (unsigned)(archive_entry_perm(ae)),
                             (long)archive_entry_uid(ae),
                             (long)archive_entry_gid(ae),
                             (long)archive_entry_size(ae)),
            0);
        if (archive_entry_symlink(ae))
            assert_int_equal(
                cairn_buf_printf(&b, " -> %s", archive_entry_symlink(ae)), 0);
        if (archive_entry_hardlink(ae))
            assert_int_equal(
                cairn_buf_printf(&b, " => %s", archive_entry_hardlink(ae)), 0);
        if (archive_entry_filetype(ae) == AE_IFCHR)
            assert_int_equal(cairn_buf_printf(&b, " %u,%u",
                                              (unsigned)archive_entry_rdevmajor(ae),
                                              (unsigned)archive_entry_rdevminor(ae)),
                             0);
        /* No uname/gname: layers carry numeric ids only. */
        const char *un = archive_entry_uname(ae), *gn = archive_entry_gname(ae);
        assert_true(un == NULL || un[0] == '\0');
        assert_true(gn == NULL || gn[0] == '\0');
        assert_false(archive_entry_atime_is_set(ae));
        assert_false(archive_entry_ctime_is_set(ae));
        const char *xn;
        const void *xv;
        size_t xl;
        archive_entry_xattr_reset(ae);
        while (archive_entry_xattr_next(ae, &xn, &xv, &xl) == ARCHIVE_OK)
            assert_int_equal(cairn_buf_printf(&b, " x:%s=%.*s", xn, (int)xl,
                                              (const char *)xv),
                             0);
        assert_int_equal(cairn_buf_putc(&b, '\n'), 0);
    }
    assert_int_equal(r, ARCHIVE_EOF);
    archive_read_free(a);
    return cairn_buf_take(&b);
}

/* mtime of the first entry named name, or -1. */
static int64_t tar_mtime_of(const char *blob, const char *name)
{
    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    assert_int_equal(archive_read_open_filename(a, blob, 65536), ARCHIVE_OK);
    struct archive_entry *ae;
    int64_t t = -1;
    while (archive_read_next_header(a, &ae) == ARCHIVE_OK)
        if (strcmp(archive_entry_pathname(ae), name) == 0) {
            t = archive_entry_mtime(ae);
            break;
        }
    archive_read_free(a);
    return t;
}

static void writer_new_ok(const struct fixture *f, enum cairn_compression c,
                          int64_t epoch, struct cairn_layer_writer **w)
{
    char tmp[512];
    path_in(tmp, sizeof tmp, f, "tmp");
    struct cairn_layer_opts o = {.compression = c, .source_date_epoch = epoch};
    struct cairn_err err = {0};
    int rc = cairn_layer_writer_new(tmp, &o, w, &err);
    if (rc != 0)
        fail_msg("writer_new: %s", err.msg);
}

static char *finish_ok(struct cairn_layer_writer *w, struct cairn_layer_desc *d)
{
    char *blob = NULL;
    struct cairn_err err = {0};
    int rc = cairn_layer_writer_finish(w, d, &blob, &err);
    if (rc != 0)
        fail_msg("finish: %s", err.msg);
    return blob;
}

/* The upper directory used by several tests. Ownership and times are set
 * so the listing is predictable. */
static void make_upper(const struct fixture *f)
{
    char p[512], q[512];
    mkdir_at(f, "upper", 0755);
    mkdir_at(f, "upper/bin", 0755);
    write_file_at(f, "upper/bin/tool", 3 * MIB, 1, 04755);
    write_file_at(f, "upper/bin/empty", 0, 2, 0600);
    write_file_at(f, "upper/bin/small", 1000, 3, 0644);
    path_in(p, sizeof p, f, "upper/bin/tool");
    path_in(q, sizeof q, f, "upper/bin/tool-hl");
    assert_int_equal(link(p, q), 0);
    path_in(p, sizeof p, f, "upper/bin/small");
    assert_int_equal(lsetxattr(p, "user.cap", "ep", 2, 0), 0);
    assert_int_equal(lsetxattr(p, "trusted.overlay.origin", "zz", 2, 0), 0);
    assert_int_equal(chown(p, 1000, 2000), 0);
    path_in(p, sizeof p, f, "upper/bin/sh");
    assert_int_equal(symlink("tool", p), 0);
    mkdir_at(f, "upper/bin-x", 0700); /* sorts between "bin" and "bin/..." */
    mkdir_at(f, "upper/etc", 0755);
    mkdir_at(f, "upper/etc/opq", 0750);
    path_in(p, sizeof p, f, "upper/etc/opq");
    assert_int_equal(lsetxattr(p, "trusted.overlay.opaque", "y", 1, 0), 0);
    write_file_at(f, "upper/etc/opq/new", 5, 4, 0644);
    path_in(p, sizeof p, f, "upper/etc/gone");
    assert_int_equal(mknod(p, S_IFCHR | 0, makedev(0, 0)), 0);
    path_in(p, sizeof p, f, "upper/etc/fifo");
    assert_int_equal(mknod(p, S_IFIFO | 0640, 0), 0);
    assert_int_equal(chmod(p, 0640), 0);
    path_in(p, sizeof p, f, "upper/etc/null");
    assert_int_equal(mknod(p, S_IFCHR | 0666, makedev(1, 3)), 0);
    assert_int_equal(chmod(p, 0666), 0);
    mkdir_at(f, "upper/proc", 0555);          /* skipped: a mount point */
    write_file_at(f, "upper/proc/x", 1, 5, 0644);
}

static const char *const upper_skip[] = {"/proc", NULL};

static const char upper_listing[] =
    "bin/ d 0755 0:0 0\n"
    "bin-x/ d 0700 0:0 0\n"
    "bin/empty f 0600 0:0 0\n"
    "bin/sh l 0777 0:0 0 -> tool\n"
    "bin/small f 0644 1000:2000 1000 x:user.cap=ep\n"
    "bin/tool f 4755 0:0 3145728\n"
    "bin/tool-hl h 4755 0:0 0 => bin/tool\n"
    "etc/ d 0755 0:0 0\n"
    "etc/.wh.gone f 0000 0:0 0\n"
    "etc/fifo p 0640 0:0 0\n"
    "etc/null c 0666 0:0 0 1,3\n"
    "etc/opq/ d 0750 0:0 0\n"
    "etc/opq/.wh..wh..opq f 0000 0:0 0\n"
    "etc/opq/new f 0644 0:0 5\n";

static char *write_upper(const struct fixture *f, enum cairn_compression c,
                         int64_t epoch, struct cairn_layer_desc *d)
{
    struct cairn_layer_writer *w;
    writer_new_ok(f, c, epoch, &w);
    char up[512];
    path_in(up, sizeof up, f, "upper");
    struct cairn_err err = {0};
    int rc = cairn_layer_add_upper(w, up, upper_skip, &err);
    if (rc != 0)
        fail_msg("add_upper: %s", err.msg);
    return finish_ok(w, d);
}

/* ---- writer --------------------------------------------------------- */

static void test_upper_listing(void **state)
{
    struct fixture *f = *state;
    make_upper(f);
    struct cairn_layer_desc d;
    char *blob = write_upper(f, CAIRN_COMPRESS_GZIP, -1, &d);
    char *list = list_tar(blob);
    assert_string_equal(list, upper_listing);
    assert_string_equal(d.media_type, CAIRN_MEDIA_LAYER_GZIP);
    struct stat st;
    assert_int_equal(stat(blob, &st), 0);
    assert_int_equal(st.st_size, d.size);
    free(list);
    free(blob);
}

static void check_digests(const char *blob, const struct cairn_layer_desc *d,
                          const char *decompress)
{
    char got[CAIRN_DIGEST_STR_LEN];
    file_sha256(blob, got);
    assert_string_equal(got, d->digest);
    if (decompress == NULL) {
        assert_string_equal(d->diff_id, d->digest);
        return;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s '%s' 2>/dev/null", decompress, blob);
    if (cmd_sha256(cmd, got))
        assert_string_equal(got, d->diff_id);
    else
        print_message("skipping %s check (tool missing)\n", decompress);
}

static void test_digests_all_compressions(void **state)
{
    struct fixture *f = *state;
    make_upper(f);
    static const struct {
        enum cairn_compression c;
        const char *media;
        const char *tool;
    } cases[] = {
        {CAIRN_COMPRESS_GZIP, CAIRN_MEDIA_LAYER_GZIP, "gzip -dc"},
        {CAIRN_COMPRESS_ZSTD, CAIRN_MEDIA_LAYER_ZSTD, "zstd -dc"},
        {CAIRN_COMPRESS_NONE, CAIRN_MEDIA_LAYER_TAR, NULL},
    };
    char diff_ids[3][CAIRN_DIGEST_STR_LEN];
    for (size_t i = 0; i < 3; i++) {
        struct cairn_layer_desc d;
        char *blob = write_upper(f, cases[i].c, -1, &d);
        assert_string_equal(d.media_type, cases[i].media);
        check_digests(blob, &d, cases[i].tool);
        char *list = list_tar(blob);
        assert_string_equal(list, upper_listing);
        free(list);
        memcpy(diff_ids[i], d.diff_id, sizeof d.diff_id);
        /* digest_file recomputes both digests from the blob alone. */
        struct cairn_layer_desc d2;
        struct cairn_err err = {0};
        int rc = cairn_layer_digest_file(blob, &d2, &err);
        if (rc != 0)
            fail_msg("digest_file: %s", err.msg);
        assert_string_equal(d2.digest, d.digest);
        assert_string_equal(d2.diff_id, d.diff_id);
        assert_int_equal(d2.size, d.size);
        assert_string_equal(d2.media_type, d.media_type);
        unlink(blob);
        free(blob);
    }
    /* Same tar whatever the compression. */
    assert_string_equal(diff_ids[0], diff_ids[1]);
    assert_string_equal(diff_ids[0], diff_ids[2]);
}

static void test_deterministic(void **state)
{
    struct fixture *f = *state;
    make_upper(f);
    for (int c = CAIRN_COMPRESS_GZIP; c <= CAIRN_COMPRESS_NONE; c++) {
        struct cairn_layer_desc d1, d2;
        char *b1 = write_upper(f, (enum cairn_compression)c, 1000, &d1);
        char *b2 = write_upper(f, (enum cairn_compression)c, 1000, &d2);
        assert_string_not_equal(b1, b2);
        assert_string_equal(d1.digest, d2.digest);
        assert_string_equal(d1.diff_id, d2.diff_id);
        assert_int_equal(d1.size, d2.size);
        unlink(b1);
        unlink(b2);
        free(b1);
        free(b2);
    }
}

static void test_epoch_clamp(void **state)
{
    struct fixture *f = *state;
    struct cairn_layer_writer *w;
    writer_new_ok(f, CAIRN_COMPRESS_NONE, 5000, &w);
    struct cairn_err err = {0};
    struct cairn_layer_entry old = {.path = "old", .mode = S_IFDIR | 0755,
                                    .mtime = 100};
    struct cairn_layer_entry newer = {.path = "new", .mode = S_IFDIR | 0755,
                                      .mtime = 999999};
    struct cairn_layer_entry data = {.path = "data", .mode = 0644,
                                     .mtime = 7777};
    assert_int_equal(cairn_layer_add(w, &old, &err), 0);
    assert_int_equal(cairn_layer_add(w, &newer, &err), 0);
    assert_int_equal(cairn_layer_add_data(w, &data, "hi", 2, &err), 0);
    struct cairn_layer_desc d;
    char *blob = finish_ok(w, &d);
    assert_int_equal(tar_mtime_of(blob, "old/"), 100);
    assert_int_equal(tar_mtime_of(blob, "new/"), 5000);
    assert_int_equal(tar_mtime_of(blob, "data"), 5000);
    free(blob);

    /* Without an epoch the times are kept. */
    writer_new_ok(f, CAIRN_COMPRESS_NONE, -1, &w);
    assert_int_equal(cairn_layer_add(w, &newer, &err), 0);
    blob = finish_ok(w, &d);
    assert_int_equal(tar_mtime_of(blob, "new/"), 999999);
    free(blob);
}

static void test_entry_api(void **state)
{
    struct fixture *f = *state;
    struct cairn_layer_writer *w;
    writer_new_ok(f, CAIRN_COMPRESS_GZIP, 0, &w);
    struct cairn_err err = {0};
    /* A path longer than ustar's 255 bytes needs a pax header. */
    char longp[400];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    longp[100] = '/';
    longp[300] = '/';
    struct cairn_layer_entry dir = {.path = "d", .mode = S_IFDIR | 0711,
                                    .uid = 3000000, .gid = 7};
    struct cairn_layer_entry ln = {.path = "d/l", .mode = S_IFLNK | 0777,
                                   .link_target = "/etc/passwd"};
    struct cairn_layer_entry lf = {.path = longp, .mode = 0640};
    assert_int_equal(cairn_layer_add(w, &dir, &err), 0);
    assert_int_equal(cairn_layer_add(w, &ln, &err), 0);
    assert_int_equal(cairn_layer_add_data(w, &lf, "x", 1, &err), 0);
    assert_int_equal(cairn_layer_add_whiteout(w, "d/old", &err), 0);
    assert_int_equal(cairn_layer_add_whiteout(w, "top", &err), 0);
    assert_int_equal(cairn_layer_add_opaque(w, "d", &err), 0);
    assert_int_equal(cairn_layer_add_opaque(w, "", &err), 0);

    /* Refused without breaking the writer. */
    struct cairn_layer_entry bad[] = {
        {.path = "/abs", .mode = S_IFDIR | 0755},
        {.path = "a/../b", .mode = S_IFDIR | 0755},
        {.path = "./a", .mode = S_IFDIR | 0755},
        {.path = "a//b", .mode = S_IFDIR | 0755},
        {.path = "", .mode = S_IFDIR | 0755},
        {.path = "reg", .mode = S_IFREG | 0644},
        {.path = "lnk", .mode = S_IFLNK | 0777},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cairn_layer_add(w, &bad[i], &err), CAIRN_E_INVAL);
    assert_int_equal(cairn_layer_add_whiteout(w, "../x", &err), CAIRN_E_INVAL);

    /* add_file with a file shorter than announced breaks the writer. */
    char fp[512];
    write_file_at(f, "short", 10, 9, 0644);
    path_in(fp, sizeof fp, f, "short");
    int fd = open(fp, O_RDONLY);
    assert_true(fd >= 0);
    struct cairn_layer_entry fe = {.path = "f", .mode = 0644};
    assert_int_equal(cairn_layer_add_file(w, &fe, fd, 10, &err), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    struct cairn_layer_desc d;
    char *blob = NULL;
    {
        /* Finish first the good writer's listing check. */
        struct cairn_layer_writer *w2;
        writer_new_ok(f, CAIRN_COMPRESS_NONE, -1, &w2);
        assert_int_equal(cairn_layer_add_file(w2, &fe, fd, 11, &err),
                         CAIRN_E_IO);
        assert_int_equal(cairn_layer_add(w2, &dir, &err), CAIRN_E_IO);
        assert_int_equal(cairn_layer_writer_finish(w2, &d, &blob, &err),
                         CAIRN_E_IO);
        assert_null(blob);
    }
    close(fd);
    blob = finish_ok(w, &d);
    char *list = list_tar(blob);
    char want[2048];
    snprintf(want, sizeof want,
             "d/ d 0711 3000000:7 0\n"
             "d/l l 0777 0:0 0 -> /etc/passwd\n"
             "%s f 0640 0:0 1\n"
             "d/.wh.old f 0000 0:0 0\n"
             ".wh.top f 0000 0:0 0\n"
             "d/.wh..wh..opq f 0000 0:0 0\n"
             ".wh..wh..opq f 0000 0:0 0\n"
             "f f 0644 0:0 10\n",
             longp);
    assert_string_equal(list, want);
    free(list);
    free(blob);
    /* Only the finished blob is left in tmp: failed and aborted writers
     * remove their files. */
    struct cairn_layer_writer *w3;
    writer_new_ok(f, CAIRN_COMPRESS_ZSTD, -1, &w3);
    cairn_layer_writer_abort(w3);
    cairn_layer_writer_abort(NULL);
}

static void progress_cb(void *arg, uint64_t bytes)
{
    uint64_t *last = arg;
    assert_true(bytes >= *last);
    *last = bytes;
}

static void test_progress(void **state)
{
    struct fixture *f = *state;
    char tmp[512];
    path_in(tmp, sizeof tmp, f, "tmp");
    uint64_t last = 0;
    struct cairn_layer_opts o = {.compression = CAIRN_COMPRESS_ZSTD,
                                 .source_date_epoch = -1,
                                 .progress = progress_cb,
                                 .progress_arg = &last};
    struct cairn_layer_writer *w;
    struct cairn_err err = {0};
    assert_int_equal(cairn_layer_writer_new(tmp, &o, &w, &err), 0);
    size_t n = 20 * MIB;
    uint8_t *buf = calloc(1, n);
    assert_non_null(buf);
    struct cairn_layer_entry e = {.path = "big", .mode = 0644};
    assert_int_equal(cairn_layer_add_data(w, &e, buf, n, &err), 0);
    assert_true(last >= 16 * MIB);
    struct cairn_layer_desc d;
    char *blob = finish_ok(w, &d);
    assert_true(last > n);
    free(buf);
    free(blob);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upper_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digests_all_compressions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deterministic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch_clamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_api, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
