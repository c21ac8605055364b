#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cachekey/context.h"
#include "cachekey/dockerignore.h"
#include "cachekey/field.h"
#include "cachekey/statcache.h"
#include "common/error.h"

/* ---- helpers: real temp trees ---- */

static void mk_tmpdir(char out[64])
{
    snprintf(out, 64, "/tmp/cairn-ctx-XXXXXX");
    assert_non_null(mkdtemp(out));
}

static void put_file(const char *root, const char *rel, const char *content,
                     mode_t mode)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    /* make parents */
    for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        if (mkdir(p, 0755) != 0)
            assert_int_equal(errno, EEXIST);
        *s = '/';
    }
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
    assert_int_equal(chmod(p, mode), 0);
}

static void put_dir(const char *root, const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    assert_int_equal(mkdir(p, 0755), 0);
}

static void put_link(const char *root, const char *rel, const char *target)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    unlink(p);
    assert_int_equal(symlink(target, p), 0);
}

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_tree(const char *root)
{
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The standard fixture tree. */
static void make_tree(const char *root)
{
    put_file(root, "a.txt", "alpha\n", 0644);
    put_file(root, "b.txt", "bravo\n", 0600);
    put_file(root, "run.sh", "#!/bin/sh\necho hi\n", 0755);
    put_file(root, "src/main.c", "int main(void){return 0;}\n", 0644);
    put_file(root, "src/lib/util.c", "/* util */\n", 0644);
    put_file(root, "src/lib/util.h", "/* util.h */\n", 0644);
    put_file(root, "src/a-b", "dash\n", 0644);
    put_file(root, "logs/x.log", "log line\n", 0644);
    put_file(root, "big.bin", "", 0644);
    put_dir(root, "empty");
    put_link(root, "src/link", "../a.txt");
    put_link(root, "ln-src", "src");
    put_link(root, "ln-out", "/etc");
    put_link(root, "ln-up", "../../../etc/passwd");
    /* A file bigger than the inline-read limit, to exercise file tasks. */
    char p[512];
    snprintf(p, sizeof p, "%s/big.bin", root);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    for (int i = 0; i < 300000; i++)
        fputc((int)(((unsigned)i * 7919u) & 0xffu), f);
    fclose(f);
}

struct dig {
    int rc;
    char hex[CK_SHA256_HEX_LEN + 1];
    struct ck_source_stats st;
    struct cairn_err err;
};

static struct dig digest_opts(const char *root, const char *src, int threads,
                              const struct ck_ignore *ig,
                              struct ck_statcache *sc)
{
    struct dig d;
    memset(&d, 0, sizeof d);
    struct ck_context_opts o = {.ignore = ig, .cache = sc, .threads = threads};
    struct ck_context *ctx = NULL;
    assert_int_equal(ck_context_open(root, &o, &ctx, &d.err), 0);
    uint8_t out[CK_SHA256_LEN];
    d.rc = ck_context_source_digest(ctx, src, out, &d.st, &d.err);
    if (d.rc == 0)
        ck_hex_encode(out, d.hex);
    ck_context_close(ctx);
    return d;
}

static struct dig digest(const char *root, const char *src)
{
    return digest_opts(root, src, 2, NULL, NULL);
}

/* ---- format ---- */

static void hash_entry(struct ck_sha256 *h, const char *path, const char *type,
                       const char *mode, const char *target,
                       const char *content)
{
    assert_int_equal(ck_field_hash_str(h, path), 0);
    assert_int_equal(ck_field_hash_str(h, type), 0);
    assert_int_equal(ck_field_hash_str(h, mode), 0);
    assert_int_equal(ck_field_hash_str(h, target), 0);
    if (content != NULL) {
        uint8_t c[CK_SHA256_LEN];
        assert_int_equal(ck_sha256(content, strlen(content), c), 0);
        assert_int_equal(ck_field_hash(h, c, sizeof c), 0);
    } else {
        assert_int_equal(ck_field_hash(h, "", 0), 0);
    }
}

/* Recomputes the digest the header describes, field by field, for a tiny
 * tree whose byte order differs from a per-directory walk order. */
static void test_format_matches_header(void **state)
{
    (void)state;
    char root[64];
    mk_tmpdir(root);
    put_file(root, "d/x", "x\n", 0644);
    put_file(root, "d-e", "de\n", 0640);
    put_link(root, "d/l", "x");
    chmod(root, 0750);
    char p[128];
    snprintf(p, sizeof p, "%s/d", root);
    chmod(p, 0711);

    struct ck_sha256 *h = NULL;
    assert_int_equal(ck_sha256_new(&h), 0);
    assert_int_equal(ck_field_hash_str(h, "match"), 0);
    assert_int_equal(ck_field_hash_str(h, "."), 0);
    /* byte order: "." < "d" < "d-e" < "d/l" < "d/x" */
    hash_entry(h, ".", "d", "0750", "", NULL);
    hash_entry(h, "d", "d", "0711", "", NULL);
    hash_entry(h, "d-e", "f", "0640", "", "de\n");
    hash_entry(h, "d/l", "l", "0777", "x", NULL);
    hash_entry(h, "d/x", "f", "0644", "", "x\n");
    uint8_t want[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    assert_int_equal(ck_sha256_final(h, want), 0);
    ck_hex_encode(want, hex);

    struct dig d = digest(root, ".");
    assert_int_equal(d.rc, 0);
    assert_string_equal(d.hex, hex);
    assert_int_equal(d.st.matches, 1);
    assert_int_equal(d.st.files, 2);
    assert_int_equal(d.st.dirs, 2);
    assert_int_equal(d.st.links, 1);
    assert_int_equal(d.st.bytes, 5);

    /* A single file source: one match whose entry is ".". */
    assert_int_equal(ck_field_hash_str(h, "match"), 0);
    assert_int_equal(ck_field_hash_str(h, "d/x"), 0);
    hash_entry(h, ".", "f", "0644", "", "x\n");
    assert_int_equal(ck_sha256_final(h, want), 0);
    ck_hex_encode(want, hex);
    d = digest(root, "d/x");
    assert_int_equal(d.rc, 0);
    assert_string_equal(d.hex, hex);
    ck_sha256_free(h);
    rm_tree(root);
}

/* ---- determinism ---- */

static int touch_old(const char *p, const struct stat *st, int flag,
                     struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    struct timespec ts[2] = {{.tv_sec = 1000000000, .tv_nsec = 123},
                             {.tv_sec = 1000000000, .tv_nsec = 456}};
    utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW);
    if (geteuid() == 0)
        (void)lchown(p, 1234, 1234);
    return 0;
}

static void test_deterministic_across_copies_times_owners_threads(
    void **state)
{
    (void)state;
    char a[64], b[64];
    mk_tmpdir(a);
    make_tree(a);
    /* Created in another order, at another place and time. */
    mk_tmpdir(b);
    make_tree(b);
    put_file(b, "a.txt", "alpha\n", 0644);
    nftw(b, touch_old, 16, FTW_PHYS);
    if (geteuid() == 0) {
        struct stat st;
        char p[128];
        snprintf(p, sizeof p, "%s/a.txt", b);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_uid, 1234);
    }
    chmod(a, 0700);
    chmod(b, 0700);

    const char *srcs[] = {".", "src", "*.txt", "src/lib/util.c", "big.bin"};
    for (size_t i = 0; i < sizeof srcs / sizeof *srcs; i++) {
        struct dig ref = digest_opts(a, srcs[i], 1, NULL, NULL);
        assert_int_equal(ref.rc, 0);
        int threads[] = {1, 2, 3, 8, 0};
        for (size_t t = 0; t < 5; t++) {
            struct dig x = digest_opts(a, srcs[i], threads[t], NULL, NULL);
            struct dig y = digest_opts(b, srcs[i], threads[t], NULL, NULL);
            assert_int_equal(x.rc, 0);
            assert_int_equal(y.rc, 0);
            assert_string_equal(x.hex, ref.hex);
            assert_string_equal(y.hex, ref.hex);
        }
    }
    rm_tree(a);
    rm_tree(b);
}

