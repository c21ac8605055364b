/* Prune and usage of the local store (client/store/store.h); the rest of
 * the store is client/store/store*.c (client/store/README.md).
 *
 * Prune rule (the one place that deletes):
 *   1. Under the exclusive store lock (so no build is between writing a
 *      blob and recording what references it), in one LMDB write
 *      transaction: remove every image record without a tag; the blobs
 *      to keep, K, are the manifest, config and layers of every image
 *      left; remove every key index entry whose layer blob is not in K
 *      (entries for empty steps stay); the snapshots to keep, D, are the
 *      diff_ids of the layers of the images left and of the key entries
 *      left; remove every member table entry whose blob is not in K.
 *      Commit.
 *   2. Then delete every blob not in K, every snapshot not in D, and
 *      everything in tmp/ (leftovers of crashed processes: with the
 *      exclusive lock and the index.json lock held, nobody else is
 *      writing there). A crash during step 2 only leaves unreferenced
 *      files, which the next prune removes.
 *
 * Usage (`cairn du`) computes the same sets without deleting anything:
 * what survives a prune is "active", the rest "reclaimable".
 */
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
/* prune and usage                                                      */

/* A set of sha256 digests: sorted array after digset_seal. */
struct digset {
    uint8_t (*v)[CK_SHA256_LEN];
    size_t n, alloc;
};

static int digset_add(struct digset *s, const uint8_t d[CK_SHA256_LEN])
{
    if (s->n == s->alloc) {
        size_t na = s->alloc ? s->alloc * 2 : 64;
        void *nv = realloc(s->v, na * sizeof *s->v);
        if (nv == NULL)
            return CAIRN_E_NOMEM;
        s->v = nv;
        s->alloc = na;
    }
    memcpy(s->v[s->n++], d, CK_SHA256_LEN);
    return 0;
}

static int digset_add_str(struct digset *s, const char *d)
{
    uint8_t b[CK_SHA256_LEN];
    return store_digest_bin(d, b) ? 0 : digset_add(s, b);
}

static int digset_add_array(struct digset *s, const json_t *a)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (digset_add_str(s, json_string_value(v)))
            return CAIRN_E_NOMEM;
    }
    return 0;
}

static int cmp_dig(const void *a, const void *b)
{
    return memcmp(a, b, CK_SHA256_LEN);
}

static void digset_seal(struct digset *s)
{
    if (s->n > 1)
        qsort(s->v, s->n, sizeof *s->v, cmp_dig);
}

static bool digset_has(const struct digset *s, const uint8_t d[CK_SHA256_LEN])
{
    return s->n && bsearch(d, s->v, s->n, sizeof *s->v, cmp_dig) != NULL;
}

