#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cachekey/digest.h"
#include "client/store/layer.h"
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

static void write_file_at(const struct fixture *f, const char *rel, size_t size,
                          uint64_t seed, mode_t mode)
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
            cairn_buf_printf(
                &b, "%s %s %04o %ld:%ld %ld", archive_entry_pathname(ae), type,
                (unsigned)(archive_entry_perm(ae)), (long)archive_entry_uid(ae),
                (long)archive_entry_gid(ae), (long)archive_entry_size(ae)),
            0);
        if (archive_entry_symlink(ae))
            assert_int_equal(
                cairn_buf_printf(&b, " -> %s", archive_entry_symlink(ae)), 0);
        if (archive_entry_hardlink(ae))
            assert_int_equal(
                cairn_buf_printf(&b, " => %s", archive_entry_hardlink(ae)), 0);
        if (archive_entry_filetype(ae) == AE_IFCHR)
            assert_int_equal(
                cairn_buf_printf(&b, " %u,%u",
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
    mkdir_at(f, "upper/proc", 0555); /* skipped: a mount point */
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

/* Writes the file at path to fd from a child process: first one byte,
 * then the rest, as a download arrives (the magic split across reads). */
static pid_t feed_split(const char *path, int fd)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid > 0)
        return pid;
    int in = open(path, O_RDONLY);
    char buf[65536];
    ssize_t n = in < 0 ? -1 : read(in, buf, 1);
    if (n == 1 && write(fd, buf, 1) == 1) {
        usleep(20000);
        while ((n = read(in, buf, sizeof buf)) > 0)
            if (write(fd, buf, (size_t)n) != n)
                break;
    }
    _exit(0);
}

/* cairn_layer_verify_fd: a layer as the writer made it passes under its
 * own media type and no other; size, diff_id and the tar cap hold; a
 * socket that hands out the magic one byte at a time still works. */