/* ---- what changes the digest ---- */

static void test_changes_change_digest(void **state)
{
    (void)state;
    char r[64], p[256];
    mk_tmpdir(r);
    make_tree(r);
    struct dig base = digest(r, ".");
    assert_int_equal(base.rc, 0);
    struct dig d;

    put_file(r, "src/main.c", "int main(void){return 1;}\n", 0644);
    d = digest(r, ".");
    assert_string_not_equal(d.hex, base.hex);
    put_file(r, "src/main.c", "int main(void){return 0;}\n", 0644);
    d = digest(r, ".");
    assert_string_equal(d.hex, base.hex); /* back to the same content */

    snprintf(p, sizeof p, "%s/run.sh", r);
    chmod(p, 0700);
    d = digest(r, ".");
    assert_string_not_equal(d.hex, base.hex);
    chmod(p, 0755);

    put_link(r, "src/link", "../b.txt");
    d = digest(r, ".");
    assert_string_not_equal(d.hex, base.hex);
    put_link(r, "src/link", "../a.txt");
    assert_string_equal(digest(r, ".").hex, base.hex);

    put_file(r, "src/new.c", "", 0644);
    d = digest(r, ".");
    assert_string_not_equal(d.hex, base.hex);
    snprintf(p, sizeof p, "%s/src/new.c", r);
    unlink(p);

    put_dir(r, "empty/sub");
    d = digest(r, ".");
    assert_string_not_equal(d.hex, base.hex);
    snprintf(p, sizeof p, "%s/empty/sub", r);
    rmdir(p);

    /* A file turned into a directory of the same name. */
    snprintf(p, sizeof p, "%s/b.txt", r);
    unlink(p);
    put_dir(r, "b.txt");
    d = digest(r, ".");
    assert_string_not_equal(d.hex, base.hex);
    rmdir(p);
    put_file(r, "b.txt", "bravo\n", 0600);
    assert_string_equal(digest(r, ".").hex, base.hex);

    /* Changes outside the selection do not matter. */
    struct dig s1 = digest(r, "src");
    put_file(r, "a.txt", "changed\n", 0644);
    struct dig s2 = digest(r, "src");
    assert_string_equal(s1.hex, s2.hex);
    rm_tree(r);
}

