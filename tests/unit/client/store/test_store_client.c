/* Unit tests for the client's local store (client/store/store.c): layout,
 * blobs, key index, images and tags, index.json, prune, usage, concurrency and
 * crash leftovers. Images are made here from JSON written with jansson and
 * tar layers written with libarchive, so the tests need neither the layer
 * nor the image module. */
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
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cachekey/digest.h"
#include "cachekey/statcache.h"
#include "client/store/image.h"
#include "client/store/store.h"
#include "client/store/store_members.h"
#include "common/error.h"

struct fixture {
    char root[64];
    struct cairn_store *st;
};

/* rm -rf for the fixture (paths are ours, under /tmp). */
static void rm_rf(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'",
             path, path);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->root, sizeof f->root, "/tmp/cairn-cstore-XXXXXX");
    if (f == NULL || mkdtemp(f->root) == NULL)
        return -1;
    /* The store makes its root itself, parents included. */
    strncat(f->root, "/r", sizeof f->root - strlen(f->root) - 1);
    struct cairn_err err;
    if (cairn_store_open(f->root, &f->st, &err) != 0) {
        fprintf(stderr, "open: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    cairn_store_close(f->st);
    char *slash = strrchr(f->root, '/');
    *slash = '\0';
    rm_rf(f->root);
    free(f);
    return 0;
}

static void path_in(const struct fixture *f, const char *rel, char *buf,
                    size_t len)
{
    snprintf(buf, len, "%s/%s", f->root, rel);
}

static int64_t file_size(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

static size_t dir_count(const char *p)
{
    DIR *d = opendir(p);
    size_t n = 0;
    struct dirent *de;
    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void write_file(const char *p, const char *content)
{
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
}

/* ------------------------------------------------------------------ */
/* building test images                                                 */

static void digest_hex(const void *p, size_t n, char out[CAIRN_DIGEST_STR_LEN])
{
    uint8_t bin[CK_SHA256_LEN];
    char hex[CK_SHA256_HEX_LEN + 1];
    assert_int_equal(ck_sha256(p, n, bin), 0);
    ck_hex_encode(bin, hex);
    snprintf(out, CAIRN_DIGEST_STR_LEN, "sha256:%s", hex);
}

/* A one-file tar (gzip'd when gz) in memory; *len its size. */
static char *tar_make(const char *name, const char *content, bool gz,
                      size_t *len)
{
    size_t cap = 64 * 1024 + strlen(content);
    char *buf = malloc(cap);
    assert_non_null(buf);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (gz) {
        archive_write_add_filter_gzip(a);
        archive_write_set_filter_option(a, "gzip", "timestamp", NULL);
    }
    archive_write_set_bytes_in_last_block(a, 1);
    assert_int_equal(archive_write_open_memory(a, buf, cap, len), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)strlen(content));
    archive_entry_set_mtime(e, 1700000000, 0);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    assert_int_equal(archive_write_data(a, content, strlen(content)),
                     (la_ssize_t)strlen(content));
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    return buf;
}

/* Stores a gzip'd layer holding one file; fills desc. */
static void layer_make(struct cairn_store *st, const char *content,
                       struct cairn_layer_desc *desc)
{
    struct cairn_err err;
    size_t tlen, glen;
    char *tar = tar_make("file.txt", content, false, &tlen);
    char *gz = tar_make("file.txt", content, true, &glen);
    digest_hex(tar, tlen, desc->diff_id);
    assert_int_equal(
        cairn_store_blob_add_data(st, gz, glen, desc->digest, &err), 0);
    desc->size = (int64_t)glen;
    desc->media_type = CAIRN_MEDIA_LAYER_GZIP;
    free(tar);
    free(gz);
}

struct test_image {
    char manifest[CAIRN_DIGEST_STR_LEN];
    char config[CAIRN_DIGEST_STR_LEN];
    int64_t manifest_size, config_size;
};

/* Stores config + manifest for layers and records the image with tags.
 * seed makes the config (and so the ID) distinct. */
static void image_make(struct cairn_store *st, const char *seed,
                       int64_t created, const struct cairn_layer_desc *layers,
                       size_t nlayers, const char *const *tags,
                       struct test_image *out)
{
    struct cairn_err err;
    json_t *diffs = json_array(), *ls = json_array();
    for (size_t i = 0; i < nlayers; i++) {
        json_array_append_new(diffs, json_string(layers[i].diff_id));
        json_array_append_new(ls, json_pack("{s:s,s:s,s:I}", "mediaType",
                                            layers[i].media_type, "digest",
                                            layers[i].digest, "size",
                                            (json_int_t)layers[i].size));
    }
    char when[32];
    time_t t = (time_t)created;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *cfg =
        json_pack("{s:s,s:s,s:s,s:{s:{s:s}},s:{s:s,s:o}}", "architecture",
                  "amd64", "os", "linux", "created", when, "config", "Labels",
                  "seed", seed, "rootfs", "type", "layers", "diff_ids", diffs);
    char *cj = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS);
    assert_int_equal(
        cairn_store_blob_add_data(st, cj, strlen(cj), out->config, &err), 0);
    out->config_size = (int64_t)strlen(cj);
    json_t *man =
        json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:o}", "schemaVersion", 2,
                  "mediaType", CAIRN_MEDIA_MANIFEST, "config", "mediaType",
                  CAIRN_MEDIA_CONFIG, "digest", out->config, "size",
                  (json_int_t)out->config_size, "layers", ls);
    char *mj = json_dumps(man, JSON_COMPACT | JSON_SORT_KEYS);
    assert_int_equal(
        cairn_store_blob_add_data(st, mj, strlen(mj), out->manifest, &err), 0);
    out->manifest_size = (int64_t)strlen(mj);
    size_t ntags = 0;
    while (tags && tags[ntags])
        ntags++;
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    memcpy(row.manifest_digest, out->manifest, sizeof out->manifest);
    row.tags = (char **)tags;
    row.ntags = ntags;
    int rc = cairn_store_image_add(st, &row, &err);
    if (rc)
        fprintf(stderr, "image_add: %s\n", err.msg);
    assert_int_equal(rc, 0);
    free(cj);
    free(mj);
    json_decref(cfg);
    json_decref(man);
}

/* index.json holds exactly the given (ref, manifest) pairs plus ndangling
 * descriptors without annotations. */
static void index_check(const struct fixture *f, const char *const *refs,
                        const char *const *manifests, size_t n,
                        size_t ndangling)
{
    char p[256];
    path_in(f, "index.json", p, sizeof p);
    json_error_t je;
    json_t *idx = json_load_file(p, 0, &je);
    assert_non_null(idx);
    assert_int_equal(json_integer_value(json_object_get(idx, "schemaVersion")),
                     2);
    assert_string_equal(json_string_value(json_object_get(idx, "mediaType")),
                        CAIRN_MEDIA_INDEX);
    json_t *ms = json_object_get(idx, "manifests");
    assert_int_equal(json_array_size(ms), n + ndangling);
    size_t found = 0, dangling = 0, i;
    json_t *d;
    json_array_foreach(ms, i, d)
    {
        json_t *ann = json_object_get(d, "annotations");
        const char *dg = json_string_value(json_object_get(d, "digest"));
        assert_non_null(dg);
        assert_true(json_integer_value(json_object_get(d, "size")) > 0);
        if (ann == NULL) {
            dangling++;
            continue;
        }
        const char *name = json_string_value(
            json_object_get(ann, "org.opencontainers.image.ref.name"));
        const char *full =
            json_string_value(json_object_get(ann, "io.cairn.image.ref"));
        assert_non_null(name);
        assert_non_null(full);
        for (size_t k = 0; k < n; k++)
            if (strcmp(refs[k], name) == 0) {
                assert_string_equal(manifests[k], dg);
                found++;
            }
    }
    assert_int_equal(found, n);
    assert_int_equal(dangling, ndangling);
    json_decref(idx);
}

