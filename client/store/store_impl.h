/* What the files of the local store (client/store/store*.c) share and
 * nobody else sees: the store's struct, the records read back from LMDB,
 * the transaction helper, and the helpers images, tags and prune need.
 * Private to those files. */
#ifndef CAIRN_CLIENT_STORE_STORE_IMPL_H
#define CAIRN_CLIENT_STORE_STORE_IMPL_H

#include "cachekey/digest.h"
#include "client/store/image.h"
#include "client/store/index.h"
#include "client/store/store.h"
#include "common/buf.h"
#include "common/error.h"

#include <jansson.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_PATH_MAX 4096

enum lock_mode { LOCK_NONE, LOCK_SHARED, LOCK_EXCL };

/* Key records waiting for the store's next commit
 * (cairn_store_key_put_later; store_records.c). */
struct store_pending;

struct cairn_store {
    char *root;
    char *tmpdir;
    struct cairn_index *idx;
    MDB_env *env; /* borrowed from idx */
    MDB_dbi db_keys, db_tags, db_images, db_results, db_lastbuild;
    MDB_dbi db_members; /* client/store/store_members.c */

    pthread_mutex_t lock_mu; /* guards the lock_* fields */
    int lock_fd;             /* root/store.lock */
    enum lock_mode lock_mode;
    unsigned lock_depth;
    /* A blob was renamed into blobs/sha256 and the directory not fsync'd
     * since (blobs_sync). Set by fetch threads, hence atomic. */
    atomic_bool blobs_unsynced;
    pthread_mutex_t pending_mu; /* guards pending */
    struct store_pending *pending; /* NULL until a key waits */
    /* The stat cache whose entries ride in every write transaction
     * (cairn_store_statcache_open); sc_mu is held from its put to its
     * done, so that cairn_store_statcache_close waits for it. */
    pthread_mutex_t sc_mu;
    struct ck_statcache *sc;
    /* Closes the index.json an index.json write replaced (store_index_json.c);
     * joined by the next write and by cairn_store_close. */
    pthread_t json_release;
    bool json_release_live;
};

/* What the store remembers of an image, as JSON in the images database:
 * {"mediaType","size" (of the manifest),"config","created","bytes",
 *  "layers":[digest...],"diffIds":[digest...],"repoDigests":[...]}
 * (repoDigests only when the image came from a registry). Layers and diff_ids are
 * kept so prune and usage never parse blobs. */
struct imgrec {
    uint8_t manifest[CK_SHA256_LEN];
    char media_type[128];
    int64_t manifest_size;
    char config[CAIRN_DIGEST_STR_LEN];
    int64_t created;
    int64_t bytes;
    json_t *layers;   /* owned array of digest strings */
    json_t *diff_ids; /* owned array of digest strings */
    json_t *repo_digests; /* owned array of "name@sha256:..."; may be NULL */
};

/* One tag: the stored ref and the manifest it points at. */
struct tagent {
    char *ref;
    uint8_t manifest[CK_SHA256_LEN];
};

struct taglist {
    struct tagent *v;
    size_t n;
};

/* The one translation of LMDB's codes into ours. */
int store_mdb_err(int mrc);

int store_mdb_fail(struct cairn_err *err, int mrc, const char *what);

/* The work of one write transaction: fn runs inside txn and returns 0
 * or a CAIRN_E_* code with err set (its LMDB errors through
 * store_mdb_fail). fn may run more than once (see store_txn_write): what
 * an aborted run left in arg, it clears first. */
typedef int (*store_txn_fn)(struct cairn_store *st, MDB_txn *txn, void *arg,
                            struct cairn_err *err);

/* Runs fn in a write transaction: commits it when fn returns 0, aborts it
 * otherwise. A transaction that found the map full (CAIRN_E_FULL) runs
 * again after the map doubled (client/store/index.c). what names the
 * commit in its error. Returns 0, fn's code, or an LMDB or growth error
 * (err says which). */
int store_txn_write(struct cairn_store *st, store_txn_fn fn, void *arg,
                    const char *what, struct cairn_err *err);

/* Commits the keys cairn_store_key_put_later left waiting, if any, in a
 * transaction of their own. Returns 0 or the commit's error (the keys
 * then stay waiting). */
int store_pending_commit(struct cairn_store *st, struct cairn_err *err);

/* Frees what still waits (at close, after the last commit). */
void store_pending_free(struct cairn_store *st);

/* Deletes, in txn (a write txn), every member table entry whose blob
 * keep(arg, sha256) does not keep, and every entry it cannot read
 * (client/store/store_members.c). Returns 0 or store_mdb_err's code. */
int store_members_prune(struct cairn_store *st, MDB_txn *txn,
                        bool (*keep)(void *arg, const uint8_t blob[32]),
                        void *arg);

/* Opens (creating) the store's databases into st's db_* handles. */
int store_dbs_open(struct cairn_store *st, struct cairn_err *err);

/* Copies the value of k in dbi into buf (cap bytes) in a read
 * transaction of its own; *len gets the value's size, also when it is
 * over cap (then nothing is copied). Returns 0, CAIRN_E_NOTFOUND or
 * store_mdb_err's code; *len written only on success. */
int store_get_copy(struct cairn_store *st, MDB_dbi dbi, const MDB_val *k,
                   void *buf, size_t cap, size_t *len);