/* ---- .dockerignore ---- */

static struct ck_ignore *parse_ignore(const char *text)
{
    struct ck_ignore *ig = NULL;
    struct cairn_err err;
    assert_int_equal(ck_ignore_parse(text, strlen(text), &ig, &err), 0);
    return ig;
}

struct walked {
    char items[64][128];
    int n;
};

static int collect_fn(void *arg, const char *relpath, char type,
                      unsigned mode, const uint8_t *digest)
{
    struct walked *w = arg;
    (void)mode;
    assert_true((type == 'f') == (digest != NULL));
    if (w->n < 64)
        snprintf(w->items[w->n++], 128, "%c %s", type, relpath);
    return 0;
}

static struct walked walk(const char *root, const char *src,
                          const struct ck_ignore *ig, int *rc)
{
    struct walked w;
    memset(&w, 0, sizeof w);
    struct ck_context_opts o = {.ignore = ig, .threads = 2};
    struct ck_context *ctx = NULL;
    assert_int_equal(ck_context_open(root, &o, &ctx, NULL), 0);
    struct cairn_err err;
    *rc = ck_context_source_walk(ctx, src, collect_fn, &w, &err);
    ck_context_close(ctx);
    return w;
}

static bool walked_has(const struct walked *w, const char *item)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->items[i], item) == 0)
            return true;
    return false;
}

static void test_ignored_paths_are_absent(void **state)
{
    (void)state;
    char r[64];
    mk_tmpdir(r);
    make_tree(r);
    struct ck_ignore *ig = parse_ignore("logs\n*.bin\nsrc/lib\n!src/lib/util.h\n");
    struct dig base = digest_opts(r, ".", 2, ig, NULL);
    assert_int_equal(base.rc, 0);

    /* Changing or adding ignored files changes nothing. */
    put_file(r, "logs/x.log", "other line\n", 0644);
    put_file(r, "logs/y.log", "new\n", 0644);
    put_file(r, "big.bin", "small now", 0644);
    put_file(r, "src/lib/util.c", "/* changed */\n", 0644);
    struct dig d = digest_opts(r, ".", 2, ig, NULL);
    assert_int_equal(d.rc, 0);
    assert_string_equal(d.hex, base.hex);
    /* The re-included file does count. */
    put_file(r, "src/lib/util.h", "/* changed */\n", 0644);
    d = digest_opts(r, ".", 2, ig, NULL);
    assert_string_not_equal(d.hex, base.hex);

    int rc;
    struct walked w = walk(r, ".", ig, &rc);
    assert_int_equal(rc, 0);
    assert_false(walked_has(&w, "d logs"));
    assert_false(walked_has(&w, "f big.bin"));
    assert_false(walked_has(&w, "f src/lib/util.c"));
    /* The ignored directory appears only as the parent of the exception. */
    assert_true(walked_has(&w, "d src/lib"));
    assert_true(walked_has(&w, "f src/lib/util.h"));
    assert_true(walked_has(&w, "f a.txt"));

    /* An ignored source is not found, like in Docker. */
    d = digest_opts(r, "logs/x.log", 2, ig, NULL);
    assert_int_equal(d.rc, CAIRN_E_NOTFOUND);
    assert_string_equal(d.err.msg, "\"/logs/x.log\": not found");
    d = digest_opts(r, "*.bin", 2, ig, NULL);
    assert_int_equal(d.rc, CAIRN_E_NOTFOUND);
    ck_ignore_free(ig);

    /* "**" reaches any depth; a file re-included by "!" under it counts. */
    ig = parse_ignore("**/*.c\n!src/main.c\n");
    w = walk(r, ".", ig, &rc);
    assert_int_equal(rc, 0);
    assert_false(walked_has(&w, "f src/lib/util.c"));
    assert_true(walked_has(&w, "f src/main.c"));
    assert_true(walked_has(&w, "f src/lib/util.h"));
    base = digest_opts(r, "src", 2, ig, NULL);
    put_file(r, "src/lib/util.c", "/* changed again */\n", 0644);
    assert_string_equal(digest_opts(r, "src", 1, ig, NULL).hex, base.hex);
    put_file(r, "src/main.c", "int main(void){return 2;}\n", 0644);
    assert_string_not_equal(digest_opts(r, "src", 1, ig, NULL).hex, base.hex);
    ck_ignore_free(ig);

    /* Without the exception the whole ignored directory is gone. */
    ig = parse_ignore("src/lib\n");
    w = walk(r, "src", ig, &rc);
    assert_int_equal(rc, 0);
    assert_false(walked_has(&w, "d src/lib"));
    assert_true(walked_has(&w, "f src/main.c"));
    ck_ignore_free(ig);
    rm_tree(r);
}