/* ------------------------------------------------------------------ */
/* tests                                                                */

static void test_open_layout(void **state)
{
    struct fixture *f = *state;
    char p[256], buf[128];
    path_in(f, "oci-layout", p, sizeof p);
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    json_t *j = json_loads(buf, 0, NULL);
    assert_string_equal(
        json_string_value(json_object_get(j, "imageLayoutVersion")), "1.0.0");
    json_decref(j);
    index_check(f, NULL, NULL, 0, 0);
    static const char *const dirs[] = {"blobs/sha256", "snapshots", "tmp",
                                       "index"};
    for (size_t i = 0; i < 4; i++) {
        struct stat sb;
        path_in(f, dirs[i], p, sizeof p);
        assert_int_equal(stat(p, &sb), 0);
        assert_true(S_ISDIR(sb.st_mode));
    }
    assert_string_equal(cairn_store_root(f->st), f->root);
    path_in(f, "tmp", p, sizeof p);
    assert_string_equal(cairn_store_tmpdir(f->st), p);

    /* The stat cache lives in the same environment. */
    struct ck_statcache *sc = NULL;
    struct cairn_err err;
    assert_int_equal(ck_statcache_open(cairn_store_env(f->st), &sc, &err), 0);
    ck_statcache_close(sc);

    /* Reopening an existing store keeps it as it is. */
    cairn_store_close(f->st);
    assert_int_equal(cairn_store_open(f->root, &f->st, &err), 0);
    index_check(f, NULL, NULL, 0, 0);
}

static void test_blobs(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    char d[CAIRN_DIGEST_STR_LEN], p[256];
    const char *text = "hello blob";
    assert_int_equal(
        cairn_store_blob_add_data(f->st, text, strlen(text), d, &err), 0);
    char want[CAIRN_DIGEST_STR_LEN];
    digest_hex(text, strlen(text), want);
    assert_string_equal(d, want);
    assert_true(cairn_store_blob_has(f->st, d));
    assert_int_equal(cairn_store_blob_path(f->st, d, p, sizeof p), 0);
    assert_non_null(strstr(p, "/blobs/sha256/"));
    assert_int_equal(file_size(p), (int64_t)strlen(text));

    char *data = NULL;
    size_t len = 0;
    assert_int_equal(cairn_store_blob_read(f->st, d, 100, &data, &len, &err),
                     0);
    assert_int_equal(len, strlen(text));
    assert_string_equal(data, text);
    free(data);
    assert_int_equal(cairn_store_blob_read(f->st, d, 3, &data, &len, &err),
                     CAIRN_E_TOOBIG);
    /* Adding the same bytes again is a no-op. */
    assert_int_equal(
        cairn_store_blob_add_data(f->st, text, strlen(text), d, &err), 0);

    /* add_file: the file moves in; an existing blob wins and the
     * temporary file goes away. */
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s/blob-test", cairn_store_tmpdir(f->st));
    write_file(tmp, "other");
    char d2[CAIRN_DIGEST_STR_LEN];
    digest_hex("other", 5, d2);
    assert_int_equal(cairn_store_blob_add_file(f->st, tmp, d2, &err), 0);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_true(cairn_store_blob_has(f->st, d2));
    write_file(tmp, "other");
    assert_int_equal(cairn_store_blob_add_file(f->st, tmp, d2, &err), 0);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(cairn_store_blob_add_file(f->st, tmp, "sha256:zz", &err),
                     CAIRN_E_INVAL);

    /* Corrupt on disk: reading says so instead of returning it. */
    chmod(p, 0644);
    write_file(p, "hello bloB");
    assert_int_equal(cairn_store_blob_read(f->st, d, 100, &data, &len, &err),
                     CAIRN_E_DIGEST);
    assert_non_null(strstr(err.msg, "corrupt"));

    digest_hex("absent", 6, d2);
    assert_false(cairn_store_blob_has(f->st, d2));
    assert_int_equal(cairn_store_blob_read(f->st, d2, 100, &data, &len, &err),
                     CAIRN_E_NOTFOUND);
    assert_int_equal(
        cairn_store_blob_read(f->st, "md5:00", 100, &data, &len, &err),
        CAIRN_E_INVAL);
    /* Nothing was left in tmp/. */
    assert_int_equal(dir_count(cairn_store_tmpdir(f->st)), 0);
}

static const char KEY1[] =
    "1111111111111111111111111111111111111111111111111111111111111111";
static const char KEY2[] =
    "2222222222222222222222222222222222222222222222222222222222222222";
static const char KEY3[] =
    "3333333333333333333333333333333333333333333333333333333333333333";

static void test_keys(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_rec rec, got;
    memset(&rec, 0, sizeof rec);
    layer_make(f->st, "layer one", &rec.layer);
    assert_int_equal(cairn_store_key_get(f->st, KEY1, &got), CAIRN_E_NOTFOUND);
    assert_int_equal(cairn_store_key_put(f->st, KEY1, &rec, &err), 0);
    assert_int_equal(cairn_store_key_get(f->st, KEY1, &got), 0);
    assert_false(got.empty);
    assert_string_equal(got.layer.digest, rec.layer.digest);
    assert_string_equal(got.layer.diff_id, rec.layer.diff_id);
    assert_int_equal(got.layer.size, rec.layer.size);
    assert_string_equal(got.layer.media_type, CAIRN_MEDIA_LAYER_GZIP);

    struct cairn_layer_rec empty = {.empty = true};
    assert_int_equal(cairn_store_key_put(f->st, KEY2, &empty, &err), 0);
    assert_int_equal(cairn_store_key_get(f->st, KEY2, &got), 0);
    assert_true(got.empty);

    /* Bad input is refused, not stored. */
    assert_int_equal(cairn_store_key_put(f->st, "abc", &rec, &err),
                     CAIRN_E_INVAL);
    struct cairn_layer_rec bad = rec;
    bad.layer.media_type = "text/plain";
    assert_int_equal(cairn_store_key_put(f->st, KEY3, &bad, &err),
                     CAIRN_E_INVAL);
    assert_int_equal(cairn_store_key_get(f->st, KEY3, &got), CAIRN_E_NOTFOUND);

    /* The blob goes: the key is a miss. */
    char p[256];
    cairn_store_blob_path(f->st, rec.layer.digest, p, sizeof p);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(cairn_store_key_get(f->st, KEY1, &got), CAIRN_E_NOTFOUND);
    assert_int_equal(cairn_store_key_get(f->st, KEY2, &got), 0);
}

static size_t last_txnid(struct cairn_store *st)
{
    MDB_envinfo info;
    assert_int_equal(mdb_env_info(cairn_store_env(st), &info), 0);
    return info.me_last_txnid;
}

static size_t map_size(struct cairn_store *st)
{
    MDB_envinfo info;
    assert_int_equal(mdb_env_info(cairn_store_env(st), &info), 0);
    return info.me_mapsize;
}

#define MAP_INITIAL ((size_t)64 << 20) /* client/store/index.c */

