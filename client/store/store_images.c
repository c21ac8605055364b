/* Images and tags of the local store (client/store/store.h): image
 * records added (with the tags, the build result and the last build that
 * came with them), found, listed and removed; tags moved and removed;
 * build results (the image a final key made) put and found. The
 * rest of the store is client/store/store*.c (client/store/README.md). */
#include "client/store/store.h"
#include "client/store/store_impl.h"
#include "client/store/json.h"

#include "cachekey/digest.h"
#include "common/fdio.h"
#include "client/store/image.h"
#include "client/store/index.h"
#include "common/buf.h"
#include "common/strvec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* images and tags                                                      */

static int tag_put(struct cairn_store *st, MDB_txn *txn, const char *ref,
                   const uint8_t manifest[CK_SHA256_LEN], struct cairn_err *err)
{
    char norm[STORE_NAME_MAX + STORE_TAG_MAX + 2];
    int rc = cairn_store_ref_normalize(ref, norm, sizeof norm, err);
    if (rc)
        return rc;
    MDB_val k = {strlen(norm), norm}, v = {CK_SHA256_LEN, (void *)manifest};
    int mrc = mdb_put(txn, st->db_tags, &k, &v, 0);
    return mrc ? store_mdb_fail(err, mrc, "put tag") : 0;
}

/* The result and last-build records of row, in image_add's transaction
 * (struct cairn_image_row). */
static int image_extras_put(struct cairn_store *st, MDB_txn *txn,
                            const struct cairn_image_row *row,
                            struct cairn_err *err)
{
    int mrc;
    if (row->result_key) {
        uint8_t k[CK_SHA256_LEN];
        if (store_key_bin(row->result_key, k))
            return cairn_err_set(err, CAIRN_E_INVAL, "bad build result");
        MDB_val kv = {sizeof k, k};
        MDB_val v = {strlen(row->manifest_digest),
                     (void *)row->manifest_digest};
        if ((mrc = mdb_put(txn, st->db_results, &kv, &v, 0)) != 0)
            return store_mdb_fail(err, mrc, "put result");
    }
    if (row->lastbuild == NULL && !row->lastbuild_drop)
        return 0;
    if (row->lastbuild && row->lastbuild_len > CAIRN_STORE_LASTBUILD_MAX)
        return cairn_err_set(err, CAIRN_E_TOOBIG,
                             "last build: %zu bytes, over the %u limit",
                             row->lastbuild_len, CAIRN_STORE_LASTBUILD_MAX);
    for (size_t i = 0; row->tags && i < row->ntags; i++) {
        char name[STORE_NAME_MAX + STORE_TAG_MAX + 2];
        int rc = store_lastbuild_key(row->tags[i], name, sizeof name, err);
        if (rc)
            return rc;
        MDB_val kv = {strlen(name), name};
        if (row->lastbuild) {
            MDB_val v = {row->lastbuild_len, (void *)row->lastbuild};
            mrc = mdb_put(txn, st->db_lastbuild, &kv, &v, 0);
        } else {
            mrc = mdb_del(txn, st->db_lastbuild, &kv, NULL);
            if (mrc == MDB_NOTFOUND)
                mrc = 0;
        }
        if (mrc)
            return store_mdb_fail(err, mrc, "put last build");
    }
    return 0;
}

/* The repo digests the image keeps: those of its record already in the
 * index, then row's new ones, at most STORE_REPO_DIGESTS_MAX (the
 * oldest dropped). *out: the record val re-encoded with them (malloc'd),
 * or NULL when val stands as it is (none at all). */
static int repo_digests_merge(struct cairn_store *st, MDB_txn *txn,
                              const uint8_t manifest[CK_SHA256_LEN],
                              const char *val,
                              const struct cairn_image_row *row, char **out,
                              struct cairn_err *err)
{
    MDB_val k = {CK_SHA256_LEN, (void *)manifest}, old;
    struct imgrec prev, r;
    json_t *all = json_array();
    int rc = 0;
    *out = NULL;
    if (all == NULL)
        return cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    if (mdb_get(txn, st->db_images, &k, &old) == 0 &&
        store_imgrec_decode(&k, &old, &prev) == 0) {
        if (prev.repo_digests)
            json_array_extend(all, prev.repo_digests);
        store_imgrec_clear(&prev);
    }
    for (size_t i = 0; i < row->nrepo_digests; i++) {
        const char *d = row->repo_digests[i];
        if (!store_repo_digest_ok(d)) {
            json_decref(all);
            return cairn_err_set(err, CAIRN_E_INVAL,
                                 "bad repo digest \"%.100s\"", d ? d : "");
        }
        size_t j;
        json_t *e;
        bool seen = false;
        json_array_foreach(all, j, e)
        {
            seen = seen || strcmp(json_string_value(e), d) == 0;
        }
        if (!seen)
            json_array_append_new(all, json_string(d));
    }
    while (json_array_size(all) > STORE_REPO_DIGESTS_MAX)
        json_array_remove(all, 0);
    if (json_array_size(all) == 0) {
        json_decref(all);
        return 0;
    }
    MDB_val nv = {strlen(val), (void *)val};
    if (store_imgrec_decode(&k, &nv, &r) != 0) {
        json_decref(all);
        return cairn_err_set(err, CAIRN_E_CORRUPT, "image record");
    }
    json_decref(r.repo_digests);
    r.repo_digests = all;
    size_t len;
    *out = store_imgrec_encode(&r, &len);
    store_imgrec_clear(&r);
    if (*out == NULL)
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
    return rc;
}