/* ---- sources ---- */

static void test_source_forms(void **state)
{
    (void)state;
    char r[64];
    mk_tmpdir(r);
    make_tree(r);

    /* "/x", "./x", "x/" and "x" all select the same thing. */
    struct dig d1 = digest(r, "src/lib/util.c");
    assert_int_equal(d1.rc, 0);
    assert_int_equal(d1.st.files, 1);
    assert_int_equal(d1.st.matches, 1);
    assert_string_equal(digest(r, "/src/lib/util.c").hex, d1.hex);
    assert_string_equal(digest(r, "./src/../src/lib/util.c").hex, d1.hex);
    assert_string_equal(digest(r, "/../src/lib/util.c").hex, d1.hex);
    struct dig dd = digest(r, "src");
    assert_string_equal(digest(r, "src/").hex, dd.hex);
    assert_string_equal(digest(r, "./src/.").hex, dd.hex);
    assert_int_equal(dd.st.files, 4);
    assert_int_equal(dd.st.dirs, 2);
    assert_int_equal(dd.st.links, 1);
    struct dig root = digest(r, ".");
    assert_string_equal(digest(r, "/").hex, root.hex);
    assert_string_equal(digest(r, "").hex, root.hex);

    /* Wildcards: several matches, in byte order. */
    struct dig w = digest(r, "*.txt");
    assert_int_equal(w.rc, 0);
    assert_int_equal(w.st.matches, 2);
    assert_int_equal(w.st.files, 2);
    w = digest(r, "src/*/util.?");
    assert_int_equal(w.rc, 0);
    assert_int_equal(w.st.matches, 2);
    w = digest(r, "[ab].txt");
    assert_int_equal(w.st.matches, 2);
    w = digest(r, "[^a].txt");
    assert_int_equal(w.st.matches, 1);
    assert_string_equal(w.hex, digest(r, "b.txt").hex);
    w = digest(r, "\\a.txt");
    assert_int_equal(w.rc, CAIRN_E_NOTFOUND); /* literal: no wildcard */
    w = digest(r, "\\a.t?t");
    assert_int_equal(w.rc, 0); /* pattern: the escape means 'a' */
    assert_string_equal(w.hex, digest(r, "a.txt").hex);
    w = digest(r, "[a");
    assert_int_equal(w.rc, CAIRN_E_PARSE);

    int rc;
    struct walked wk = walk(r, "src/lib/*", NULL, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(wk.n, 2);
    assert_string_equal(wk.items[0], "f src/lib/util.c");
    assert_string_equal(wk.items[1], "f src/lib/util.h");

    /* A symlink source is followed; links inside are kept as links. */
    struct dig ls = digest(r, "ln-src");
    assert_int_equal(ls.rc, 0);
    assert_int_equal(ls.st.files, dd.st.files);
    assert_int_equal(ls.st.links, 1);
    wk = walk(r, "ln-src", NULL, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(wk.items[0], "d ln-src");
    assert_true(walked_has(&wk, "l ln-src/link"));
    assert_true(walked_has(&wk, "f ln-src/lib/util.c"));
    struct dig lf = digest(r, "src/link");
    assert_int_equal(lf.rc, 0);
    assert_int_equal(lf.st.files, 1);
    assert_int_equal(lf.st.links, 0);
    wk = walk(r, "ln-src/lib/util.c", NULL, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(wk.n, 1);

    /* Byte order across directories: "a-b" sorts before "lib/...". */
    wk = walk(r, "src", NULL, &rc);
    assert_string_equal(wk.items[0], "d src");
    assert_string_equal(wk.items[1], "f src/a-b");
    assert_string_equal(wk.items[2], "d src/lib");

    /* The walk stops when the callback says so. */
    rm_tree(r);
}

static int stop_fn(void *arg, const char *relpath, char type, unsigned mode,
                   const uint8_t *digest)
{
    (void)relpath;
    (void)type;
    (void)mode;
    (void)digest;
    int *n = arg;
    return ++*n == 3 ? 77 : 0;
}

static void test_walk_stops(void **state)
{
    (void)state;
    char r[64];
    mk_tmpdir(r);
    make_tree(r);
    struct ck_context *ctx = NULL;
    assert_int_equal(ck_context_open(r, NULL, &ctx, NULL), 0);
    int n = 0;
    assert_int_equal(ck_context_source_walk(ctx, ".", stop_fn, &n, NULL), 77);
    assert_int_equal(n, 3);
    ck_context_close(ctx);
    rm_tree(r);
}

/* keep_walks: a walk of a digested source replays that digest's
 * selection (same entries, same order, the digests the key was made
 * of), even after the disk changed; an undigested source is walked, and
 * a replay still stops where its callback says. */
struct digested {
    char items[8][128];
    uint8_t digest[8][CK_SHA256_LEN];
    int n;
};

static int digested_fn(void *arg, const char *relpath, char type,
                       unsigned mode, const uint8_t *digest)
{
    struct digested *d = arg;
    assert_true((type == 'f') == (digest != NULL));
    assert_true(d->n < 8);
    snprintf(d->items[d->n], 128, "%c %o %s", type, mode, relpath);
    if (digest)
        memcpy(d->digest[d->n], digest, CK_SHA256_LEN);
    d->n++;
    return 0;
}

static void test_keep_walks(void **state)
{
    (void)state;
    char r[64];
    mk_tmpdir(r);
    put_file(r, "app/a.c", "int a;\n", 0644);
    put_file(r, "app/b.sh", "echo b\n", 0755);
    put_file(r, "other.txt", "other\n", 0644);
    struct digested fresh, replay, after;
    memset(&fresh, 0, sizeof fresh);
    memset(&replay, 0, sizeof replay);
    memset(&after, 0, sizeof after);
    struct ck_context_opts plain = {.threads = 2};
    struct ck_context_opts keep = {.threads = 2, .keep_walks = true};
    struct ck_context *ctx = NULL;

    assert_int_equal(ck_context_open(r, &plain, &ctx, NULL), 0);
    assert_int_equal(ck_context_source_walk(ctx, "app", digested_fn, &fresh,
                                            NULL),
                     0);
    ck_context_close(ctx);
    assert_int_equal(fresh.n, 3);

    assert_int_equal(ck_context_open(r, &keep, &ctx, NULL), 0);
    uint8_t d[CK_SHA256_LEN];
    assert_int_equal(ck_context_source_digest(ctx, "app", d, NULL, NULL), 0);
    /* The disk changes after the key was made. */
    put_file(r, "app/a.c", "int a = 2;\n", 0600);
    put_file(r, "app/c.c", "int c;\n", 0644);
    put_file(r, "other.txt", "changed\n", 0644);
    assert_int_equal(ck_context_source_walk(ctx, "app", digested_fn, &replay,
                                            NULL),
                     0);
    assert_int_equal(replay.n, fresh.n);
    for (int i = 0; i < fresh.n; i++) {
        assert_string_equal(replay.items[i], fresh.items[i]);
        assert_memory_equal(replay.digest[i], fresh.digest[i], CK_SHA256_LEN);
    }
    /* Never digested: walked, so it shows the change. */
    assert_int_equal(ck_context_source_walk(ctx, "other.txt", digested_fn,
                                            &after, NULL),
                     0);
    assert_int_equal(after.n, 1);
    assert_string_equal(after.items[0], "f 644 other.txt");
    int n = 0;
    assert_int_equal(ck_context_source_walk(ctx, "app", stop_fn, &n, NULL), 77);
    assert_int_equal(n, 3);
    ck_context_close(ctx);

    /* Without keep_walks the same sequence sees the new files. */
    memset(&after, 0, sizeof after);
    assert_int_equal(ck_context_open(r, &plain, &ctx, NULL), 0);
    assert_int_equal(ck_context_source_digest(ctx, "app", d, NULL, NULL), 0);
    assert_int_equal(ck_context_source_walk(ctx, "app", digested_fn, &after,
                                            NULL),
                     0);
    assert_int_equal(after.n, 4);
    ck_context_close(ctx);
    rm_tree(r);
}

/* ---- errors ---- */

static void test_errors(void **state)
{
    (void)state;
    char r[64];
    mk_tmpdir(r);
    make_tree(r);
    struct dig d = digest(r, "../x");
    assert_int_equal(d.rc, CAIRN_E_OUTSIDE);
    assert_string_equal(d.err.msg,
                        "forbidden path outside the build context: ../x");
    d = digest(r, "src/../../etc");
    assert_int_equal(d.rc, CAIRN_E_OUTSIDE);
    d = digest(r, "ln-out");
    assert_int_equal(d.rc, CAIRN_E_OUTSIDE);
    assert_string_equal(d.err.msg,
                        "forbidden path outside the build context: ln-out");
    d = digest(r, "ln-up");
    assert_int_equal(d.rc, CAIRN_E_OUTSIDE);
    d = digest(r, "ln-out/passwd");
    assert_int_equal(d.rc, CAIRN_E_OUTSIDE);
    /* Pointing outside is fine for a link inside a copied directory. */
    put_link(r, "src/lib/etc", "/etc");
    assert_int_equal(digest(r, "src").rc, 0);

    d = digest(r, "nope");
    assert_int_equal(d.rc, CAIRN_E_NOTFOUND);
    assert_string_equal(d.err.msg, "\"/nope\": not found");
    d = digest(r, "./src/nope/");
    assert_int_equal(d.rc, CAIRN_E_NOTFOUND);
    assert_string_equal(d.err.msg, "\"/src/nope\": not found");
    d = digest(r, "*.zzz");
    assert_int_equal(d.rc, CAIRN_E_NOTFOUND);
    assert_string_equal(d.err.msg, "\"/*.zzz\": not found");
    d = digest(r, "a.txt/x");
    assert_int_equal(d.rc, CAIRN_E_NOTFOUND);

    /* An absolute link into the context itself stays inside. */
    char target[128];
    snprintf(target, sizeof target, "%s/src", r);
    put_link(r, "ln-abs", target);
    d = digest(r, "ln-abs");
    assert_int_equal(d.rc, 0);
    assert_int_equal(d.st.files, 4);

    /* Special files: skipped inside directories, refused as a source. */
    struct dig before = digest(r, "src");
    char p[128];
    snprintf(p, sizeof p, "%s/src/fifo", r);
    assert_int_equal(mkfifo(p, 0644), 0);
    assert_string_equal(digest(r, "src").hex, before.hex);
    d = digest(r, "src/fifo");
    assert_int_equal(d.rc, CAIRN_E_UNSUPPORTED);

    /* A missing context directory. */
    struct ck_context *ctx = NULL;
    struct cairn_err err;
    assert_int_equal(ck_context_open("/nonexistent/ctx", NULL, &ctx, &err),
                     -ENOENT);
    assert_null(ctx);
    ck_context_close(NULL);
    rm_tree(r);
}

/* ---- stat cache ---- */

struct lmdb_dir {
    char dir[64];
    MDB_env *env;
};

static void lmdb_open(struct lmdb_dir *l)
{
    mk_tmpdir(l->dir);
    assert_int_equal(mdb_env_create(&l->env), 0);
    mdb_env_set_maxdbs(l->env, 4);
    mdb_env_set_mapsize(l->env, 64u << 20);
    assert_int_equal(mdb_env_open(l->env, l->dir, MDB_NOTLS, 0600), 0);
}

static void lmdb_close(struct lmdb_dir *l)
{
    mdb_env_close(l->env);
    rm_tree(l->dir);
}

static void test_stat_cache(void **state)
{
    (void)state;
    char r[64], p[256];
    mk_tmpdir(r);
    make_tree(r);
    struct lmdb_dir l;
    lmdb_open(&l);
    struct ck_statcache *sc = NULL;
    assert_int_equal(ck_statcache_open(l.env, &sc, NULL), 0);

    /* Files changed in the last two seconds are never cached (see
     * CTX_RACY_NS), so let the fresh tree age first. */
    struct dig cold = digest_opts(r, ".", 2, NULL, sc);
    assert_int_equal(cold.rc, 0);
    assert_int_equal(cold.st.bytes_read, cold.st.bytes);
    struct dig again = digest_opts(r, ".", 2, NULL, sc);
    assert_int_equal(again.st.bytes_read, again.st.bytes);
    sleep(3);

    cold = digest_opts(r, ".", 2, NULL, sc);
    assert_true(cold.st.bytes_read > 300000);
    struct dig warm = digest_opts(r, ".", 1, NULL, sc);
    assert_int_equal(warm.rc, 0);
    assert_int_equal(warm.st.bytes_read, 0);
    assert_string_equal(warm.hex, cold.hex);
    warm = digest_opts(r, "src", 2, NULL, sc);
    assert_int_equal(warm.st.bytes_read, 0);
    warm = digest_opts(r, "big.bin", 2, NULL, sc);
    assert_int_equal(warm.st.bytes_read, 0);

    /* Touching a file (same content) re-reads just that file. */
    snprintf(p, sizeof p, "%s/src/main.c", r);
    struct timespec ts[2] = {{.tv_nsec = UTIME_NOW}, {.tv_nsec = UTIME_NOW}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    struct dig t = digest_opts(r, ".", 2, NULL, sc);
    assert_int_equal(t.st.bytes_read, strlen("int main(void){return 0;}\n"));
    assert_string_equal(t.hex, cold.hex);

    /* Changed content (same size) is seen. */
    put_file(r, "src/main.c", "int main(void){return 7;}\n", 0644);
    t = digest_opts(r, ".", 2, NULL, sc);
    assert_string_not_equal(t.hex, cold.hex);
    assert_int_equal(t.st.bytes_read, strlen("int main(void){return 7;}\n"));

    /* Another context object over the same LMDB reuses the entries. */
    ck_statcache_close(sc);
    assert_int_equal(ck_statcache_open(l.env, &sc, NULL), 0);
    warm = digest_opts(r, "*.txt", 2, NULL, sc);
    assert_int_equal(warm.st.bytes_read, 0);
    ck_statcache_close(sc);
    lmdb_close(&l);
    rm_tree(r);
}

/* Unchanged directories are listed from the stat cache; every change to
 * the set of names must still be seen, and the digest must always equal
 * an uncached one. */
static void expect_same_as_uncached(const char *r, const struct ck_ignore *ig,
                                    struct ck_statcache *sc)
{
    struct dig cached = digest_opts(r, ".", 2, ig, sc);
    struct dig plain = digest_opts(r, ".", 1, ig, NULL);
    assert_int_equal(cached.rc, 0);
    assert_int_equal(plain.rc, 0);
    assert_string_equal(cached.hex, plain.hex);
}

static void test_listing_cache(void **state)
{
    (void)state;
    char r[64], p[256];
    mk_tmpdir(r);
    make_tree(r);
    struct lmdb_dir l;
    lmdb_open(&l);
    struct ck_statcache *sc = NULL;
    assert_int_equal(ck_statcache_open(l.env, &sc, NULL), 0);
    sleep(3); /* past the racy window, so listings are recorded */
    struct dig cold = digest_opts(r, ".", 2, NULL, sc);
    struct dig warm = digest_opts(r, ".", 2, NULL, sc);
    assert_int_equal(warm.rc, 0);
    assert_int_equal(warm.st.bytes_read, 0);
    assert_string_equal(warm.hex, cold.hex);

    /* Names added, removed, renamed, a file turned into a directory: each
     * changes the directory, so its cached listing no longer hits. These
     * follow each other within the racy window on purpose: a directory
     * changed twice in one timestamp tick must not keep a stale listing
     * (whether two changes share a tick depends on the file system's
     * clock; walk_dir's racy rule is what makes it safe either way). */
    put_file(r, "src/new.c", "new\n", 0644);
    expect_same_as_uncached(r, NULL, sc);
    put_file(r, "src/new2.c", "new2\n", 0644);
    expect_same_as_uncached(r, NULL, sc);
    snprintf(p, sizeof p, "%s/src/new.c", r);
    assert_int_equal(unlink(p), 0);
    expect_same_as_uncached(r, NULL, sc);
    char q[256];
    snprintf(p, sizeof p, "%s/src/lib/util.c", r);
    snprintf(q, sizeof q, "%s/src/lib/util2.c", r);
    assert_int_equal(rename(p, q), 0);
    expect_same_as_uncached(r, NULL, sc);
    snprintf(p, sizeof p, "%s/a.txt", r);
    assert_int_equal(unlink(p), 0);
    put_file(r, "a.txt/inner", "now a directory\n", 0644);
    expect_same_as_uncached(r, NULL, sc);

    /* Ignore rules apply to cached listings as to read ones. */
    struct ck_ignore *ig = parse_ignore("logs\n*.bin\nsrc/lib\n"
                                        "!src/lib/util.h\n");
    expect_same_as_uncached(r, ig, sc);
    expect_same_as_uncached(r, ig, sc);
    ck_ignore_free(ig);

    /* A damaged listing whose stat matches must not lead the walk
     * outside its directory: it is refused and the directory read. */
    char *abs = realpath(r, NULL);
    assert_non_null(abs);
    snprintf(p, sizeof p, "%s/src", abs);
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    static const char bad[] = "\x08../../etc/passwd\0\x08main.c";
    assert_int_equal(ck_statcache_dir_put(sc, p, &st, bad, sizeof bad - 1), 0);
    assert_int_equal(ck_statcache_flush(sc, NULL), 0);
    expect_same_as_uncached(r, NULL, sc);
    assert_int_equal(ck_statcache_dir_put(sc, p, &st, bad, sizeof bad), 0);
    assert_int_equal(ck_statcache_flush(sc, NULL), 0);
    expect_same_as_uncached(r, NULL, sc);
    free(abs);

    ck_statcache_close(sc);
    lmdb_close(&l);
    rm_tree(r);
}

/* A deferred cache (the store's, whose entries wait for the build's
 * image commit): a second walk of the same files in one build hits the
 * queued entries and reads nothing, with nothing committed meanwhile. */
static void test_deferred_cache_hits(void **state)
{
    (void)state;
    char r[64];
    mk_tmpdir(r);
    make_tree(r);
    struct lmdb_dir l;
    lmdb_open(&l);
    struct ck_statcache *sc = NULL;
    assert_int_equal(ck_statcache_open(l.env, &sc, NULL), 0);
    ck_statcache_set_defer(sc, true);
    MDB_envinfo info;
    assert_int_equal(mdb_env_info(l.env, &info), 0);
    size_t t0 = info.me_last_txnid;
    sleep(3); /* past the racy window, so entries are recorded */
    struct dig cold = digest_opts(r, ".", 2, NULL, sc);
    struct dig warm = digest_opts(r, ".", 2, NULL, sc);
    assert_int_equal(cold.rc, 0);
    assert_true(cold.st.bytes_read > 0);
    assert_int_equal(warm.rc, 0);
    assert_int_equal(warm.st.bytes_read, 0);
    assert_string_equal(warm.hex, cold.hex);
    assert_int_equal(mdb_env_info(l.env, &info), 0);
    assert_int_equal(info.me_last_txnid, t0);
    ck_statcache_close(sc); /* writes them */
    assert_int_equal(mdb_env_info(l.env, &info), 0);
    assert_int_equal(info.me_last_txnid, t0 + 1);
    lmdb_close(&l);
    rm_tree(r);
}

/* ---- scale ---- */

static void test_many_files_below_cap(void **state)
{
    (void)state;
    char r[64];
    mk_tmpdir(r);
    char rel[64], body[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(rel, sizeof rel, "d%02d/e%d/f%d", i % 37, i % 5, i);
        snprintf(body, sizeof body, "%d\n", i);
        put_file(r, rel, body, 0644);
    }
    struct dig a = digest_opts(r, ".", 1, NULL, NULL);
    struct dig b = digest_opts(r, ".", 0, NULL, NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.st.files, 3000);
    assert_int_equal(a.st.dirs, 1 + 37 + 37 * 5);
    assert_string_equal(a.hex, b.hex);
    assert_true(a.st.files + a.st.dirs < CK_CONTEXT_MAX_FILES);
    rm_tree(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_matches_header),
        cmocka_unit_test(test_deterministic_across_copies_times_owners_threads),
        cmocka_unit_test(test_changes_change_digest),
        cmocka_unit_test(test_ignored_paths_are_absent),
        cmocka_unit_test(test_source_forms),
        cmocka_unit_test(test_walk_stops),
        cmocka_unit_test(test_keep_walks),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_stat_cache),
        cmocka_unit_test(test_listing_cache),
        cmocka_unit_test(test_deferred_cache_hits),
        cmocka_unit_test(test_many_files_below_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