/* Writes empty-step keys "<56 hex of tag><8 hex of n>" in batches until
 * the map has grown past its initial size (or 200 batches); returns how
 * many. 108 bytes a key (key and record) in half-full pages after splits:
 * some 600,000 keys fill 64 MiB; it stops one batch after the map grew. */
static size_t fill_keys_until_grown(struct cairn_store *st, unsigned tag)
{
    enum { BATCH = 8192, MAXBATCH = 200 };
    static char hex[BATCH][CK_SHA256_HEX_LEN + 1];
    const char *keys[BATCH];
    const struct cairn_layer_rec *recs[BATCH];
    struct cairn_layer_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.empty = true;
    struct cairn_err err;
    size_t n = 0;
    for (int b = 0; b < MAXBATCH && map_size(st) <= MAP_INITIAL; b++) {
        for (int i = 0; i < BATCH; i++) {
            snprintf(hex[i], sizeof hex[i], "%056x%08x", tag, (unsigned)n++);
            keys[i] = hex[i];
            recs[i] = &rec;
        }
        if (cairn_store_key_put_many(st, keys, recs, BATCH, &err) != 0)
            fail_msg("put batch %d: %s", b, err.msg);
    }
    return n;
}

/* The index map starts small (a fixed 16 GiB reservation made every
 * command fail under `ulimit -v`) and grows when a write finds it full:
 * keys written past the initial map are all there, in this process and
 * the next. */
static void test_map_grows_for_keys(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    assert_true(map_size(f->st) <= MAP_INITIAL);
    size_t n = fill_keys_until_grown(f->st, 0);
    assert_true(map_size(f->st) > MAP_INITIAL);
    struct cairn_layer_rec got;
    char k[CK_SHA256_HEX_LEN + 1];
    cairn_store_close(f->st);
    assert_int_equal(cairn_store_open(f->root, &f->st, &err), 0);
    for (size_t i = 0; i < n; i += 997) {
        snprintf(k, sizeof k, "%056x%08x", 0u, (unsigned)i);
        assert_int_equal(cairn_store_key_get(f->st, k, &got), 0);
        assert_true(got.empty);
    }
    snprintf(k, sizeof k, "%056x%08x", 0u, (unsigned)(n - 1));
    assert_int_equal(cairn_store_key_get(f->st, k, &got), 0);
}

/* Lookups of the stat cache run on other threads while store writes grow
 * the map: each remap waits for the lookups in flight (the cache holds the
 * map's shared lock around its transactions), so every lookup still hits
 * and none reads an unmapped page (which ASan or a SIGSEGV would report). */
struct lookup_arg {
    struct ck_statcache *sc;
    struct stat st;
    atomic_bool stop;
    atomic_long hits, misses;
};

static void *lookup_loop(void *p)
{
    struct lookup_arg *a = p;
    uint8_t d[CK_SHA256_LEN];
    while (!atomic_load(&a->stop)) {
        if (ck_statcache_lookup(a->sc, "/ctx/file", &a->st, d) && d[0] == 0x5a)
            atomic_fetch_add(&a->hits, 1);
        else
            atomic_fetch_add(&a->misses, 1);
    }
    return NULL;
}

static void test_map_grows_under_lookups(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    static struct lookup_arg a;
    memset(&a, 0, sizeof a);
    assert_int_equal(cairn_store_statcache_open(f->st, &a.sc, &err), 0);
    assert_int_equal(stat(f->root, &a.st), 0);
    uint8_t d[CK_SHA256_LEN];
    memset(d, 0x5a, sizeof d);
    assert_int_equal(ck_statcache_put(a.sc, "/ctx/file", &a.st, d), 0);
    assert_int_equal(ck_statcache_flush(a.sc, &err), 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, lookup_loop, &a), 0);

    fill_keys_until_grown(f->st, 1);
    atomic_store(&a.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_true(map_size(f->st) > MAP_INITIAL);
    assert_true(atomic_load(&a.hits) > 0);
    assert_int_equal(atomic_load(&a.misses), 0);
    cairn_store_statcache_close(f->st, a.sc);
}

/* The stat cache writes through the same map: a flush larger than the
 * whole initial map grows it (through the store's hook) and keeps every
 * entry. */
static void test_map_grows_for_statcache(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    assert_true(map_size(f->st) <= MAP_INITIAL);
    struct ck_statcache *sc = NULL;
    assert_int_equal(cairn_store_statcache_open(f->st, &sc, &err), 0);
    enum { NDIR = 1300, LISTING = 60 << 10 }; /* 78 MB of listings */
    static char list[LISTING];
    struct stat st;
    assert_int_equal(stat(f->root, &st), 0);
    char path[64];
    for (int i = 0; i < NDIR; i++) {
        snprintf(path, sizeof path, "/dir/%d", i);
        memset(list, 'a' + i % 26, sizeof list);
        assert_int_equal(ck_statcache_dir_put(sc, path, &st, list, LISTING), 0);
    }
    if (ck_statcache_flush(sc, &err) != 0)
        fail_msg("flush: %s", err.msg);
    assert_true(map_size(f->st) > MAP_INITIAL);
    static char got[LISTING];
    size_t len = 0;
    for (int i = 0; i < NDIR; i += 97) {
        snprintf(path, sizeof path, "/dir/%d", i);
        assert_true(ck_statcache_dir_lookup(sc, path, &st, got, sizeof got, &len));
        assert_int_equal(len, LISTING);
        assert_int_equal(got[0], 'a' + i % 26);
    }
    cairn_store_statcache_close(f->st, sc);
}

/* Fetched keys are recorded together: one transaction for all (one disk
 * flush), and all or none. */
static void test_keys_many(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_rec r1, r2, got;
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    layer_make(f->st, "layer one", &r1.layer);
    layer_make(f->st, "layer two", &r2.layer);

    assert_int_equal(cairn_store_key_put_many(f->st, NULL, NULL, 0, &err), 0);
    struct cairn_layer_rec bad = r2;
    bad.layer.media_type = "text/plain";
    const char *keys[] = {KEY1, KEY2};
    const struct cairn_layer_rec *badrecs[] = {&r1, &bad};
    size_t t0 = last_txnid(f->st);
    assert_int_equal(cairn_store_key_put_many(f->st, keys, badrecs, 2, &err),
                     CAIRN_E_INVAL);
    assert_int_equal(last_txnid(f->st), t0);
    assert_int_equal(cairn_store_key_get(f->st, KEY1, &got), CAIRN_E_NOTFOUND);

    const struct cairn_layer_rec *recs[] = {&r1, &r2};
    assert_int_equal(cairn_store_key_put_many(f->st, keys, recs, 2, &err), 0);
    assert_int_equal(last_txnid(f->st), t0 + 1);

    /* Still there for the next process. */
    cairn_store_close(f->st);
    f->st = NULL;
    assert_int_equal(cairn_store_open(f->root, &f->st, &err), 0);
    assert_int_equal(cairn_store_key_get(f->st, KEY1, &got), 0);
    assert_string_equal(got.layer.digest, r1.layer.digest);
    assert_int_equal(cairn_store_key_get(f->st, KEY2, &got), 0);
    assert_string_equal(got.layer.digest, r2.layer.digest);
    assert_string_equal(got.layer.diff_id, r2.layer.diff_id);
}

/* Keys put later wait in memory (no commit of their own, yet key_get sees
 * them), ride along with the next commit, whichever it is, and are
 * committed by the unlock that drops the lock or by the close. A bad
 * record waits not at all. */