static void digset_free(struct digset *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* What prune keeps and drops, computed in one transaction. */
struct plan {
    struct digset keep_blobs;     /* K */
    struct digset keep_diffs;     /* D */
    struct digset all_image;      /* blobs any image uses */
    struct digset all_layers;     /* layer blobs of any image or key */
    struct digset drop_images;    /* manifests of dangling images */
    struct cairn_strvec drop_ids; /* their IDs */
    uint64_t images, images_active, keys, keys_active;
};

static void plan_free(struct plan *p)
{
    digset_free(&p->keep_blobs);
    digset_free(&p->keep_diffs);
    digset_free(&p->all_image);
    digset_free(&p->all_layers);
    digset_free(&p->drop_images);
    cairn_strvec_free(&p->drop_ids);
}

/* Computes the plan; with apply, also deletes the dangling image records
 * and the key entries that lose their layer, in txn (a write txn). */
static int plan_make(struct cairn_store *st, MDB_txn *txn, bool apply,
                     struct plan *p)
{
    struct digset tagged = {0};
    struct taglist tags = {0};
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int mrc, rc = store_taglist_load(st, txn, &tags);
    for (size_t i = 0; i < tags.n && !rc; i++)
        rc = digset_add(&tagged, tags.v[i].manifest);
    digset_seal(&tagged);

    /* Images: tagged ones are kept with all they reference. */
    if (!rc)
        rc = store_mdb_err(mdb_cursor_open(txn, st->db_images, &cur));
    for (mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
         mrc == 0 && !rc; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct imgrec r;
        if (store_imgrec_decode(&k, &v, &r))
            continue; /* unreadable: kept, and its blobs go */
        p->images++;
        bool keep = digset_has(&tagged, r.manifest);
        if (!rc)
            rc = digset_add(&p->all_image, r.manifest);
        if (!rc)
            rc = digset_add_str(&p->all_image, r.config);
        if (!rc)
            rc = digset_add_array(&p->all_image, r.layers);
        if (!rc)
            rc = digset_add_array(&p->all_layers, r.layers);
        if (keep) {
            p->images_active++;
            if (!rc)
                rc = digset_add(&p->keep_blobs, r.manifest);
            if (!rc)
                rc = digset_add_str(&p->keep_blobs, r.config);
            if (!rc)
                rc = digset_add_array(&p->keep_blobs, r.layers);
            if (!rc)
                rc = digset_add_array(&p->keep_diffs, r.diff_ids);
        } else {
            if (!rc)
                rc = digset_add(&p->drop_images, r.manifest);
            if (!rc)
                rc = cairn_strvec_push(&p->drop_ids, r.config);
            if (!rc && apply)
                rc = store_mdb_err(mdb_cursor_del(cur, 0));
        }
        store_imgrec_clear(&r);
    }
    if (!rc && mrc != MDB_NOTFOUND)
        rc = store_mdb_err(mrc);
    if (cur)
        mdb_cursor_close(cur);
    cur = NULL;
    digset_seal(&p->keep_blobs);

    /* Keys: kept when their layer is; their diff_id keeps a snapshot. */
    if (!rc)
        rc = store_mdb_err(mdb_cursor_open(txn, st->db_keys, &cur));
    for (mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
         mrc == 0 && !rc; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct cairn_layer_rec r;
        uint8_t lb[CK_SHA256_LEN];
        p->keys++;
        /* A record we cannot read is dropped: it could only miss. */
        bool ok = store_keyrec_unpack(&v, &r) == 0;
        bool has_layer =
            ok && !r.empty && store_digest_bin(r.layer.digest, lb) == 0;
        bool keep =
            ok && (r.empty || (has_layer && digset_has(&p->keep_blobs, lb)));
        if (has_layer)
            rc = digset_add(&p->all_layers, lb);
        if (keep) {
            p->keys_active++;
            if (!rc && !r.empty)
                rc = digset_add_str(&p->keep_diffs, r.layer.diff_id);
        } else if (!rc && apply) {
            rc = store_mdb_err(mdb_cursor_del(cur, 0));
        }
    }
    if (!rc && mrc != MDB_NOTFOUND)
        rc = store_mdb_err(mrc);
    if (cur)
        mdb_cursor_close(cur);
    digset_seal(&p->keep_diffs);
    digset_seal(&p->all_image);
    digset_seal(&p->all_layers);
    digset_seal(&p->drop_images);
    digset_free(&tagged);
    store_taglist_free(&tags);
    return rc;
}

/* Visits the entries of root/sub: fn gets the directory fd, the entry
 * name and its decoded digest (NULL when the name is not 64 hex). */
static int dir_each(const struct cairn_store *st, const char *sub,
                    int (*fn)(void *arg, int dfd, const char *name,
                              const uint8_t *bin),
                    void *arg)
{
    char p[STORE_PATH_MAX];
    if (store_path_fmt(p, sizeof p, st->root, sub, NULL))
        return CAIRN_E_TOOBIG;
    DIR *d = opendir(p);
    if (d == NULL)
        return errno == ENOENT ? 0 : -errno;
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        uint8_t bin[CK_SHA256_LEN];
        bool hex = strlen(de->d_name) == CK_SHA256_HEX_LEN &&
                   ck_hex_decode(de->d_name, bin) == 0;
        rc = fn(arg, dirfd(d), de->d_name, hex ? bin : NULL);
    }
    closedir(d);
    return rc;
}