struct image_put {
    const uint8_t *manifest; /* CK_SHA256_LEN */
    char *val;
    size_t vlen;
    const struct cairn_image_row *row;
};

/* The image record val (for manifest), its tags and extras in one write
 * transaction. */
static int image_put_fn(struct cairn_store *st, MDB_txn *txn, void *arg,
                        struct cairn_err *err)
{
    struct image_put *ip = arg;
    MDB_val k = {CK_SHA256_LEN, (void *)ip->manifest}, v = {ip->vlen, ip->val};
    char *merged = NULL;
    int rc = repo_digests_merge(st, txn, ip->manifest, ip->val, ip->row,
                                &merged, err);
    if (rc)
        return rc;
    if (merged) {
        v.mv_data = merged;
        v.mv_size = strlen(merged);
    }
    int mrc = mdb_put(txn, st->db_images, &k, &v, 0);
    free(merged);
    if (mrc)
        rc = store_mdb_fail(err, mrc, "put image");
    for (size_t i = 0; !rc && ip->row->tags && i < ip->row->ntags; i++)
        rc = tag_put(st, txn, ip->row->tags[i], ip->manifest, err);
    if (!rc)
        rc = image_extras_put(st, txn, ip->row, err);
    return rc;
}

int cairn_store_image_add(struct cairn_store *st,
                          const struct cairn_image_row *row,
                          struct cairn_err *err)
{
    struct imgrec r;
    int rc = store_imgrec_from_blobs(st, row->manifest_digest, &r, err);
    if (rc)
        return rc;
    char *val = NULL;
    if (row->config_digest[0] != '\0' &&
        strcmp(row->config_digest, r.config) != 0) {
        rc = cairn_err_set(err, CAIRN_E_INVAL,
                           "manifest %s has config %s, not %s",
                           row->manifest_digest, r.config, row->config_digest);
        goto out;
    }
    if (row->created > 0)
        r.created = row->created;
    size_t vlen = 0;
    store_blobs_sync(st);
    val = store_imgrec_encode(&r, &vlen);
    if (val == NULL) {
        rc = cairn_err_set(err, CAIRN_E_NOMEM, "out of memory");
        goto out;
    }
    struct image_put ip = {r.manifest, val, vlen, row};
    rc = store_txn_write(st, image_put_fn, &ip, "commit image", err);
    if (!rc)
        rc = store_index_json_write(st, err);
out:
    free(val);
    store_imgrec_clear(&r);
    return rc;
}

struct tag_move {
    const char *ref;
    const char *manifest_digest;
    uint8_t *m; /* CK_SHA256_LEN */
};