static void test_keys_later(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_rec r1, r2, got, empty;
    memset(&r1, 0, sizeof r1);
    memset(&r2, 0, sizeof r2);
    memset(&empty, 0, sizeof empty);
    empty.empty = true;
    layer_make(f->st, "later one", &r1.layer);
    layer_make(f->st, "later two", &r2.layer);
    const char *keys[] = {KEY1, KEY2};
    const struct cairn_layer_rec *recs[] = {&r1, &r2};
    struct cairn_layer_rec bad = r2;
    bad.layer.media_type = "text/plain";
    const struct cairn_layer_rec *badrecs[] = {&r1, &bad};

    size_t t0 = last_txnid(f->st);
    assert_int_equal(
        cairn_store_key_put_later(f->st, keys, badrecs, 2, &err),
        CAIRN_E_INVAL);
    assert_int_equal(cairn_store_key_get(f->st, KEY1, &got), CAIRN_E_NOTFOUND);
    assert_int_equal(cairn_store_key_put_later(f->st, keys, recs, 2, &err), 0);
    assert_int_equal(last_txnid(f->st), t0);
    assert_int_equal(cairn_store_key_get(f->st, KEY2, &got), 0);
    assert_string_equal(got.layer.diff_id, r2.layer.diff_id);
    /* Nothing waits any more after the next commit (another key's). */
    static const char key3[] =
        "3333333333333333333333333333333333333333333333333333333333333333";
    const char *k3[] = {key3};
    const struct cairn_layer_rec *e3[] = {&empty};
    assert_int_equal(cairn_store_key_put_many(f->st, k3, e3, 1, &err), 0);
    assert_int_equal(last_txnid(f->st), t0 + 1);
    assert_int_equal(cairn_store_keys_commit(f->st, &err), 0);
    assert_int_equal(last_txnid(f->st), t0 + 1);

    /* The unlock that drops the lock commits what waits. */
    static const char key4[] =
        "4444444444444444444444444444444444444444444444444444444444444444";
    const char *k4[] = {key4};
    cairn_store_unlock(f->st); /* the lock layer_make's blobs took */
    assert_int_equal(last_txnid(f->st), t0 + 1);
    assert_int_equal(cairn_store_lock(f->st, false, &err), 0);
    assert_int_equal(cairn_store_lock(f->st, false, &err), 0);
    assert_int_equal(cairn_store_key_put_later(f->st, k4, e3, 1, &err), 0);
    cairn_store_unlock(f->st);
    assert_int_equal(last_txnid(f->st), t0 + 1);
    cairn_store_unlock(f->st);
    assert_int_equal(last_txnid(f->st), t0 + 2);

    /* And the close. */
    static const char key5[] =
        "5555555555555555555555555555555555555555555555555555555555555555";
    const char *k5[] = {key5};
    assert_int_equal(cairn_store_key_put_later(f->st, k5, e3, 1, &err), 0);
    cairn_store_close(f->st);
    f->st = NULL;
    assert_int_equal(cairn_store_open(f->root, &f->st, &err), 0);
    assert_int_equal(cairn_store_key_get(f->st, KEY1, &got), 0);
    assert_string_equal(got.layer.digest, r1.layer.digest);
    assert_int_equal(cairn_store_key_get(f->st, KEY2, &got), 0);
    assert_string_equal(got.layer.digest, r2.layer.digest);
    assert_int_equal(cairn_store_key_get(f->st, key3, &got), 0);
    assert_int_equal(cairn_store_key_get(f->st, key4, &got), 0);
    assert_int_equal(cairn_store_key_get(f->st, key5, &got), 0);
    assert_true(got.empty);
}

/* The store's stat cache rides in the store's commits: its flush commits
 * nothing, the next key commit records its entries (one commit for
 * both), and closing it after that commits nothing more. A second one
 * opened meanwhile flushes on its own. */
static void test_statcache_rides_in_commit(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct ck_statcache *sc = NULL, *again = NULL;
    assert_int_equal(cairn_store_statcache_open(f->st, &sc, &err), 0);
    struct stat st;
    assert_int_equal(stat(f->root, &st), 0);
    uint8_t d[CK_SHA256_LEN], got[CK_SHA256_LEN];
    memset(d, 0x6c, sizeof d);
    size_t t0 = last_txnid(f->st);
    assert_int_equal(ck_statcache_put(sc, "/ctx/rides", &st, d), 0);
    assert_int_equal(ck_statcache_flush(sc, &err), 0);
    assert_int_equal(last_txnid(f->st), t0);
    assert_true(ck_statcache_lookup(sc, "/ctx/rides", &st, got));

    struct cairn_layer_rec empty;
    memset(&empty, 0, sizeof empty);
    empty.empty = true;
    assert_int_equal(cairn_store_key_put(f->st, KEY1, &empty, &err), 0);
    assert_int_equal(last_txnid(f->st), t0 + 1);
    /* Another cache of the same store reads it from the database; it is
     * not the store's, so it flushes by itself. */
    assert_int_equal(cairn_store_statcache_open(f->st, &again, &err), 0);
    memset(got, 0, sizeof got);
    assert_true(ck_statcache_lookup(again, "/ctx/rides", &st, got));
    assert_memory_equal(got, d, sizeof d);
    assert_int_equal(ck_statcache_put(again, "/ctx/alone", &st, d), 0);
    assert_int_equal(ck_statcache_flush(again, &err), 0);
    assert_int_equal(last_txnid(f->st), t0 + 2);
    cairn_store_statcache_close(f->st, again);
    cairn_store_statcache_close(f->st, sc);
    assert_int_equal(last_txnid(f->st), t0 + 2);

    /* Closed, it no longer rides: the next commit is the key's alone, and
     * an entry left queued at close is written by the close. */
    assert_int_equal(cairn_store_statcache_open(f->st, &sc, &err), 0);
    assert_int_equal(ck_statcache_put(sc, "/ctx/left", &st, d), 0);
    cairn_store_statcache_close(f->st, sc);
    assert_int_equal(last_txnid(f->st), t0 + 3);
    assert_int_equal(cairn_store_key_put(f->st, KEY2, &empty, &err), 0);
    assert_int_equal(last_txnid(f->st), t0 + 4);
    assert_int_equal(ck_statcache_open(cairn_store_env(f->st), &sc, &err), 0);
    assert_true(ck_statcache_lookup(sc, "/ctx/left", &st, got));
    ck_statcache_close(sc);
}

/* Blobs added together get the digests, names and bytes one at a time
 * gives; one already there is no error; nothing stays in tmp/. */
static void test_blobs_at_once(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    const char *a = "config bytes", *b = "manifest bytes, longer";
    char one[CAIRN_DIGEST_STR_LEN], dg[2][CAIRN_DIGEST_STR_LEN], p[256];
    assert_int_equal(cairn_store_blob_add_data(f->st, a, strlen(a), one, &err),
                     0);
    const void *data[] = {a, b};
    size_t len[] = {strlen(a), strlen(b)};
    assert_int_equal(cairn_store_blobs_add_data(f->st, 2, data, len, dg, &err),
                     0);
    assert_string_equal(dg[0], one);
    char want[CAIRN_DIGEST_STR_LEN];
    digest_hex(b, strlen(b), want);
    assert_string_equal(dg[1], want);
    char *got = NULL;
    size_t glen = 0;
    assert_int_equal(
        cairn_store_blob_read(f->st, dg[1], 100, &got, &glen, &err), 0);
    assert_int_equal(glen, strlen(b));
    assert_memory_equal(got, b, glen);
    free(got);
    assert_int_equal(cairn_store_blob_path(f->st, dg[0], p, sizeof p), 0);
    assert_int_equal(file_size(p), (int64_t)strlen(a));
    assert_int_equal(dir_count(cairn_store_tmpdir(f->st)), 0);
    char many[CAIRN_STORE_BLOBS_AT_ONCE + 1][CAIRN_DIGEST_STR_LEN];
    const void *md[CAIRN_STORE_BLOBS_AT_ONCE + 1] = {0};
    size_t ml[CAIRN_STORE_BLOBS_AT_ONCE + 1] = {0};
    assert_int_equal(cairn_store_blobs_add_data(
                         f->st, CAIRN_STORE_BLOBS_AT_ONCE + 1, md, ml, many,
                         &err),
                     CAIRN_E_INVAL);
}