struct sweep {
    const struct plan *p;
    bool apply;
    struct cairn_store_usage *u;
    uint64_t freed;
    int first_err;
};

static int sweep_blob(void *arg, int dfd, const char *name, const uint8_t *bin)
{
    struct sweep *s = arg;
    struct stat sb;
    /* Names that are not digests are not ours to judge; leave them. */
    if (bin == NULL || fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        return 0;
    uint64_t sz = (uint64_t)sb.st_size;
    bool keep = digset_has(&s->p->keep_blobs, bin);
    bool img = digset_has(&s->p->all_image, bin);
    bool layer = digset_has(&s->p->all_layers, bin);
    if (s->u) {
        if (img)
            s->u->images_bytes += sz;
        if (img && !keep)
            s->u->images_reclaimable += sz;
        if (layer) {
            s->u->layers++;
            s->u->layer_bytes += sz;
            if (keep)
                s->u->layers_active++;
            else
                s->u->layers_reclaimable += sz;
        }
        if (!keep)
            s->u->reclaimable_bytes += sz;
    }
    if (!keep && s->apply) {
        if (unlinkat(dfd, name, 0) == 0)
            s->freed += sz;
        else if (!s->first_err && errno != ENOENT)
            s->first_err = -errno;
    }
    return 0;
}

static int sweep_snapshot(void *arg, int dfd, const char *name,
                          const uint8_t *bin)
{
    struct sweep *s = arg;
    if (bin == NULL)
        return 0;
    bool keep = digset_has(&s->p->keep_diffs, bin);
    uint64_t sz = 0;
    int rc = store_tree_walk(dfd, name, s->apply && !keep, &sz, 0);
    if (rc && !s->first_err)
        s->first_err = rc;
    if (s->u) {
        s->u->snapshots++;
        s->u->snapshot_bytes += sz;
        if (keep)
            s->u->snapshots_active++;
        else {
            s->u->snapshots_reclaimable += sz;
            s->u->reclaimable_bytes += sz;
        }
    }
    if (s->apply && !keep)
        s->freed += sz;
    return 0;
}

/* Everything in tmp/ is a leftover when prune runs (see the top). */
static int sweep_tmp(void *arg, int dfd, const char *name, const uint8_t *bin)
{
    struct sweep *s = arg;
    (void)bin;
    uint64_t sz = 0;
    int rc = store_tree_walk(dfd, name, s->apply, &sz, 0);
    if (rc && !s->first_err)
        s->first_err = rc;
    if (s->u)
        s->u->reclaimable_bytes += sz;
    if (s->apply)
        s->freed += sz;
    return 0;
}

int cairn_store_usage_get(struct cairn_store *st, struct cairn_store_usage *out,
                          struct cairn_err *err)
{
    struct plan p;
    memset(&p, 0, sizeof p);
    struct cairn_store_usage u;
    memset(&u, 0, sizeof u);
    MDB_txn *txn;
    int mrc = cairn_index_txn_begin(st->idx, MDB_RDONLY, &txn);
    if (mrc)
        return store_mdb_fail(err, mrc, "begin");
    int rc = plan_make(st, txn, false, &p);
    cairn_index_txn_abort(st->idx, txn);
    if (rc) {
        plan_free(&p);
        return cairn_err_set(err, rc, "cannot read the store index: %s",
                             cairn_strerror(rc));
    }
    u.images = p.images;
    u.images_active = p.images_active;
    u.keys = p.keys;
    u.keys_active = p.keys_active;
    struct sweep s = {.p = &p, .apply = false, .u = &u};
    rc = dir_each(st, "/blobs/sha256", sweep_blob, &s);
    if (!rc)
        rc = dir_each(st, "/snapshots", sweep_snapshot, &s);
    if (!rc)
        rc = dir_each(st, "/tmp", sweep_tmp, &s);
    plan_free(&p);
    if (rc)
        return cairn_err_set(err, rc, "cannot read %s: %s", st->root,
                             cairn_strerror(rc));
    char dbfile[STORE_PATH_MAX];
    struct stat sb;
    store_path_fmt(dbfile, sizeof dbfile, st->root, "/index/data.mdb", NULL);
    if (stat(dbfile, &sb) == 0)
        u.index_bytes = (uint64_t)sb.st_size;
    *out = u;
    return 0;
}

/* Whether prune keeps the blob (arg: the plan's K). */
static bool keep_blob(void *arg, const uint8_t blob[32])
{
    return digset_has(arg, blob);
}

/* Deletes the records prune drops, in one write transaction; arg (a
 * struct plan) gets the plan, made afresh each time the transaction runs. */
static int prune_fn(struct cairn_store *st, MDB_txn *txn, void *arg,
                    struct cairn_err *err)
{
    struct plan *p = arg;
    plan_free(p);
    memset(p, 0, sizeof *p);
    int rc = plan_make(st, txn, true, p);
    if (!rc)
        rc = store_members_prune(st, txn, keep_blob, &p->keep_blobs);
    return rc ? cairn_err_set(err, rc, "prune: %s", cairn_strerror(rc)) : 0;
}

int cairn_store_prune_with(struct cairn_store *st,
                           void (*on_image)(void *arg, const char *id),
                           void *arg, uint64_t *reclaimed,
                           struct cairn_err *err)
{
    /* Take the exclusive lock (converting a shared one this struct
     * holds); builds hold the shared lock, so none is between writing a
     * blob and recording what references it while prune runs. */
    pthread_mutex_lock(&st->lock_mu);
    enum lock_mode prev = st->lock_mode;
    int rc = prev == LOCK_EXCL ? 0 : store_flock_mode(st->lock_fd, LOCK_EXCL);
    if (!rc)
        st->lock_mode = LOCK_EXCL;
    pthread_mutex_unlock(&st->lock_mu);
    if (rc)
        return cairn_err_set(err, rc, "cannot lock the store: %s",
                             cairn_strerror(rc));

    struct plan p;
    memset(&p, 0, sizeof p);
    int ifd = -1;
    rc = store_txn_write(st, prune_fn, &p, "commit prune", err);
    if (rc)
        goto out;
    /* Commits do not wait for their meta page (client/store/index.c), so make
     * this one durable before deleting what it stopped referencing: a
     * power loss must not bring back records that name deleted files. */
    rc = cairn_index_sync(st->idx);
    if (rc) {
        rc = cairn_err_set(err, rc, "prune: cannot sync the index: %s",
                           cairn_strerror(rc));
        goto out;
    }
    for (size_t i = 0; on_image && i < p.drop_ids.n; i++)
        on_image(arg, p.drop_ids.v[i]);

    /* The records are gone; now the files nothing references. */
    struct sweep s = {.p = &p, .apply = true};
    rc = dir_each(st, "/blobs/sha256", sweep_blob, &s);
    if (!rc)
        rc = dir_each(st, "/snapshots", sweep_snapshot, &s);
    /* index.json writers stage in tmp/ under index.lock without the
     * store lock (tag, rmi): hold it while emptying tmp/. */
    ifd = store_index_lock(st);
    if (!rc && ifd >= 0)
        rc = dir_each(st, "/tmp", sweep_tmp, &s);
    if (ifd >= 0)
        close(ifd);
    if (!rc)
        rc = s.first_err;
    if (rc) {
        rc = cairn_err_set(err, rc, "prune: cannot remove files: %s",
                           cairn_strerror(rc));
        goto out;
    }
    rc = store_index_json_write(st, err);
    if (!rc && reclaimed)
        *reclaimed = s.freed;
out:
    plan_free(&p);
    pthread_mutex_lock(&st->lock_mu);
    if (prev != LOCK_EXCL)
        store_flock_mode(st->lock_fd, prev);
    st->lock_mode = prev;
    pthread_mutex_unlock(&st->lock_mu);
    return rc;
}

int cairn_store_prune(struct cairn_store *st, uint64_t *reclaimed,
                      struct cairn_err *err)
{
    return cairn_store_prune_with(st, NULL, NULL, reclaimed, err);
}