static int tag_fn(struct cairn_store *st, MDB_txn *txn, void *arg,
                  struct cairn_err *err)
{
    struct tag_move *t = arg;
    MDB_val k = {CK_SHA256_LEN, t->m}, v;
    int mrc = mdb_get(txn, st->db_images, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return cairn_err_set(err, CAIRN_E_NOTFOUND, "No such image: %s",
                             t->manifest_digest);
    if (mrc)
        return store_mdb_fail(err, mrc, "get image");
    return tag_put(st, txn, t->ref, t->m, err);
}

int cairn_store_tag(struct cairn_store *st, const char *ref,
                    const char *manifest_digest, struct cairn_err *err)
{
    uint8_t m[CK_SHA256_LEN];
    if (store_digest_bin(manifest_digest, m))
        return cairn_err_set(err, CAIRN_E_INVAL, "bad manifest digest");
    struct tag_move t = {ref, manifest_digest, m};
    int rc = store_txn_write(st, tag_fn, &t, "commit tag", err);
    return rc ? rc : store_index_json_write(st, err);
}

int cairn_store_untag(struct cairn_store *st, const char *ref,
                      struct cairn_err *err)
{
    char norm[STORE_NAME_MAX + STORE_TAG_MAX + 2];
    int rc = cairn_store_ref_normalize(ref, norm, sizeof norm, err);
    if (rc)
        return rc;
    MDB_val k = {strlen(norm), norm};
    rc = store_write_one(st, st->db_tags, &k, NULL, "delete tag", err);
    if (rc == CAIRN_E_NOTFOUND)
        return cairn_err_set(err, CAIRN_E_NOTFOUND, "No such image: %s", ref);
    return rc ? rc : store_index_json_write(st, err);
}

/* Fills row from a record; tags (malloc'd) are those of tl pointing at
 * the image. */
static int row_fill(const struct imgrec *r, const struct taglist *tl,
                    struct cairn_image_row *row)
{
    struct cairn_strvec sv;
    cairn_strvec_init(&sv);
    for (size_t i = 0; i < tl->n; i++)
        if (memcmp(tl->v[i].manifest, r->manifest, CK_SHA256_LEN) == 0 &&
            cairn_strvec_push(&sv, tl->v[i].ref)) {
            cairn_strvec_free(&sv);
            return CAIRN_E_NOMEM;
        }
    size_t n = 0;
    char **tags = cairn_strvec_take(&sv, &n);
    if (tags == NULL)
        return CAIRN_E_NOMEM;
    struct cairn_strvec rd;
    cairn_strvec_init(&rd);
    size_t i;
    json_t *e;
    json_array_foreach(r->repo_digests, i, e)
    {
        if (cairn_strvec_push(&rd, json_string_value(e))) {
            cairn_strvec_free(&rd);
            cairn_strv_free(tags, n);
            return CAIRN_E_NOMEM;
        }
    }
    size_t nrd = 0;
    char **rds = cairn_strvec_take(&rd, &nrd);
    if (rds == NULL) {
        cairn_strv_free(tags, n);
        return CAIRN_E_NOMEM;
    }
    memset(row, 0, sizeof *row);
    row->repo_digests = rds;
    row->nrepo_digests = nrd;
    store_digest_str(r->manifest, row->manifest_digest);
    memcpy(row->config_digest, r->config, sizeof r->config);
    row->created = r->created;
    row->size = r->bytes;
    row->tags = tags;
    row->ntags = n;
    return 0;
}

void cairn_store_image_row_clear(struct cairn_image_row *row)
{
    if (row == NULL)
        return;
    cairn_strv_free(row->tags, row->ntags);
    cairn_strv_free(row->repo_digests, row->nrepo_digests);
    row->tags = NULL;
    row->ntags = 0;
    row->repo_digests = NULL;
    row->nrepo_digests = 0;
}

/* Every image, with its tags, read in one transaction. */
struct rowlist {
    struct cairn_image_row *v;
    size_t n;
};

static void rowlist_free(struct rowlist *rl)
{
    for (size_t i = 0; i < rl->n; i++)
        cairn_store_image_row_clear(&rl->v[i]);
    free(rl->v);
    rl->v = NULL;
    rl->n = 0;
}

struct rowlist_fill {
    struct rowlist *rl;
    size_t alloc;
};

/* store_image_fn: r as a row appended to arg's list. */
static int rowlist_add(void *arg, const struct imgrec *r,
                       const struct taglist *tags)
{
    struct rowlist_fill *f = arg;
    struct rowlist *rl = f->rl;
    if (rl->n == f->alloc) {
        size_t na = f->alloc ? f->alloc * 2 : 16;
        struct cairn_image_row *nv = realloc(rl->v, na * sizeof *nv);
        if (nv == NULL)
            return CAIRN_E_NOMEM;
        rl->v = nv;
        f->alloc = na;
    }
    int rc = row_fill(r, tags, &rl->v[rl->n]);
    if (!rc)
        rl->n++;
    return rc;
}

static int rowlist_load(struct cairn_store *st, struct rowlist *rl)
{
    struct rowlist_fill f = {rl, 0};
    int rc = store_images_each(st, rowlist_add, &f);
    if (rc)
        rowlist_free(rl);
    return rc;
}

static int row_newest_first(const void *a, const void *b)
{
    const struct cairn_image_row *x = a, *y = b;
    if (x->created != y->created)
        return x->created > y->created ? -1 : 1;
    return strcmp(x->manifest_digest, y->manifest_digest);
}

int cairn_store_image_each(struct cairn_store *st,
                           int (*fn)(void *arg,
                                     const struct cairn_image_row *row),
                           void *arg)
{
    struct rowlist rl = {0};
    int rc = rowlist_load(st, &rl);
    if (rc)
        return rc;
    if (rl.n > 1)
        qsort(rl.v, rl.n, sizeof *rl.v, row_newest_first);
    /* Called outside any transaction, so fn may change the store. */
    for (size_t i = 0; i < rl.n && !rc; i++)
        rc = fn(arg, &rl.v[i]);
    rowlist_free(&rl);
    return rc;
}

static bool is_hex_prefix(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CK_SHA256_HEX_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* "name[:tag]@sha256:..." -> "name@sha256:..." with name as
 * cairn_store_ref_normalize writes it (its tag dropped). */
static int repo_digest_name(const char *ref, const char *at, char *buf,
                            size_t len, struct cairn_err *err)
{
    char name[STORE_NAME_MAX + STORE_TAG_MAX + 2];
    size_t n = (size_t)(at - ref);
    if (n >= sizeof name || !store_digest_ok(at + 1)) {
        cairn_err_set(err, CAIRN_E_INVAL, "invalid reference \"%.100s\"",
                      ref);
        return CAIRN_E_INVAL;
    }
    memcpy(name, ref, n);
    name[n] = '\0';
    char norm[STORE_NAME_MAX + STORE_TAG_MAX + 2];
    int rc = cairn_store_ref_normalize(name, norm, sizeof norm, err);
    if (rc)
        return rc;
    /* The tag ends the normalised name: after the last '/', a ':'. */
    char *slash = strrchr(norm, '/');
    char *colon = strrchr(slash ? slash : norm, ':');
    if (colon)
        *colon = '\0';
    if (snprintf(buf, len, "%s%s", norm, at) >= (int)len) {
        cairn_err_set(err, CAIRN_E_INVAL, "reference too long");
        return CAIRN_E_INVAL;
    }
    return 0;
}

int cairn_store_image_find(struct cairn_store *st, const char *name,
                           struct cairn_image_row *out, struct cairn_err *err)
{
    if (name == NULL || name[0] == '\0')
        return cairn_err_set(err, CAIRN_E_NOTFOUND, "No such image: ");
    char byrepo[STORE_REPO_DIGEST_MAX + 1] = "";
    const char *at = strchr(name, '@');
    if (at) {
        int rrc = repo_digest_name(name, at, byrepo, sizeof byrepo, err);
        if (rrc)
            return rrc;
    }
    struct rowlist rl = {0};
    int rc = rowlist_load(st, &rl);
    if (rc)
        return cairn_err_set(err, rc, "cannot read images: %s",
                             cairn_strerror(rc));
    struct cairn_image_row *hit = NULL;
    for (size_t i = 0; byrepo[0] && i < rl.n && !hit; i++)
        for (size_t t = 0; t < rl.v[i].nrepo_digests && !hit; t++)
            if (strcmp(rl.v[i].repo_digests[t], byrepo) == 0)
                hit = &rl.v[i];
    if (byrepo[0] && !hit) {
        rc = cairn_err_set(err, CAIRN_E_NOTFOUND, "No such image: %s", name);
        goto out;
    }
    /* A full digest names an image by ID or by manifest. */
    if (store_digest_ok(name)) {
        for (size_t i = 0; i < rl.n && !hit; i++)
            if (strcmp(rl.v[i].config_digest, name) == 0 ||
                strcmp(rl.v[i].manifest_digest, name) == 0)
                hit = &rl.v[i];
    }
    /* Then a tag, as docker looks up refs before ID prefixes. */
    char norm[STORE_NAME_MAX + STORE_TAG_MAX + 2];
    if (!hit && cairn_store_ref_normalize(name, norm, sizeof norm, NULL) == 0)
        for (size_t i = 0; i < rl.n && !hit; i++)
            for (size_t t = 0; t < rl.v[i].ntags && !hit; t++)
                if (strcmp(rl.v[i].tags[t], norm) == 0)
                    hit = &rl.v[i];
    /* Then a unique ID prefix. Several manifests may share one config
     * (one image, two compressions); that is still ambiguous here. */
    const char *pfx = strncmp(name, "sha256:", 7) == 0 ? name + 7 : name;
    if (!hit && is_hex_prefix(pfx)) {
        size_t n = strlen(pfx);
        for (size_t i = 0; i < rl.n; i++) {
            if (strncmp(rl.v[i].config_digest + 7, pfx, n) != 0)
                continue;
            if (hit) {
                rc = cairn_err_set(err, CAIRN_E_INVAL,
                                   "%s: ambiguous image ID prefix "
                                   "(matches several images)",
                                   name);
                goto out;
            }
            hit = &rl.v[i];
        }
    }
    if (!hit) {
        rc = cairn_err_set(err, CAIRN_E_NOTFOUND, "No such image: %s", name);
        goto out;
    }
    *out = *hit;
    /* The row's tags and repo digests move to the caller. */
    hit->tags = NULL;
    hit->ntags = 0;
    hit->repo_digests = NULL;
    hit->nrepo_digests = 0;
out:
    rowlist_free(&rl);
    return rc;
}

struct image_drop {
    const char *manifest_digest;
    uint8_t *m; /* CK_SHA256_LEN */
};

static int image_remove_fn(struct cairn_store *st, MDB_txn *txn, void *arg,
                           struct cairn_err *err)
{
    struct image_drop *d = arg;
    MDB_cursor *cur = NULL;
    MDB_val k = {CK_SHA256_LEN, d->m}, v;
    int mrc = mdb_del(txn, st->db_images, &k, NULL);
    if (mrc == 0)
        mrc = mdb_cursor_open(txn, st->db_tags, &cur);
    if (mrc == 0) {
        /* Tags point at images, not the other way round: find them. */
        int c;
        for (c = mdb_cursor_get(cur, &k, &v, MDB_FIRST); c == 0;
             c = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            if (v.mv_size == CK_SHA256_LEN &&
                memcmp(v.mv_data, d->m, CK_SHA256_LEN) == 0 &&
                (mrc = mdb_cursor_del(cur, 0)) != 0)
                break;
        if (mrc == 0 && c != MDB_NOTFOUND)
            mrc = c;
        mdb_cursor_close(cur);
    }
    if (mrc == MDB_NOTFOUND)
        return cairn_err_set(err, CAIRN_E_NOTFOUND, "No such image: %s",
                             d->manifest_digest);
    return mrc ? store_mdb_fail(err, mrc, "remove image") : 0;
}

int cairn_store_image_remove(struct cairn_store *st,
                             const char *manifest_digest, struct cairn_err *err)
{
    uint8_t m[CK_SHA256_LEN];
    if (store_digest_bin(manifest_digest, m))
        return cairn_err_set(err, CAIRN_E_INVAL, "bad manifest digest");
    struct image_drop d = {manifest_digest, m};
    int rc = store_txn_write(st, image_remove_fn, &d, "commit remove", err);
    return rc ? rc : store_index_json_write(st, err);
}

/* ------------------------------------------------------------------ */
/* build results                                                      */

/* Results: the image a build's final key produced, so a build whose every
 * step is cached gives the very same image (as Docker's builder does)
 * instead of a new config with a new time. */
int cairn_store_result_get(struct cairn_store *st, const char *key_hex,
                           char manifest_digest[CAIRN_DIGEST_STR_LEN])
{
    uint8_t k[CK_SHA256_LEN];
    if (store_key_bin(key_hex, k))
        return CAIRN_E_INVAL;
    MDB_val kv = {sizeof k, k};
    char d[CAIRN_DIGEST_STR_LEN] = "";
    size_t n = 0;
    /* One byte short of d: what is copied stays a string; a longer value
     * is not copied, so d stays "" and the result is a miss. */
    int rc = store_get_copy(st, st->db_results, &kv, d, sizeof d - 1, &n);
    if (rc)
        return rc;
    /* The image may have been pruned since: then it is a miss. */
    struct cairn_image_row row;
    memset(&row, 0, sizeof row);
    if (d[0] == '\0' || cairn_store_image_find(st, d, &row, NULL) != 0)
        return CAIRN_E_NOTFOUND;
    cairn_store_image_row_clear(&row);
    memcpy(manifest_digest, d, sizeof d);
    return 0;
}

int cairn_store_result_put(struct cairn_store *st, const char *key_hex,
                           const char *manifest_digest, struct cairn_err *err)
{
    uint8_t k[CK_SHA256_LEN];
    if (store_key_bin(key_hex, k) ||
        strlen(manifest_digest) >= CAIRN_DIGEST_STR_LEN)
        return cairn_err_set(err, CAIRN_E_INVAL, "bad build result");
    MDB_val kv = {sizeof k, k};
    MDB_val v = {strlen(manifest_digest), (void *)manifest_digest};
    return store_write_one(st, st->db_results, &kv, &v, "put result", err);
}