static void test_ref_normalize(void **state)
{
    (void)state;
    static const char *const ok[][2] = {
        {"myapp", "myapp:latest"},
        {"myapp:1.0", "myapp:1.0"},
        {"docker.io/library/myapp:2", "myapp:2"},
        {"docker.io/team/app", "team/app:latest"},
        {"localhost:5000/a/b", "localhost:5000/a/b:latest"},
        {"Registry.Example.com/x:V_1", "Registry.Example.com/x:V_1"},
        {"a__b.c-d:_x", "a__b.c-d:_x"},
    };
    char buf[512];
    struct cairn_err err;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(
            cairn_store_ref_normalize(ok[i][0], buf, sizeof buf, &err), 0);
        assert_string_equal(buf, ok[i][1]);
    }
    static const char *const bad[] = {"MyApp", "a:",   ":x",  "a/:b", "-a",
                                      "a:.x",  "a..b", "a/B", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(
            cairn_store_ref_normalize(bad[i], buf, sizeof buf, &err),
            CAIRN_E_INVAL);
    assert_int_equal(cairn_store_ref_normalize("MyApp", buf, sizeof buf, &err),
                     CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "must be lowercase"));
    assert_int_equal(
        cairn_store_ref_normalize("a@sha256:00", buf, sizeof buf, &err),
        CAIRN_E_UNSUPPORTED);
}

struct each_state {
    char ids[8][CAIRN_DIGEST_STR_LEN];
    int64_t created[8];
    size_t ntags[8];
    size_t n;
};

static int each_cb(void *arg, const struct cairn_image_row *row)
{
    struct each_state *s = arg;
    if (s->n < 8) {
        memcpy(s->ids[s->n], row->config_digest, CAIRN_DIGEST_STR_LEN);
        s->created[s->n] = row->created;
        s->ntags[s->n] = row->ntags;
        s->n++;
    }
    return 0;
}

/* image_add records the build's result and --explain record in the
 * image's own transaction: all in one commit, or nothing. */
static void test_image_add_records(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_desc l1;
    layer_make(f->st, "base", &l1);
    struct test_image a;
    image_make(f->st, "a", 1700000000, &l1, 1, NULL, &a);

    char *app[] = {"app", NULL};
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    memcpy(row.manifest_digest, a.manifest, sizeof a.manifest);
    row.tags = app;
    row.ntags = 1;
    row.result_key = KEY1;
    row.lastbuild = "rec-1";
    row.lastbuild_len = 5;
    size_t t0 = last_txnid(f->st);
    assert_int_equal(cairn_store_image_add(f->st, &row, &err), 0);
    assert_int_equal(last_txnid(f->st), t0 + 1);
    char m[CAIRN_DIGEST_STR_LEN];
    assert_int_equal(cairn_store_result_get(f->st, KEY1, m), 0);
    assert_string_equal(m, a.manifest);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(
        cairn_store_lastbuild_get(f->st, "app:latest", &data, &len, &err), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "rec-1", 5);
    free(data);

    /* A record over the cap: nothing at all is recorded. */
    char *other[] = {"other", NULL};
    row.tags = other;
    row.result_key = KEY2;
    row.lastbuild_len = CAIRN_STORE_LASTBUILD_MAX + 1u;
    t0 = last_txnid(f->st);
    assert_int_equal(cairn_store_image_add(f->st, &row, &err), CAIRN_E_TOOBIG);
    assert_int_equal(last_txnid(f->st), t0);
    assert_int_equal(cairn_store_result_get(f->st, KEY2, m), CAIRN_E_NOTFOUND);
    struct cairn_image_row got;
    assert_int_equal(cairn_store_image_find(f->st, "other", &got, &err),
                     CAIRN_E_NOTFOUND);

    /* lastbuild_drop removes the tag's old record with the same commit. */
    row.tags = app;
    row.result_key = NULL;
    row.lastbuild = NULL;
    row.lastbuild_len = 0;
    row.lastbuild_drop = true;
    assert_int_equal(cairn_store_image_add(f->st, &row, &err), 0);
    assert_int_equal(last_txnid(f->st), t0 + 1);
    assert_int_equal(
        cairn_store_lastbuild_get(f->st, "app", &data, &len, &err),
        CAIRN_E_NOTFOUND);
    assert_int_equal(cairn_store_image_find(f->st, "app", &got, &err), 0);
    assert_string_equal(got.manifest_digest, a.manifest);
    cairn_store_image_row_clear(&got);
}