/* A cache key's 64 lowercase hex digits into k. Returns 0 or
 * CAIRN_E_INVAL (NULL, wrong length, not hex). */
int store_key_bin(const char *key_hex, uint8_t k[CK_SHA256_LEN]);

int store_path_fmt(char *buf, size_t len, const char *a, const char *b,
                   const char *c);

int store_digest_bin(const char *d, uint8_t bin[CK_SHA256_LEN]);

/* Walks the tree at dirfd/name (not following symlinks), adding the size
 * of everything but directories to *bytes, and removes it when remove is
 * set. Directories without owner rwx (a layer may have r-x ones) are
 * opened up first, as rm -rf would. Best effort: returns the first
 * error but keeps going. */
int store_tree_walk(int dirfd, const char *name, bool remove, uint64_t *bytes,
                    int depth);

int store_flock_mode(int fd, enum lock_mode m);

/* rename that never replaces: an existing final name wins. Returns 0,
 * CAIRN_E_EXISTS or -errno. */
int store_rename_noreplace(const char *from, const char *to);

/* Creates a file in tmp/ holding data, mode 0644, fsync'd when durable is
 * set (a caller that hands it to cairn_store_blob_add_file, which fsyncs
 * it, passes false). path (plen bytes) gets its name. Returns 0,
 * CAIRN_E_TOOBIG or -errno; nothing is left behind on failure. */
int store_tmp_write(const struct cairn_store *st, const char *prefix,
                    const void *data, size_t len, bool durable, char *path,
                    size_t plen);

int store_keyrec_unpack(const MDB_val *v, struct cairn_layer_rec *r);

void store_imgrec_clear(struct imgrec *r);

int store_imgrec_decode(const MDB_val *k, const MDB_val *v, struct imgrec *r);

void store_taglist_free(struct taglist *t);

/* Reads every tag, in ref order (the database's). */
int store_taglist_load(struct cairn_store *st, MDB_txn *txn,
                       struct taglist *out);

/* Called for each image record with every tag (both borrowed for the
 * call); returns 0 to go on, else the code store_images_each returns. */
typedef int (*store_image_fn)(void *arg, const struct imgrec *r,
                              const struct taglist *tags);

/* Calls fn for every readable image record, in manifest digest order, in
 * one read transaction. Returns 0, fn's code or store_mdb_err's. */
int store_images_each(struct cairn_store *st, store_image_fn fn, void *arg);

/* Opens root/index.lock and takes it exclusively. Returns the fd or
 * -errno. */
int store_index_lock(struct cairn_store *st);

/* Rewrites index.json from LMDB. The state is read after the lock is
 * taken, so whichever writer renames last wrote the newest state: two
 * processes that change tags at once cannot lose each other's change. */
int store_index_json_write(struct cairn_store *st, struct cairn_err *err);
/* Waits until the index.json a write replaced is let go of (its blocks
 * freed). Called by cairn_store_close. */
void store_index_json_release_wait(struct cairn_store *st);

/* Repo digests of one image: each "name@sha256:...", at most this
 * long and this many (the oldest are dropped past it). */
#define STORE_REPO_DIGEST_MAX 512
#define STORE_REPO_DIGESTS_MAX 32
bool store_repo_digest_ok(const char *s);

/* Docker's limits: 255 for the repository name, 128 for the tag. */
#define STORE_NAME_MAX 255
#define STORE_TAG_MAX 128

/* The fully qualified form of a stored ref ("x:1" ->
 * "docker.io/library/x:1"), as containerd writes io.containerd.image.name,
 * appended to out. Returns 0 or the buffer's error. */
int store_ref_full(const char *ref, struct cairn_buf *out);

/* One put (v not NULL) or delete (v NULL) of k in dbi, in its own write
 * transaction; what names the record in errors. A delete of a missing
 * key returns CAIRN_E_NOTFOUND without touching err: the caller decides
 * whether that is an error. */
int store_write_one(struct cairn_store *st, MDB_dbi dbi, MDB_val *k, MDB_val *v,
                    const char *what, struct cairn_err *err);

/* "sha256:" + 64 lowercase hex; *hex points at the hex part. */
bool store_digest_ok(const char *d);

void store_digest_str(const uint8_t bin[CK_SHA256_LEN],
                      char out[CAIRN_DIGEST_STR_LEN]);

/* Makes the names of the blobs added since the last call durable: one
 * fsync of blobs/sha256 for all of them. Called before any commit that
 * can name a blob (key_put_many, image_add) and at close, so a record
 * never names a blob that a power loss could take away; the blob's
 * content was fsync'd before its rename (blob_add_file). */
void store_blobs_sync(struct cairn_store *st);

/* Last builds: tag -> an opaque record (client/engine/explain.c). Keyed by the
 * normalised ref so "app" and "app:latest" are one tag, as for images. */
int store_lastbuild_key(const char *ref, char *buf, size_t len,
                        struct cairn_err *err);

char *store_imgrec_encode(const struct imgrec *r, size_t *len);

/* Fills r from the manifest and config blobs (both verified), checking
 * that every layer blob is present. */
int store_imgrec_from_blobs(struct cairn_store *st, const char *manifest,
                            struct imgrec *r, struct cairn_err *err);

#endif