static void test_verify(void **state)
{
    struct fixture *f = *state;
    make_upper(f);
    static const char *const media[] = {CAIRN_MEDIA_LAYER_GZIP,
                                        CAIRN_MEDIA_LAYER_ZSTD,
                                        CAIRN_MEDIA_LAYER_TAR};
    static const enum cairn_compression comp[] = {
        CAIRN_COMPRESS_GZIP, CAIRN_COMPRESS_ZSTD, CAIRN_COMPRESS_NONE};
    for (size_t i = 0; i < 3; i++) {
        struct cairn_layer_desc d;
        char *blob = write_upper(f, comp[i], -1, &d);
        for (size_t k = 0; k < 3; k++) {
            struct cairn_layer_expect want = {d.digest, d.diff_id, media[k],
                                              d.size, 0};
            struct cairn_err err = {0};
            int fd = open(blob, O_RDONLY);
            int rc = cairn_layer_verify_fd(fd, &want, &err);
            close(fd);
            if (k == i && rc != 0)
                fail_msg("verify %s: %s", media[k], err.msg);
            if (k != i && (rc != CAIRN_E_CORRUPT ||
                           strstr(err.msg, "but its media type") == NULL))
                fail_msg("%zu labelled %s: rc %d %s", i, media[k], rc,
                         err.msg);
        }
        struct cairn_layer_expect want = {d.digest, d.diff_id, media[i],
                                          d.size, 0};
        struct cairn_err err = {0};
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        pid_t pid = feed_split(blob, sv[0]);
        close(sv[0]);
        int rc = cairn_layer_verify_fd(sv[1], &want, &err);
        close(sv[1]);
        waitpid(pid, NULL, 0);
        if (rc != 0)
            fail_msg("verify from a socket: %s", err.msg);
        /* A wrong diff_id, a wrong size, a cap under the tar's size. */
        char other[CAIRN_DIGEST_STR_LEN];
        snprintf(other, sizeof other, "sha256:%064d", 0);
        struct cairn_layer_expect bad[] = {
            {d.digest, other, media[i], d.size, 0},
            {d.digest, d.diff_id, media[i], d.size + 1, 0},
            {d.digest, d.diff_id, media[i], d.size, 1024},
        };
        static const int code[] = {CAIRN_E_DIGEST, CAIRN_E_DIGEST,
                                   CAIRN_E_TOOBIG};
        for (size_t k = 0; k < 3; k++) {
            int fd = open(blob, O_RDONLY);
            rc = cairn_layer_verify_fd(fd, &bad[k], &err);
            close(fd);
            if (rc != code[k])
                fail_msg("bad case %zu: rc %d %s", k, rc, err.msg);
        }
        unlink(blob);
        free(blob);
    }
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

/* The compressed bytes do not depend on the number of compression threads
 * (CAIRN_LAYER_THREADS): gzip's members and zstd's jobs are cut the same
 * way for 1, 2, 3 or 4 workers, at sizes spanning many blocks and jobs; gzip
 * -t and zstd -t accept every blob; the diff_id is the same across codecs. */
static void test_threads_same_bytes(void **state)
{
    struct fixture *f = *state;
    mkdir_at(f, "upper", 0755);
    write_file_at(f, "upper/noise", 3 * MIB + 17, 9, 0644);
    char p[512];
    path_in(p, sizeof p, f, "upper/text");
    FILE *t = fopen(p, "w");
    assert_non_null(t);
    for (int i = 0; i < 200000; i++)
        fprintf(t, "line %d of a text that compresses %d\n", i, i % 97);
    fclose(t);
    static const char *const tools[] = {"gzip -t", "zstd -q -t", NULL};
    char diff_id[CAIRN_DIGEST_STR_LEN] = "";
    for (int c = CAIRN_COMPRESS_GZIP; c <= CAIRN_COMPRESS_NONE; c++) {
        char digest[CAIRN_DIGEST_STR_LEN] = "";
        for (int threads = 1; threads <= 4; threads++) {
            char v[8];
            snprintf(v, sizeof v, "%d", threads);
            setenv("CAIRN_LAYER_THREADS", v, 1);
            struct cairn_layer_writer *w;
            writer_new_ok(f, (enum cairn_compression)c, 1000, &w);
            char up[512];
            path_in(up, sizeof up, f, "upper");
            struct cairn_err err = {0};
            if (cairn_layer_add_upper(w, up, NULL, &err) != 0)
                fail_msg("add_upper: %s", err.msg);
            struct cairn_layer_desc d;
            char *blob = finish_ok(w, &d);
            if (digest[0] == '\0')
                memcpy(digest, d.digest, sizeof digest);
            else if (strcmp(digest, d.digest) != 0)
                fail_msg("compression %d: %d threads gave %s, 1 gave %s", c,
                         threads, d.digest, digest);
            if (diff_id[0] == '\0')
                memcpy(diff_id, d.diff_id, sizeof diff_id);
            assert_string_equal(diff_id, d.diff_id);
            if (tools[c] != NULL) {
                char cmd[1024];
                snprintf(cmd, sizeof cmd, "%s %s", tools[c], blob);
                assert_int_equal(system(cmd), 0);
            }
            unlink(blob);
            free(blob);
        }
    }
    unsetenv("CAIRN_LAYER_THREADS");
}

/* cairn_layer_add_raw: the bytes fed are the whole uncompressed layer
 * (diff_id = their sha256, gzip -dc gives them back), the blob does not
 * depend on the thread count or on how the bytes were cut, and no entry
 * can be mixed in. */
static void test_raw_bytes(void **state)
{
    struct fixture *f = *state;
    size_t n = 3 * MIB + 5;
    uint8_t *data = malloc(n);
    assert_non_null(data);
    fill(data, n / 2, 3); /* noise, then text-like repeats */
    for (size_t i = n / 2; i < n; i++)
        data[i] = (uint8_t)("layer bytes kept as they are\n"[i % 29]);
    char want[CAIRN_DIGEST_STR_LEN];
    uint8_t bin[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    assert_int_equal(ck_sha256(data, n, bin), 0);
    ck_hex_encode(bin, hex);
    snprintf(want, sizeof want, "sha256:%s", hex);
    char digest[CAIRN_DIGEST_STR_LEN] = "";
    struct cairn_err err = {0};
    for (int threads = 1; threads <= 2; threads++) {
        setenv("CAIRN_LAYER_THREADS", threads == 1 ? "1" : "2", 1);
        struct cairn_layer_writer *w;
        writer_new_ok(f, CAIRN_COMPRESS_GZIP, -1, &w);
        size_t step = threads == 1 ? 4096 : 1000003; /* cut differently */
        for (size_t at = 0; at < n; at += step)
            assert_int_equal(cairn_layer_add_raw(
                                 w, data + at, at + step < n ? step : n - at,
                                 &err),
                             0);
        struct cairn_layer_entry e = {.path = "x", .mode = S_IFDIR | 0755};
        assert_int_equal(cairn_layer_add(w, &e, &err), CAIRN_E_INVAL);
        struct cairn_layer_desc d;
        char *blob = finish_ok(w, &d);
        assert_string_equal(d.diff_id, want);
        assert_string_equal(d.media_type, CAIRN_MEDIA_LAYER_GZIP);
        check_digests(blob, &d, "gzip -dc");
        if (digest[0] == '\0')
            memcpy(digest, d.digest, sizeof digest);
        assert_string_equal(digest, d.digest);
        unlink(blob);
        free(blob);
    }
    unsetenv("CAIRN_LAYER_THREADS");
    /* Raw bytes after an entry are refused. */
    struct cairn_layer_writer *w;
    writer_new_ok(f, CAIRN_COMPRESS_GZIP, -1, &w);
    struct cairn_layer_entry e = {.path = "x", .mode = S_IFDIR | 0755};
    assert_int_equal(cairn_layer_add(w, &e, &err), 0);
    assert_int_equal(cairn_layer_add_raw(w, data, 10, &err), CAIRN_E_INVAL);
    cairn_layer_writer_abort(w);
    free(data);
}

static void test_epoch_clamp(void **state)
{
    struct fixture *f = *state;
    struct cairn_layer_writer *w;
    writer_new_ok(f, CAIRN_COMPRESS_NONE, 5000, &w);
    struct cairn_err err = {0};
    struct cairn_layer_entry old = {
        .path = "old", .mode = S_IFDIR | 0755, .mtime = 100};
    struct cairn_layer_entry newer = {
        .path = "new", .mode = S_IFDIR | 0755, .mtime = 999999};
    struct cairn_layer_entry data = {
        .path = "data", .mode = 0644, .mtime = 7777};
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
    struct cairn_layer_entry dir = {
        .path = "d", .mode = S_IFDIR | 0711, .uid = 3000000, .gid = 7};
    struct cairn_layer_entry ln = {
        .path = "d/l", .mode = S_IFLNK | 0777, .link_target = "/etc/passwd"};
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

/* ---- unpack --------------------------------------------------------- */

static void unpack_ok(const char *blob, const char *dest, const char *diff_id)
{
    struct cairn_err err = {0};
    int rc = cairn_layer_unpack(blob, dest, diff_id, &err);
    if (rc != 0)
        fail_msg("unpack: %s (%d)", err.msg, rc);
}

/* Compares one path of the source tree with its unpacked copy. */
static void compare_path(const char *a, const char *b)
{
    struct stat sa, sb;
    assert_int_equal(lstat(a, &sa), 0);
    if (lstat(b, &sb) != 0)
        fail_msg("missing after unpack: %s", b);
    assert_int_equal(sa.st_mode, sb.st_mode);
    assert_int_equal(sa.st_uid, sb.st_uid);
    assert_int_equal(sa.st_gid, sb.st_gid);
    /* Whiteouts are made at unpack time: only their kind is carried. */
    bool whiteout = S_ISCHR(sa.st_mode) && sa.st_rdev == makedev(0, 0);
    if (!S_ISLNK(sa.st_mode) && !whiteout &&
        sa.st_mtim.tv_sec != sb.st_mtim.tv_sec)
        fail_msg("%s: mtime %ld != %ld", b, (long)sa.st_mtim.tv_sec,
                 (long)sb.st_mtim.tv_sec);
    if (S_ISCHR(sa.st_mode) || S_ISBLK(sa.st_mode))
        assert_int_equal(sa.st_rdev, sb.st_rdev);
    if (S_ISREG(sa.st_mode)) {
        assert_int_equal(sa.st_size, sb.st_size);
        char da[CAIRN_DIGEST_STR_LEN], db[CAIRN_DIGEST_STR_LEN];
        file_sha256(a, da);
        file_sha256(b, db);
        assert_string_equal(da, db);
    }
    if (S_ISLNK(sa.st_mode)) {
        char ta[256] = {0}, tb[256] = {0};
        assert_true(readlink(a, ta, sizeof ta - 1) > 0);
        assert_true(readlink(b, tb, sizeof tb - 1) > 0);
        assert_string_equal(ta, tb);
        return;
    }
    /* user.* xattrs and the opaque flag survive; other overlay
     * attributes of the source are not part of the layer. */
    char la[1024], lb[1024];
    ssize_t na = llistxattr(a, la, sizeof la);
    ssize_t nb = llistxattr(b, lb, sizeof lb);
    assert_true(na >= 0 && nb >= 0);
    for (ssize_t i = 0; i < na; i += (ssize_t)strlen(la + i) + 1) {
        const char *n = la + i;
        if (strncmp(n, "trusted.overlay.", 16) == 0 &&
            strcmp(n, "trusted.overlay.opaque") != 0) {
            assert_int_equal(lgetxattr(b, n, NULL, 0), -1);
            continue;
        }
        char va[256], vb[256];
        ssize_t xa = lgetxattr(a, n, va, sizeof va);
        ssize_t xb = lgetxattr(b, n, vb, sizeof vb);
        if (xb < 0)
            fail_msg("%s lost xattr %s", b, n);
        assert_int_equal(xa, xb);
        assert_memory_equal(va, vb, (size_t)xa);
    }
}

static const char *const upper_paths[] = {
    "bin",      "bin-x",       "bin/empty",   "bin/sh",   "bin/small",
    "bin/tool", "bin/tool-hl", "etc",         "etc/gone", "etc/fifo",
    "etc/null", "etc/opq",     "etc/opq/new", NULL};

static void test_roundtrip(void **state)
{
    struct fixture *f = *state;
    make_upper(f);
    for (int c = CAIRN_COMPRESS_GZIP; c <= CAIRN_COMPRESS_NONE; c++) {
        struct cairn_layer_desc d;
        char *blob = write_upper(f, (enum cairn_compression)c, -1, &d);
        char out[256], a[1024], b[1024];
        snprintf(a, sizeof a, "out%d", c);
        mkdir_at(f, a, 0755);
        path_in(out, sizeof out, f, a);
        unpack_ok(blob, out, d.diff_id);
        for (const char *const *p = upper_paths; *p; p++) {
            snprintf(a, sizeof a, "%s/upper/%s", f->dir, *p);
            snprintf(b, sizeof b, "%s/%s", out, *p);
            compare_path(a, b);
        }
        /* Whiteout as overlayfs spells it, the opaque flag, the hard link
         * and the skipped mount point. */
        struct stat st, st2;
        snprintf(b, sizeof b, "%s/etc/gone", out);
        assert_int_equal(lstat(b, &st), 0);
        assert_true(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
        char v[4];
        snprintf(b, sizeof b, "%s/etc/opq", out);
        assert_int_equal(getxattr(b, "trusted.overlay.opaque", v, sizeof v), 1);
        assert_int_equal(v[0], 'y');
        snprintf(b, sizeof b, "%s/etc/opq/.wh..wh..opq", out);
        assert_int_equal(lstat(b, &st), -1);
        snprintf(a, sizeof a, "%s/bin/tool", out);
        snprintf(b, sizeof b, "%s/bin/tool-hl", out);
        assert_int_equal(lstat(a, &st), 0);
        assert_int_equal(lstat(b, &st2), 0);
        assert_int_equal(st.st_ino, st2.st_ino);
        assert_int_equal(st.st_nlink, 2);
        snprintf(b, sizeof b, "%s/proc", out);
        assert_int_equal(lstat(b, &st), -1);
        unlink(blob);
        free(blob);
    }
}

static void test_special_names(void **state)
{
    struct fixture *f = *state;
    struct cairn_layer_writer *w;
    writer_new_ok(f, CAIRN_COMPRESS_ZSTD, -1, &w);
    struct cairn_err err = {0};
    char longp[300];
    memset(longp, 'b', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    longp[200] = '/';
    struct cairn_layer_entry d1 = {.path = "caf\xc3\xa9",
                                   .mode = S_IFDIR | 0755};
    struct cairn_layer_entry f1 = {
        .path = "caf\xc3\xa9/\xff\xfe", .mode = 0644, .mtime = 12345};
    struct cairn_layer_entry d2 = {.path = "dd", .mode = S_IFDIR | 0555};
    struct cairn_layer_entry f2 = {.path = longp, .mode = 0600};
    longp[200] = '\0';
    struct cairn_layer_entry d3 = {.path = longp, .mode = S_IFDIR | 0700};
    assert_int_equal(cairn_layer_add(w, &d1, &err), 0);
    assert_int_equal(cairn_layer_add_data(w, &f1, "u", 1, &err), 0);
    assert_int_equal(cairn_layer_add(w, &d2, &err), 0);
    /* Markers for directories not (yet) in the tar. */
    assert_int_equal(cairn_layer_add_whiteout(w, "dd/x/gone", &err), 0);
    assert_int_equal(cairn_layer_add_opaque(w, "new/opq", &err), 0);
    assert_int_equal(cairn_layer_add(w, &d3, &err), 0);
    longp[200] = '/';
    assert_int_equal(cairn_layer_add_data(w, &f2, "long", 4, &err), 0);
    struct cairn_layer_desc d;
    char *blob = finish_ok(w, &d);
    char out[512], p[1024];
    mkdir_at(f, "out", 0755);
    path_in(out, sizeof out, f, "out");
    unpack_ok(blob, out, d.diff_id);
    struct stat st;
    snprintf(p, sizeof p, "%s/caf\xc3\xa9/\xff\xfe", out);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_mtim.tv_sec, 12345);
    snprintf(p, sizeof p, "%s/%s", out, longp);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_size, 4);
    snprintf(p, sizeof p, "%s/dd", out);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0555);
    snprintf(p, sizeof p, "%s/dd/x/gone", out);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    char v[2];
    snprintf(p, sizeof p, "%s/new/opq", out);
    assert_int_equal(getxattr(p, "trusted.overlay.opaque", v, sizeof v), 1);
    free(blob);
}

static void test_empty_layer(void **state)
{
    struct fixture *f = *state;
    struct cairn_layer_writer *w;
    writer_new_ok(f, CAIRN_COMPRESS_GZIP, 0, &w);
    struct cairn_layer_desc d;
    char *blob = finish_ok(w, &d);
    /* Docker's empty layer: two zero blocks. */
    uint8_t zeros[1024] = {0}, bin[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1], want[CAIRN_DIGEST_STR_LEN];
    assert_int_equal(ck_sha256(zeros, sizeof zeros, bin), 0);
    ck_hex_encode(bin, hex);
    snprintf(want, sizeof want, "sha256:%s", hex);
    assert_string_equal(d.diff_id, want);
    char out[512];
    mkdir_at(f, "out", 0755);
    path_in(out, sizeof out, f, "out");
    unpack_ok(blob, out, d.diff_id);
    free(blob);
}

struct tar_ent {
    const char *name;
    mode_t mode;
    const char *target; /* symlink target; or hard link when hard */
    bool hard;
    const char *data;
};

/* Writes a plain pax tar, the way an attacker's tool would. */
static void make_tar(const char *path, const struct tar_ent *e, size_t n)
{
    struct archive *a = archive_write_new();
    assert_non_null(a);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *ae = archive_entry_new();
        archive_entry_copy_pathname(ae, e[i].name);
        archive_entry_set_mode(ae, e[i].mode);
        if (e[i].target && e[i].hard)
            archive_entry_copy_hardlink(ae, e[i].target);
        else if (e[i].target)
            archive_entry_copy_symlink(ae, e[i].target);
        size_t len = e[i].data ? strlen(e[i].data) : 0;
        archive_entry_set_size(ae, (la_int64_t)len);
        assert_true(archive_write_header(a, ae) >= ARCHIVE_WARN);
        if (len)
            assert_int_equal(archive_write_data(a, e[i].data, len),
                             (la_ssize_t)len);
        archive_entry_free(ae);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

static int count_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void test_unpack_refuses_escapes(void **state)
{
    struct fixture *f = *state;
    char outside[512], tar[512], dest[512];
    mkdir_at(f, "outside", 0755);
    path_in(outside, sizeof outside, f, "outside");
    path_in(tar, sizeof tar, f, "evil.tar");
    const struct {
        struct tar_ent e[2];
        size_t n;
    } cases[] = {
        {{{"../x", S_IFREG | 0644, NULL, false, "pwned"}}, 1},
        {{{"a/../../x", S_IFREG | 0644, NULL, false, "pwned"}}, 1},
        {{{"/../x", S_IFREG | 0644, NULL, false, "pwned"}}, 1},
        {{{"a", S_IFLNK | 0777, outside, false, NULL},
          {"a/x", S_IFREG | 0644, NULL, false, "pwned"}},
         2},
        {{{"a", S_IFLNK | 0777, "../outside", false, NULL},
          {"a/x", S_IFREG | 0644, NULL, false, "pwned"}},
         2},
        {{{"a", S_IFLNK | 0777, outside, false, NULL},
          {"a/.wh.x", S_IFREG, NULL, false, NULL}},
         2},
        {{{"a", S_IFLNK | 0777, outside, false, NULL},
          {"a/.wh..wh..opq", S_IFREG, NULL, false, NULL}},
         2},
        {{{"h", S_IFREG | 0644, "../outside/x", true, NULL}}, 1},
        {{{"../.wh.x", S_IFREG, NULL, false, NULL}}, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char rel[32];
        snprintf(rel, sizeof rel, "dest%zu", i);
        mkdir_at(f, rel, 0755);
        path_in(dest, sizeof dest, f, rel);
        make_tar(tar, cases[i].e, cases[i].n);
        struct cairn_err err = {0};
        int rc = cairn_layer_unpack(tar, dest, NULL, &err);
        if (rc != CAIRN_E_CORRUPT)
            fail_msg("case %zu: rc %d (%s)", i, rc, err.msg);
        assert_true(err.msg[0] != '\0');
        if (getenv("LAYER_TEST_VERBOSE"))
            print_message("case %zu: %s\n", i, err.msg);
        assert_int_equal(count_entries(outside), 0);
        char x[600];
        snprintf(x, sizeof x, "%s/x", f->dir);
        assert_int_equal(access(x, F_OK), -1);
    }
    /* A symlink pointing out is fine as long as nothing goes through it;
     * an absolute name is the same path under the root (Docker's reading). */
    const struct tar_ent ok[] = {
        {"a", S_IFLNK | 0777, "/etc/passwd", false, NULL},
        {"b", S_IFLNK | 0777, "../../..", false, NULL},
        {"/", S_IFDIR | 0755, NULL, false, NULL},
        {"/c", S_IFREG | 0644, NULL, false, "c"}};
    make_tar(tar, ok, 4);
    mkdir_at(f, "destok", 0755);
    path_in(dest, sizeof dest, f, "destok");
    unpack_ok(tar, dest, NULL);
    char c[600];
    snprintf(c, sizeof c, "%s/c", dest);
    assert_int_equal(access(c, F_OK), 0);
    assert_int_equal(access("/c", F_OK), -1);
}

/* Copies the first n bytes of src to dst (n < 0: all but -n). */
static void copy_prefix(const char *src, const char *dst, off_t n)
{
    struct stat st;
    assert_int_equal(stat(src, &st), 0);
    if (n < 0)
        n += st.st_size;
    int in = open(src, O_RDONLY),
        out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(in >= 0 && out >= 0);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(read(in, buf, (size_t)n), n);
    assert_int_equal(write(out, buf, (size_t)n), n);
    free(buf);
    close(in);
    close(out);
}

static void test_unpack_bad_blobs(void **state)
{
    struct fixture *f = *state;
    make_upper(f);
    char bad[512], dest[512];
    path_in(bad, sizeof bad, f, "bad.blob");
    for (int c = CAIRN_COMPRESS_GZIP; c <= CAIRN_COMPRESS_NONE; c++) {
        struct cairn_layer_desc d;
        char *blob = write_upper(f, (enum cairn_compression)c, -1, &d);
        struct cairn_err err = {0};
        int rc;
        char rel[32];

        /* Cut in the middle of the big file, and just before the end (for
         * the compressed ones: inside the trailer). */
        off_t cuts[] = {d.size / 2, -4};
        for (size_t k = 0; k < 2; k++) {
            snprintf(rel, sizeof rel, "cut%d_%zu", c, k);
            mkdir_at(f, rel, 0755);
            path_in(dest, sizeof dest, f, rel);
            copy_prefix(blob, bad, cuts[k]);
            rc = cairn_layer_unpack(bad, dest, d.diff_id, &err);
            if (c == CAIRN_COMPRESS_NONE && k == 1) {
                /* A plain tar missing part of its zero padding still
                 * reads; only the digest can tell. */
                assert_int_equal(rc, CAIRN_E_DIGEST);
            } else if (rc != CAIRN_E_CORRUPT) {
                fail_msg("comp %d cut %zu: rc %d (%s)", c, k, rc, err.msg);
            }
            if (c != CAIRN_COMPRESS_NONE) {
                struct cairn_layer_desc d2;
                assert_int_equal(cairn_layer_digest_file(bad, &d2, &err),
                                 CAIRN_E_CORRUPT);
            }
        }

        /* Wrong diff_id; malformed diff_id. */
        snprintf(rel, sizeof rel, "wrong%d", c);
        mkdir_at(f, rel, 0755);
        path_in(dest, sizeof dest, f, rel);
        char wrong[CAIRN_DIGEST_STR_LEN];
        memcpy(wrong, d.diff_id, sizeof wrong);
        wrong[10] = wrong[10] == '0' ? '1' : '0';
        assert_int_equal(cairn_layer_unpack(blob, dest, wrong, &err),
                         CAIRN_E_DIGEST);
        assert_non_null(strstr(err.msg, d.diff_id));
        assert_int_equal(cairn_layer_unpack(blob, dest, "sha256:abc", &err),
                         CAIRN_E_INVAL);
        unlink(blob);
        free(blob);
    }

    /* Garbage after a complete gzip stream, and a flipped byte. */
    struct cairn_layer_desc d;
    char *blob = write_upper(f, CAIRN_COMPRESS_GZIP, -1, &d);
    copy_prefix(blob, bad, d.size);
    int fd = open(bad, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "junkjunk", 8), 8);
    close(fd);
    struct cairn_err err = {0};
    struct cairn_layer_desc d2;
    assert_int_equal(cairn_layer_digest_file(bad, &d2, &err), CAIRN_E_CORRUPT);
    copy_prefix(blob, bad, d.size);
    fd = open(bad, O_RDWR);
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, d.size / 3), 1);
    byte ^= 0x55;
    assert_int_equal(pwrite(fd, &byte, 1, d.size / 3), 1);
    close(fd);
    mkdir_at(f, "flip", 0755);
    path_in(dest, sizeof dest, f, "flip");
    int rc = cairn_layer_unpack(bad, dest, NULL, &err);
    assert_true(rc == CAIRN_E_CORRUPT);
    /* Not a layer at all; missing file. */
    write_file_at(f, "noise", 5000, 77, 0644);
    path_in(bad, sizeof bad, f, "noise");
    assert_int_equal(cairn_layer_unpack(bad, dest, NULL, &err),
                     CAIRN_E_CORRUPT);
    path_in(bad, sizeof bad, f, "missing");
    assert_int_equal(cairn_layer_unpack(bad, dest, NULL, &err), -ENOENT);
    assert_int_equal(cairn_layer_digest_file(bad, &d2, &err), -ENOENT);
    free(blob);
}

/* ---- ADD of an archive ---------------------------------------------- */

/* Records the entry hook's calls and leaves out the directory "skipme". */
struct add_log {
    struct cairn_buf b;
};

static int add_hook(void *arg, const char *path, mode_t mode,
                    struct cairn_err *err)
{
    struct add_log *l = arg;
    (void)err;
    assert_int_equal(
        cairn_buf_printf(&l->b, "%s %c\n", path, S_ISDIR(mode) ? 'd' : 'o'), 0);
    return strcmp(path, "opt/app/skipme") == 0 ? 1 : 0;
}

static void test_archive_detect(void **state)
{
    struct fixture *f = *state;
    char tar[512], gz[512], txt[512], empty[512], cmd[2048];
    path_in(tar, sizeof tar, f, "a.tar");
    path_in(gz, sizeof gz, f, "a.tar.gz");
    path_in(txt, sizeof txt, f, "t.gz");
    path_in(empty, sizeof empty, f, "empty.tar");
    const struct tar_ent e[] = {{"x", S_IFREG | 0644, NULL, false, "x"}};
    make_tar(tar, e, 1);
    make_tar(empty, e, 0);
    snprintf(cmd, sizeof cmd, "gzip -c %s > %s && echo text | gzip -c > %s",
             tar, gz, txt);
    assert_int_equal(system(cmd), 0);
    bool yes = false;
    assert_int_equal(cairn_layer_is_archive(tar, &yes), 0);
    assert_true(yes);
    assert_int_equal(cairn_layer_is_archive(gz, &yes), 0);
    assert_true(yes);
    /* A compressed non-tar, a tar without entries and a missing file are
     * copied as files, as Docker does. */
    assert_int_equal(cairn_layer_is_archive(txt, &yes), 0);
    assert_false(yes);
    assert_int_equal(cairn_layer_is_archive(empty, &yes), 0);
    assert_false(yes);
    assert_int_equal(cairn_layer_is_archive("/nonexistent/x.tar", &yes), 0);
    assert_false(yes);
}

static void test_archive_add(void **state)
{
    struct fixture *f = *state;
    char tar[512];
    path_in(tar, sizeof tar, f, "in.tar");
    const struct tar_ent e[] = {
        {"./", S_IFDIR | 0750, NULL, false, NULL},
        {"./d/", S_IFDIR | 0700, NULL, false, NULL},
        {"./d/f", S_IFREG | 0600, NULL, false, "data"},
        {"./d/h", S_IFREG | 0600, "d/f", true, NULL},
        {"./d/l", S_IFLNK | 0777, "f", false, NULL},
        {"/abs/g", S_IFREG | 0644, NULL, false, "g"},
        {"skipme/", S_IFDIR | 0755, NULL, false, NULL},
    };
    make_tar(tar, e, sizeof e / sizeof e[0]);
    struct cairn_layer_writer *w = NULL;
    writer_new_ok(f, CAIRN_COMPRESS_GZIP, -1, &w);
    struct add_log log;
    cairn_buf_init(&log.b, 0);
    struct cairn_layer_extract x = {.dest = "opt/app",
                                    .chown = true,
                                    .uid = 1000,
                                    .gid = 2000,
                                    .entry = add_hook,
                                    .arg = &log};
    struct cairn_err err = {0};
    int rc = cairn_layer_add_archive(w, tar, &x, &err);
    if (rc != 0)
        fail_msg("add_archive: %s", err.msg);
    struct cairn_layer_desc d;
    char *blob = finish_ok(w, &d);
    char *list = list_tar(blob);
    /* Paths under dest (a leading "/" is inside it), modes as in the
     * archive, owners from --chown, links rewritten under dest. */
    assert_string_equal(list, "opt/app/ d 0750 1000:2000 0\n"
                              "opt/app/d/ d 0700 1000:2000 0\n"
                              "opt/app/d/f f 0600 1000:2000 4\n"
                              "opt/app/d/h h 0600 1000:2000 0 => opt/app/d/f\n"
                              "opt/app/d/l l 0777 1000:2000 0 -> f\n"
                              "opt/app/abs/g f 0644 1000:2000 1\n");
    char *calls = cairn_buf_take(&log.b);
    assert_string_equal(calls, "opt/app d\nopt/app/d d\nopt/app/d/f o\n"
                               "opt/app/d/h o\nopt/app/d/l o\n"
                               "opt/app/abs/g o\nopt/app/skipme d\n");
    free(calls);
    free(list);
    unlink(blob);
    free(blob);
}

static void test_archive_refuses(void **state)
{
    struct fixture *f = *state;
    char tar[512];
    path_in(tar, sizeof tar, f, "evil.tar");
    const struct {
        struct tar_ent e[2];
        size_t n;
    } cases[] = {
        {{{"../x", S_IFREG | 0644, NULL, false, "x"}}, 1},
        {{{"a/../../x", S_IFREG | 0644, NULL, false, "x"}}, 1},
        {{{"l", S_IFLNK | 0777, "/etc", false, NULL},
          {"l/passwd", S_IFREG | 0644, NULL, false, "x"}},
         2},
        {{{"l", S_IFLNK | 0777, "../../x", false, NULL}}, 1},
        {{{"h", S_IFREG | 0644, "../x", true, NULL}}, 1},
        {{{"a/.wh.b", S_IFREG | 0644, NULL, false, NULL}}, 1},
        {{{"c", S_IFCHR | 0644, NULL, false, NULL}}, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_tar(tar, cases[i].e, cases[i].n);
        struct cairn_layer_writer *w = NULL;
        writer_new_ok(f, CAIRN_COMPRESS_NONE, -1, &w);
        struct cairn_layer_extract x = {.dest = "dest"};
        struct cairn_err err = {0};
        int rc = cairn_layer_add_archive(w, tar, &x, &err);
        if (rc != CAIRN_E_CORRUPT)
            fail_msg("case %zu: rc %d (%s)", i, rc, err.msg);
        assert_non_null(strstr(err.msg, "evil.tar"));
        cairn_layer_writer_abort(w);
    }
    /* Truncated content is refused too (the header promised more). */
    const struct tar_ent big[] = {
        {"f", S_IFREG | 0644, NULL, false,
         "0123456789012345678901234567890123456789012345678901234567890123"
         "0123456789012345678901234567890123456789012345678901234567890123"
         "0123456789012345678901234567890123456789012345678901234567890123"
         "0123456789012345678901234567890123456789012345678901234567890123"
         "0123456789012345678901234567890123456789012345678901234567890123"
         "0123456789012345678901234567890123456789012345678901234567890123"
         "0123456789012345678901234567890123456789012345678901234567890123"
         "0123456789012345678901234567890123456789012345678901234567890123"
         "0123456789"}};
    char cut[512];
    path_in(cut, sizeof cut, f, "cut.tar");
    make_tar(tar, big, 1);
    copy_prefix(tar, cut, 600);
    struct cairn_layer_writer *w = NULL;
    writer_new_ok(f, CAIRN_COMPRESS_NONE, -1, &w);
    struct cairn_layer_extract x = {.dest = ""};
    struct cairn_err err = {0};
    assert_int_equal(cairn_layer_add_archive(w, cut, &x, &err),
                     CAIRN_E_CORRUPT);
    cairn_layer_writer_abort(w);
}

static void test_whiteout_replaces(void **state)
{
    struct fixture *f = *state;
    char tar[512], dest[512], p[600];
    path_in(tar, sizeof tar, f, "w.tar");
    const struct tar_ent e[] = {
        {"x", S_IFREG | 0644, NULL, false, "data"},
        {"l", S_IFLNK | 0777, "x", false, NULL},
        {"d", S_IFDIR | 0755, NULL, false, NULL},
        {".wh.x", S_IFREG, NULL, false, NULL},
        {".wh.l", S_IFREG, NULL, false, NULL},
        {"./.wh.d", S_IFREG, NULL, false, NULL},
        {".wh..wh.plnk", S_IFREG, NULL, false, NULL},
    };
    make_tar(tar, e, sizeof e / sizeof e[0]);
    mkdir_at(f, "dest", 0755);
    path_in(dest, sizeof dest, f, "dest");
    unpack_ok(tar, dest, NULL);
    const char *names[] = {"x", "l", "d"};
    for (size_t i = 0; i < 3; i++) {
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dest, names[i]);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
    }
    assert_int_equal(count_entries(dest), 3);
}

/* ---- mirror --------------------------------------------------------- */

static void mirror_add(struct cairn_layer_writer *w, const char *path,
                       mode_t mode, uid_t uid, gid_t gid, int64_t mtime,
                       const char *data_or_target)
{
    struct cairn_layer_entry e = {.path = path,
                                  .mode = mode,
                                  .uid = uid,
                                  .gid = gid,
                                  .mtime = mtime,
                                  .link_target = data_or_target};
    struct cairn_err err = {0};
    int rc;
    if (S_ISREG(mode))
        rc = cairn_layer_add_data(w, &e, data_or_target, strlen(data_or_target),
                                  &err);
    else
        rc = cairn_layer_add(w, &e, &err);
    if (rc != 0)
        fail_msg("add %s: %s", path, err.msg);
}

static const char *const mirror_paths[] = {
    "d",       "d/f",          "d/ro",           "d/ro/g", "d/l", "d/sub",
    "d/sub/x", "d/sub/x/deep", "d/sub/x/deep/h", "top",    NULL};

/* The tree a writer mirrors is the tree cairn_layer_unpack makes of the
 * finished layer: modes (set-id bits after chown, read-only directories),
 * owners, clamped mtimes of files, directories and symlinks, a path
 * written twice (the last one wins), file content read from an fd. */
static void test_mirror_matches_unpack(void **state)
{
    struct fixture *f = *state;
    char mirror[512], unpacked[512], src[512], a[1024], b[1024];
    mkdir_at(f, "mirror", 0755);
    mkdir_at(f, "unpacked", 0755);
    path_in(mirror, sizeof mirror, f, "mirror");
    path_in(unpacked, sizeof unpacked, f, "unpacked");
    write_file_at(f, "src.bin", 3 * MIB + 17, 7, 0644);
    path_in(src, sizeof src, f, "src.bin");

    struct cairn_layer_writer *w;
    writer_new_ok(f, CAIRN_COMPRESS_GZIP, 1600000000, &w);
    struct cairn_err err = {0};
    assert_int_equal(cairn_layer_writer_mirror(w, mirror, &err), 0);
    mirror_add(w, "d", S_IFDIR | 0750, 1000, 2000, 1000, NULL);
    struct cairn_layer_entry fe = {.path = "d/f",
                                   .mode = S_IFREG | 04755,
                                   .uid = 1000,
                                   .gid = 2000,
                                   .mtime = 1900000000};
    int fd = open(src, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(
        cairn_layer_add_file(w, &fe, fd, (int64_t)(3 * MIB + 17), &err), 0);
    close(fd);
    mirror_add(w, "d/ro", S_IFDIR | 0555, 0, 0, 500, NULL);
    mirror_add(w, "d/ro/g", S_IFREG | 0444, 0, 0, 600, "g\n");
    mirror_add(w, "d/l", S_IFLNK | 0777, 7, 8, 700, "../top");
    mirror_add(w, "d/sub", S_IFDIR | 0700, 0, 0, 800, NULL);
    mirror_add(w, "d/sub/x", S_IFDIR | 02775, 0, 50, 900, NULL);
    mirror_add(w, "d/sub/x/deep", S_IFDIR | 0755, 0, 0, 1700000000, NULL);
    mirror_add(w, "d/sub/x/deep/h", S_IFREG | 0600, 3, 4, 1100, "");
    mirror_add(w, "top", S_IFREG | 0644, 0, 0, 1200, "first\n");
    mirror_add(w, "top", S_IFREG | 0640, 0, 9, 1700000000, "second\n");
    bool complete = false;
    assert_int_equal(cairn_layer_writer_mirror_end(w, &complete), 0);
    assert_true(complete);
    struct cairn_layer_desc d;
    char *blob = finish_ok(w, &d);
    unpack_ok(blob, unpacked, d.diff_id);

    for (const char *const *p = mirror_paths; *p; p++) {
        snprintf(a, sizeof a, "%s/%s", unpacked, *p);
        snprintf(b, sizeof b, "%s/%s", mirror, *p);
        compare_path(a, b);
        struct stat sa, sb;
        assert_int_equal(lstat(a, &sa), 0);
        assert_int_equal(lstat(b, &sb), 0);
        assert_int_equal(sa.st_mtim.tv_sec, sb.st_mtim.tv_sec);
        assert_int_equal(sa.st_mtim.tv_nsec, sb.st_mtim.tv_nsec);
    }
    assert_int_equal(count_entries(mirror), count_entries(unpacked));
    snprintf(b, sizeof b, "%s/d/sub/x", mirror);
    assert_int_equal(count_entries(b), 1);
    /* The expected values, not only equality with the unpack. */
    struct stat st;
    snprintf(b, sizeof b, "%s/d/f", mirror);
    assert_int_equal(lstat(b, &st), 0);
    assert_int_equal(st.st_mode, S_IFREG | 04755);
    assert_int_equal(st.st_mtim.tv_sec, 1600000000);
    snprintf(b, sizeof b, "%s/top", mirror);
    assert_int_equal(lstat(b, &st), 0);
    assert_int_equal(st.st_size, 7);
    assert_int_equal(st.st_gid, 9);
    snprintf(b, sizeof b, "%s/d/l", mirror);
    assert_int_equal(lstat(b, &st), 0);
    assert_int_equal(st.st_uid, 7);
    assert_int_equal(st.st_mtim.tv_sec, 700);
    unlink(blob);
    free(blob);
}

/* Whatever the mirror cannot reproduce drops it (complete is false) and
 * leaves the layer alone. */
static void test_mirror_dropped(void **state)
{
    struct fixture *f = *state;
    char mirror[512];
    for (int c = 0; c < 3; c++) {
        char name[32];
        snprintf(name, sizeof name, "m%d", c);
        mkdir_at(f, name, 0755);
        path_in(mirror, sizeof mirror, f, name);
        struct cairn_layer_writer *w;
        writer_new_ok(f, CAIRN_COMPRESS_NONE, -1, &w);
        struct cairn_err err = {0};
        assert_int_equal(cairn_layer_writer_mirror(w, mirror, &err), 0);
        mirror_add(w, "a", S_IFDIR | 0755, 0, 0, 1, NULL);
        if (c == 0) {
            /* A deletion needs the lower layers. */
            assert_int_equal(cairn_layer_add_whiteout(w, "a/gone", &err), 0);
        } else if (c == 1) {
            /* A path through a symlink the layer made (the unpack
             * refuses it; the mirror must not write through it). */
            mirror_add(w, "s", S_IFLNK | 0777, 0, 0, 1, "a");
            mirror_add(w, "s/x", S_IFREG | 0644, 0, 0, 1, "x");
        } else {
            /* A file where the layer has a directory. */
            mirror_add(w, "a/b", S_IFDIR | 0755, 0, 0, 1, NULL);
            mirror_add(w, "a/b/c", S_IFREG | 0644, 0, 0, 1, "c");
            mirror_add(w, "a/b", S_IFREG | 0644, 0, 0, 1, "b");
        }
        bool complete = true;
        assert_int_equal(cairn_layer_writer_mirror_end(w, &complete), 0);
        assert_false(complete);
        char p[600];
        snprintf(p, sizeof p, "%s/a/x", mirror);
        assert_int_equal(access(p, F_OK), -1);
        struct cairn_layer_desc d;
        char *blob = finish_ok(w, &d);
        unlink(blob);
        free(blob);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upper_listing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digests_all_compressions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deterministic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_same_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_raw_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_epoch_clamp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_entry_api, setup, teardown),
        cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_special_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_layer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unpack_refuses_escapes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unpack_bad_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_detect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_add, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whiteout_replaces, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mirror_matches_unpack, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mirror_dropped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