static void test_images_and_tags(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_desc l1, l2;
    layer_make(f->st, "base", &l1);
    layer_make(f->st, "app v1", &l2);
    struct cairn_layer_desc la[] = {l1, l2};
    struct test_image a, b;
    const char *const atags[] = {"myapp", "other/name:1.0", NULL};
    image_make(f->st, "a", 1700000000, la, 2, atags, &a);
    const char *const refs1[] = {"myapp:latest", "other/name:1.0"};
    const char *const mans1[] = {a.manifest, a.manifest};
    index_check(f, refs1, mans1, 2, 0);

    /* Found by tag (any spelling), ID, manifest digest and ID prefix. */
    struct cairn_image_row row;
    static const char *const names[] = {"myapp", "myapp:latest",
                                        "docker.io/library/myapp:latest",
                                        "other/name:1.0"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(cairn_store_image_find(f->st, names[i], &row, &err),
                         0);
        assert_string_equal(row.manifest_digest, a.manifest);
        cairn_store_image_row_clear(&row);
    }
    assert_int_equal(cairn_store_image_find(f->st, a.config, &row, &err), 0);
    assert_string_equal(row.config_digest, a.config);
    assert_int_equal(row.ntags, 2);
    assert_string_equal(row.tags[0], "myapp:latest");
    assert_string_equal(row.tags[1], "other/name:1.0");
    assert_null(row.tags[2]);
    assert_int_equal(row.created, 1700000000);
    assert_int_equal(row.size, l1.size + l2.size);
    cairn_store_image_row_clear(&row);
    assert_int_equal(cairn_store_image_find(f->st, a.manifest, &row, &err), 0);
    cairn_store_image_row_clear(&row);
    char pfx[16];
    snprintf(pfx, sizeof pfx, "%.12s", a.config + 7);
    assert_int_equal(cairn_store_image_find(f->st, pfx, &row, &err), 0);
    assert_string_equal(row.config_digest, a.config);
    cairn_store_image_row_clear(&row);

    assert_int_equal(cairn_store_image_find(f->st, "nope", &row, &err),
                     CAIRN_E_NOTFOUND);
    assert_string_equal(err.msg, "No such image: nope");
    assert_int_equal(
        cairn_store_image_find(f->st, "myapp@sha256:00", &row, &err),
        CAIRN_E_INVAL);

    /* Retagging myapp:latest onto a newer build: the old image keeps its
     * other tag; after untagging that, it is dangling. */
    struct cairn_layer_desc lb[] = {l1};
    image_make(f->st, "b", 1700000100, lb, 1, NULL, &b);
    assert_int_equal(cairn_store_tag(f->st, "myapp", b.manifest, &err), 0);
    const char *const refs2[] = {"myapp:latest", "other/name:1.0"};
    const char *const mans2[] = {b.manifest, a.manifest};
    index_check(f, refs2, mans2, 2, 0);
    assert_int_equal(cairn_store_untag(f->st, "other/name:1.0", &err), 0);
    index_check(f, refs2, mans2, 1, 1);
    assert_int_equal(cairn_store_untag(f->st, "other/name:1.0", &err),
                     CAIRN_E_NOTFOUND);
    assert_int_equal(cairn_store_image_find(f->st, a.config, &row, &err), 0);
    assert_int_equal(row.ntags, 0);
    assert_null(row.tags[0]);
    cairn_store_image_row_clear(&row);
    assert_int_equal(cairn_store_tag(f->st, "Bad", b.manifest, &err),
                     CAIRN_E_INVAL);
    assert_int_equal(cairn_store_tag(f->st, "x", a.config, &err),
                     CAIRN_E_NOTFOUND);

    /* Listing: newest first. */
    struct each_state es = {0};
    assert_int_equal(cairn_store_image_each(f->st, each_cb, &es), 0);
    assert_int_equal(es.n, 2);
    assert_string_equal(es.ids[0], b.config);
    assert_int_equal(es.ntags[0], 1);
    assert_string_equal(es.ids[1], a.config);
    assert_int_equal(es.ntags[1], 0);

    /* An image whose layer blob is missing is refused. */
    struct cairn_layer_desc ghost = l1;
    digest_hex("ghost", 5, ghost.digest);
    struct cairn_image_row gr;
    memset(&gr, 0, sizeof gr);
    char *mj = NULL;
    json_t *man = json_pack("{s:i,s:{s:s,s:I},s:[{s:s,s:s,s:I}]}",
                            "schemaVersion", 2, "config", "digest", a.config,
                            "size", (json_int_t)a.config_size, "layers",
                            "mediaType", CAIRN_MEDIA_LAYER_GZIP, "digest",
                            ghost.digest, "size", (json_int_t)1);
    mj = json_dumps(man, JSON_COMPACT);
    assert_int_equal(cairn_store_blob_add_data(f->st, mj, strlen(mj),
                                               gr.manifest_digest, &err),
                     0);
    assert_int_equal(cairn_store_image_add(f->st, &gr, &err), CAIRN_E_NOTFOUND);
    free(mj);
    json_decref(man);

    /* Removing an image takes its tags along. */
    assert_int_equal(cairn_store_image_remove(f->st, b.manifest, &err), 0);
    assert_int_equal(cairn_store_image_find(f->st, "myapp", &row, &err),
                     CAIRN_E_NOTFOUND);
    index_check(f, NULL, NULL, 0, 1);
    assert_int_equal(cairn_store_image_remove(f->st, b.manifest, &err),
                     CAIRN_E_NOTFOUND);
}

static void test_ambiguous_prefix(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_desc l1;
    layer_make(f->st, "base", &l1);
    /* Make images until two IDs share their first hex digit (at most 17
     * by pigeonhole). */
    struct test_image imgs[17];
    size_t x = 0, y = 0;
    bool hit = false;
    for (size_t i = 0; i < 17 && !hit; i++) {
        char seed[16];
        snprintf(seed, sizeof seed, "s%zu", i);
        image_make(f->st, seed, 1700000000 + (int64_t)i, &l1, 1, NULL,
                   &imgs[i]);
        for (size_t j = 0; j < i && !hit; j++)
            if (imgs[j].config[7] == imgs[i].config[7]) {
                x = j;
                y = i;
                hit = true;
            }
    }
    assert_true(hit);
    struct cairn_image_row row;
    char pfx[2] = {imgs[x].config[7], '\0'};
    assert_int_equal(cairn_store_image_find(f->st, pfx, &row, &err),
                     CAIRN_E_INVAL);
    assert_non_null(strstr(err.msg, "ambiguous"));
    /* The full ID still finds each. */
    assert_int_equal(
        cairn_store_image_find(f->st, imgs[y].config + 7, &row, &err), 0);
    assert_string_equal(row.manifest_digest, imgs[y].manifest);
    cairn_store_image_row_clear(&row);
}

static int64_t blob_size(struct fixture *f, const char *d)
{
    char p[256];
    cairn_store_blob_path(f->st, d, p, sizeof p);
    return file_size(p);
}

/* Makes snapshots/<diff hex>/ with a file of n bytes and a read-only
 * subdirectory, as unpacked layers may have. */
static void snapshot_fake(struct fixture *f, const char *diff_id, size_t n)
{
    char p[256];
    snprintf(p, sizeof p, "%s/snapshots/%s", f->root, diff_id + 7);
    assert_int_equal(mkdir(p, 0755), 0);
    char q[300];
    snprintf(q, sizeof q, "%s/ro", p);
    assert_int_equal(mkdir(q, 0755), 0);
    snprintf(q, sizeof q, "%s/ro/data", p);
    char *buf = calloc(1, n + 1);
    memset(buf, 'x', n);
    write_file(q, buf);
    free(buf);
    snprintf(q, sizeof q, "%s/ro", p);
    chmod(q, 0555);
}

static void test_prune(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_desc shared, only_b, only_key;
    layer_make(f->st, "shared base", &shared);
    layer_make(f->st, "only in b", &only_b);
    layer_make(f->st, "only in the key index", &only_key);
    struct cairn_layer_desc la[] = {shared}, lb[] = {shared, only_b};
    struct test_image a, b;
    const char *const atags[] = {"keep:1", NULL};
    image_make(f->st, "a", 1700000000, la, 1, atags, &a);
    image_make(f->st, "b", 1700000001, lb, 2, NULL, &b);

    struct cairn_layer_rec r1 = {.layer = shared}, r2 = {.layer = only_b},
                           r3 = {.layer = only_key}, r4 = {.empty = true};
    assert_int_equal(cairn_store_key_put(f->st, KEY1, &r1, &err), 0);
    assert_int_equal(cairn_store_key_put(f->st, KEY2, &r2, &err), 0);
    assert_int_equal(cairn_store_key_put(f->st, KEY3, &r3, &err), 0);
    const char key4[] =
        "4444444444444444444444444444444444444444444444444444444444444444";
    assert_int_equal(cairn_store_key_put(f->st, key4, &r4, &err), 0);
    snapshot_fake(f, shared.diff_id, 100);
    snapshot_fake(f, only_b.diff_id, 1000);
    /* Member records: one in the kept layer, one in a layer prune
     * deletes (the record must go with the blob). */
    struct cairn_layer_member mk = {.key = {1}, .offset = 0, .size = 30},
                              md = {.key = {2}, .offset = 0, .size = 30};
    assert_int_equal(cairn_store_members_put(f->st, shared.digest, &mk, 1, &err),
                     0);
    assert_int_equal(cairn_store_members_put(f->st, only_b.digest, &md, 1, &err),
                     0);
    char mpath[512];
    uint64_t moff;
    uint32_t msize;
    assert_int_equal(cairn_store_members_find(f->st, md.key, mpath,
                                              sizeof mpath, &moff, &msize),
                     0);
    assert_int_equal(msize, 30);
    /* A crash leftover in tmp/. */
    char leftover[256];
    snprintf(leftover, sizeof leftover, "%s/blob-dead01",
             cairn_store_tmpdir(f->st));
    write_file(leftover, "12345");

    int64_t want = blob_size(f, b.manifest) + blob_size(f, b.config) +
                   blob_size(f, only_b.digest) + blob_size(f, only_key.digest) +
                   1000 + 5;

    struct cairn_store_usage u;
    assert_int_equal(cairn_store_usage_get(f->st, &u, &err), 0);
    assert_int_equal(u.images, 2);
    assert_int_equal(u.images_active, 1);
    assert_int_equal(u.layers, 3);
    assert_int_equal(u.layers_active, 1);
    assert_int_equal(u.layer_bytes, shared.size + only_b.size + only_key.size);
    assert_int_equal(u.layers_reclaimable, only_b.size + only_key.size);
    assert_int_equal(u.images_bytes,
                     blob_size(f, a.manifest) + blob_size(f, a.config) +
                         blob_size(f, b.manifest) + blob_size(f, b.config) +
                         shared.size + only_b.size);
    assert_int_equal(u.snapshots, 2);
    assert_int_equal(u.snapshots_active, 1);
    assert_int_equal(u.snapshot_bytes, 1100);
    assert_int_equal(u.snapshots_reclaimable, 1000);
    assert_int_equal(u.keys, 4);
    assert_int_equal(u.keys_active, 2);
    assert_true(u.index_bytes > 0);
    assert_int_equal(u.reclaimable_bytes, want);

    uint64_t freed = 0;
    int rc = cairn_store_prune(f->st, &freed, &err);
    if (rc)
        fprintf(stderr, "prune: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(freed, want);

    struct cairn_image_row row;
    assert_int_equal(cairn_store_image_find(f->st, b.config, &row, &err),
                     CAIRN_E_NOTFOUND);
    assert_int_equal(cairn_store_image_find(f->st, "keep:1", &row, &err), 0);
    cairn_store_image_row_clear(&row);
    assert_false(cairn_store_blob_has(f->st, b.manifest));
    assert_false(cairn_store_blob_has(f->st, b.config));
    assert_false(cairn_store_blob_has(f->st, only_b.digest));
    assert_false(cairn_store_blob_has(f->st, only_key.digest));
    assert_true(cairn_store_blob_has(f->st, a.manifest));
    assert_true(cairn_store_blob_has(f->st, a.config));
    assert_true(cairn_store_blob_has(f->st, shared.digest));
    struct cairn_layer_rec got;
    assert_int_equal(cairn_store_key_get(f->st, KEY1, &got), 0);
    assert_int_equal(cairn_store_key_get(f->st, KEY2, &got), CAIRN_E_NOTFOUND);
    assert_int_equal(cairn_store_key_get(f->st, key4, &got), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/snapshots/%s", f->root, shared.diff_id + 7);
    assert_int_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/snapshots/%s", f->root, only_b.diff_id + 7);
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(dir_count(cairn_store_tmpdir(f->st)), 0);
    const char *const refs[] = {"keep:1"};
    const char *const mans[] = {a.manifest};
    index_check(f, refs, mans, 1, 0);

    assert_int_equal(cairn_store_members_find(f->st, mk.key, mpath,
                                              sizeof mpath, &moff, &msize),
                     0);
    char want_path[512];
    cairn_store_blob_path(f->st, shared.digest, want_path, sizeof want_path);
    assert_string_equal(mpath, want_path);
    assert_int_equal(cairn_store_members_find(f->st, md.key, mpath,
                                              sizeof mpath, &moff, &msize),
                     CAIRN_E_NOTFOUND);

    /* The dropped keys are gone from the index, not just misses. */
    assert_int_equal(cairn_store_usage_get(f->st, &u, &err), 0);
    assert_int_equal(u.keys, 2);
    assert_int_equal(u.reclaimable_bytes, 0);
    assert_int_equal(u.images, 1);

    /* A second prune finds nothing. */
    assert_int_equal(cairn_store_prune(f->st, &freed, &err), 0);
    assert_int_equal(freed, 0);
}

static void test_snapshot_existing(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_desc l;
    layer_make(f->st, "snap", &l);
    snapshot_fake(f, l.diff_id, 10);
    char p[512], want[512];
    assert_int_equal(cairn_store_snapshot(f->st, &l, p, sizeof p, &err), 0);
    snprintf(want, sizeof want, "%s/snapshots/%s", f->root, l.diff_id + 7);
    assert_string_equal(p, want);
    assert_int_equal(cairn_store_snapshot(f->st, &l, p, 10, &err),
                     CAIRN_E_TOOBIG);
}

/* A missing snapshot is unpacked from the blob (checked against its
 * diff_id); a corrupt diff_id is refused and leaves nothing behind. */
static void test_snapshot_unpack(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_desc l;
    layer_make(f->st, "unpacked content\n", &l);
    char p[512], q[600];
    int rc = cairn_store_snapshot(f->st, &l, p, sizeof p, &err);
    if (rc)
        fprintf(stderr, "snapshot: %s\n", err.msg);
    assert_int_equal(rc, 0);
    snprintf(q, sizeof q, "%s/file.txt", p);
    FILE *fp = fopen(q, "r");
    assert_non_null(fp);
    char buf[64] = {0};
    assert_non_null(fgets(buf, sizeof buf, fp));
    fclose(fp);
    assert_string_equal(buf, "unpacked content\n");
    assert_int_equal(dir_count(cairn_store_tmpdir(f->st)), 0);

    struct cairn_layer_desc bad = l;
    digest_hex("not the tar", 11, bad.diff_id);
    assert_int_equal(cairn_store_snapshot(f->st, &bad, p, sizeof p, &err),
                     CAIRN_E_DIGEST);
    snprintf(q, sizeof q, "%s/snapshots/%s", f->root, bad.diff_id + 7);
    assert_int_equal(access(q, F_OK), -1);
    assert_int_equal(dir_count(cairn_store_tmpdir(f->st)), 0);
}

/* Processes unpacking the same layer at once: every one gets the same
 * complete snapshot; the losers of the rename discard theirs. */
static void test_snapshot_race(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_desc l;
    char big[8192];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    layer_make(f->st, big, &l);
    enum { NPROC = 4 };
    pid_t pids[NPROC];
    for (int i = 0; i < NPROC; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            struct cairn_store *st;
            char p[512], q[600];
            if (cairn_store_open(f->root, &st, &err) != 0)
                _exit(2);
            int rc = cairn_store_snapshot(st, &l, p, sizeof p, &err);
            cairn_store_close(st);
            snprintf(q, sizeof q, "%s/file.txt", p);
            _exit(rc ? 3 : file_size(q) == (int64_t)strlen(big) ? 0 : 4);
        }
    }
    for (int i = 0; i < NPROC; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    char snaps[256];
    path_in(f, "snapshots", snaps, sizeof snaps);
    assert_int_equal(dir_count(snaps), 1);
    assert_int_equal(dir_count(cairn_store_tmpdir(f->st)), 0);
}

/* Two processes tag at once: LMDB serialises the writes and index.json is
 * rebuilt under its lock, so neither loses the other's tags. */
static void test_concurrent_tagging(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_desc l;
    layer_make(f->st, "base", &l);
    struct test_image a;
    image_make(f->st, "a", 1700000000, &l, 1, NULL, &a);
    enum { N = 25 };
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* A fresh store: an LMDB environment must not cross fork(). */
        struct cairn_store *st;
        if (cairn_store_open(f->root, &st, &err) != 0)
            _exit(2);
        for (int i = 0; i < N; i++) {
            char ref[32];
            snprintf(ref, sizeof ref, "child:%d", i);
            if (cairn_store_tag(st, ref, a.manifest, &err) != 0)
                _exit(3);
        }
        cairn_store_close(st);
        _exit(0);
    }
    struct cairn_store *st;
    assert_int_equal(cairn_store_open(f->root, &st, &err), 0);
    for (int i = 0; i < N; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "parent:%d", i);
        assert_int_equal(cairn_store_tag(st, ref, a.manifest, &err), 0);
    }
    cairn_store_close(st);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    struct cairn_image_row row;
    assert_int_equal(cairn_store_image_find(f->st, a.config, &row, &err), 0);
    assert_int_equal(row.ntags, 2 * N);
    cairn_store_image_row_clear(&row);
    const char *refs[2 * N], *mans[2 * N];
    char names[2 * N][32];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], 32, "child:%d", i);
        snprintf(names[N + i], 32, "parent:%d", i);
    }
    for (int i = 0; i < 2 * N; i++) {
        refs[i] = names[i];
        mans[i] = a.manifest;
    }
    index_check(f, refs, mans, 2 * N, 0);
}

/* Prune waits for builds: a shared lock held elsewhere blocks it. */
static void test_prune_waits_for_lock(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    assert_int_equal(cairn_store_lock(f->st, false, &err), 0);
    assert_int_equal(cairn_store_lock(f->st, false, &err), 0);
    assert_int_equal(cairn_store_lock(f->st, true, &err), CAIRN_E_INVAL);
    cairn_store_unlock(f->st);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct cairn_store *st;
        uint64_t freed;
        if (cairn_store_open(f->root, &st, &err) != 0)
            _exit(2);
        int rc = cairn_store_prune(st, &freed, &err);
        cairn_store_close(st);
        _exit(rc ? 3 : 0);
    }
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    int status;
    assert_int_equal(waitpid(pid, &status, WNOHANG), 0); /* still waiting */
    cairn_store_unlock(f->st);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* What a crash leaves (a half-written blob, a half-unpacked snapshot in
 * tmp/) is never under a final name, is ignored, and prune removes it. */
static void test_crash_leftovers(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    char p[256];
    snprintf(p, sizeof p, "%s/blob-AbC123", cairn_store_tmpdir(f->st));
    write_file(p, "half a blo");
    snprintf(p, sizeof p, "%s/snap-XyZ789", cairn_store_tmpdir(f->st));
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/snap-XyZ789/etc", cairn_store_tmpdir(f->st));
    assert_int_equal(mkdir(p, 0500), 0);
    /* A crashed process' child: reopen and use the store as usual. */
    cairn_store_close(f->st);
    assert_int_equal(cairn_store_open(f->root, &f->st, &err), 0);
    char blobs[256];
    path_in(f, "blobs/sha256", blobs, sizeof blobs);
    assert_int_equal(dir_count(blobs), 0);
    struct each_state es = {0};
    assert_int_equal(cairn_store_image_each(f->st, each_cb, &es), 0);
    assert_int_equal(es.n, 0);
    struct cairn_store_usage u;
    assert_int_equal(cairn_store_usage_get(f->st, &u, &err), 0);
    assert_int_equal(u.reclaimable_bytes, 10);
    uint64_t freed = 0;
    assert_int_equal(cairn_store_prune(f->st, &freed, &err), 0);
    assert_int_equal(freed, 10);
    assert_int_equal(dir_count(cairn_store_tmpdir(f->st)), 0);
}


/* Repo digests (a pulled image's): kept in the record, merged when the
 * image is added again (a build re-adding it keeps them), found by
 * "name@digest" in any spelling of name, capped, and bad ones refused. */
static void test_repo_digests(void **state)
{
    struct fixture *f = *state;
    struct cairn_err err;
    struct cairn_layer_desc l1;
    layer_make(f->st, "rd", &l1);
    struct test_image a;
    image_make(f->st, "rd", 1700000000, &l1, 1, NULL, &a);
    char d1[300], d2[300];
    snprintf(d1, sizeof d1, "busybox@%s", a.manifest);
    snprintf(d2, sizeof d2, "127.0.0.1:5000/x/y@sha256:%064d", 7);
    char *rds[] = {d1};
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    memcpy(row.manifest_digest, a.manifest, sizeof a.manifest);
    row.repo_digests = rds;
    row.nrepo_digests = 1;
    const char *const tags[] = {"busybox:1", NULL};
    row.tags = (char **)tags;
    row.ntags = 1;
    assert_int_equal(cairn_store_image_add(f->st, &row, &err), 0);
    rds[0] = d2;
    row.tags = NULL;
    row.ntags = 0;
    assert_int_equal(cairn_store_image_add(f->st, &row, &err), 0);
    /* A plain re-add (a build) keeps both. */
    row.repo_digests = NULL;
    row.nrepo_digests = 0;
    assert_int_equal(cairn_store_image_add(f->st, &row, &err), 0);
    struct cairn_image_row got;
    char name[300];
    snprintf(name, sizeof name, "docker.io/library/busybox:9@%s", a.manifest);
    assert_int_equal(cairn_store_image_find(f->st, name, &got, &err), 0);
    assert_string_equal(got.manifest_digest, a.manifest);
    assert_int_equal(got.nrepo_digests, 2);
    assert_string_equal(got.repo_digests[0], d1);
    assert_string_equal(got.repo_digests[1], d2);
    assert_int_equal(got.ntags, 1);
    cairn_store_image_row_clear(&got);
    assert_int_equal(cairn_store_image_find(f->st, d2, &got, &err), 0);
    cairn_store_image_row_clear(&got);
    snprintf(name, sizeof name, "other@%s", a.manifest);
    assert_int_equal(cairn_store_image_find(f->st, name, &got, &err),
                     CAIRN_E_NOTFOUND);
    /* Past the cap the oldest go. */
    char many[40][300];
    char *mp[40];
    for (int i = 0; i < 40; i++) {
        snprintf(many[i], sizeof many[i], "r%d@sha256:%064d", i, i);
        mp[i] = many[i];
    }
    row.repo_digests = mp;
    row.nrepo_digests = 40;
    assert_int_equal(cairn_store_image_add(f->st, &row, &err), 0);
    assert_int_equal(cairn_store_image_find(f->st, a.manifest, &got, &err), 0);
    assert_int_equal(got.nrepo_digests, 32);
    assert_string_equal(got.repo_digests[31], many[39]);
    cairn_store_image_row_clear(&got);
    char *bad[] = {"noat"};
    row.repo_digests = bad;
    row.nrepo_digests = 1;
    assert_int_equal(cairn_store_image_add(f->st, &row, &err), CAIRN_E_INVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statcache_rides_in_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_blobs_at_once, setup, teardown),
        cmocka_unit_test(test_ref_normalize),
        cmocka_unit_test_setup_teardown(test_images_and_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_add_records, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ambiguous_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_existing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_unpack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_tagging, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_prune_waits_for_lock, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_crash_leftovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repo_digests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grows_for_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_map_grows_under_lookups, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_map_grows_for_statcache, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
