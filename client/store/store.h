/* The local store under $CAIRN_ROOT (DESIGN.md, "Storage", client part):
 *
 *   oci-layout, index.json, blobs/sha256/<hex>   an OCI image layout that
 *                                                skopeo/umoci/podman read
 *   index/                                       LMDB: key index, tags,
 *                                                images, stat cache
 *   snapshots/<diff_id hex>/                     unpacked layers (overlay
 *                                                lower dirs), made lazily
 *   tmp/                                         staging; same file system
 *
 * Several cairn processes may use one store at once: LMDB serialises
 * writers, blobs and snapshots appear by rename (nothing half-written ever
 * has its final name), index.json is rewritten by rename under a lock,
 * and prune takes an exclusive lock that builds share.
 *
 * Thread-safety: one struct cairn_store may be used by several threads.
 */
#ifndef CAIRN_CLIENT_STORE_H
#define CAIRN_CLIENT_STORE_H

#include "cachekey/statcache.h"
#include "client/store/layer.h"
#include "common/error.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cairn_store;

/* Opens (creating the layout if needed) the store at root. */
int cairn_store_open(const char *root, struct cairn_store **out,
                     struct cairn_err *err);
/* Accepts NULL. */
void cairn_store_close(struct cairn_store *st);

const char *cairn_store_root(const struct cairn_store *st);
/* The LMDB environment (for the stat cache), borrowed. */
MDB_env *cairn_store_env(struct cairn_store *st);
/* Opens the context stat cache kept in the store's index, wired to the
 * index's map: its transactions hold the map's shared lock (so a growth of
 * the map by a store write never runs under a lookup) and a full map grows
 * it (cairn_index_grow). The first one opened on st defers its flushes
 * (ck_statcache_set_defer): its entries go into the store's next write
 * transaction, whichever it is (a build's image commit). *out is the
 * caller's (cairn_store_statcache_close, before cairn_store_close);
 * written only on success. Returns 0 or an error code with err set.
 * Thread-safe as ck_statcache is. */
int cairn_store_statcache_open(struct cairn_store *st,
                               struct ck_statcache **out,
                               struct cairn_err *err);
/* Stops the store's commits carrying sc's entries (waiting for one that
 * does), then ck_statcache_close (which writes what is left). Accepts
 * NULL. */
void cairn_store_statcache_close(struct cairn_store *st,
                                 struct ck_statcache *sc);
/* Directory for temporary files on the store's file system. */
const char *cairn_store_tmpdir(const struct cairn_store *st);

/* Shared (builds) or exclusive (prune) lock on the store; released by
 * cairn_store_unlock or close. Nested calls on one struct count; a call
 * for the other mode while held is CAIRN_E_INVAL. Adding a blob or a
 * snapshot without the lock takes the shared lock, kept until unlock or
 * close. */
int cairn_store_lock(struct cairn_store *st, bool exclusive,
                     struct cairn_err *err);
void cairn_store_unlock(struct cairn_store *st);

/* --- blobs --- */
int cairn_store_blob_path(const struct cairn_store *st, const char *digest,
                          char *buf, size_t len);
bool cairn_store_blob_has(const struct cairn_store *st, const char *digest);
/* Moves the file at tmp_path (in the store's tmpdir) to the blob named
 * digest (already computed by the caller while writing it). An existing
 * blob wins and tmp_path is removed. */
int cairn_store_blob_add_file(struct cairn_store *st, const char *tmp_path,
                              const char *digest, struct cairn_err *err);
/* Stores bytes; writes their digest ("sha256:...") into digest. */
int cairn_store_blob_add_data(struct cairn_store *st, const void *data,
                              size_t len, char digest[CAIRN_DIGEST_STR_LEN],
                              struct cairn_err *err);
/* cairn_store_blob_add_data of data[i] (len[i] bytes) for i < n (at most
 * CAIRN_STORE_BLOBS_AT_ONCE), digest[i] written for each: the files are
 * written first and fsync'd together (a device cache flush each on a
 * file system without a journal, and flushes that overlap are merged),
 * then renamed. The rule is blob_add_file's: no final name before its
 * content is on disk. On failure nothing new is left under a final name
 * that was not complete, and digests are not written. */
#define CAIRN_STORE_BLOBS_AT_ONCE 8
int cairn_store_blobs_add_data(struct cairn_store *st, size_t n,
                               const void *const data[], const size_t len[],
                               char digest[][CAIRN_DIGEST_STR_LEN],
                               struct cairn_err *err);
/* Reads a blob of at most max bytes and verifies its digest
 * (CAIRN_E_DIGEST on mismatch). *data malloc'd, NUL-terminated. */
int cairn_store_blob_read(struct cairn_store *st, const char *digest,
                          size_t max, char **data, size_t *len,
                          struct cairn_err *err);

/* --- the local cache key index --- */
struct cairn_layer_rec {
    bool empty; /* the step changed nothing: no layer */
    struct cairn_layer_desc layer;
};
/* CAIRN_E_NOTFOUND when key_hex is not indexed or its blob is gone.
 * key_hex is 64 hex digits; a layer's media_type must be one of the
 * CAIRN_MEDIA_*LAYER* types (CAIRN_E_INVAL otherwise). On success *out
 * is filled; its media_type points at a static string. */
int cairn_store_key_get(struct cairn_store *st, const char *key_hex,
                        struct cairn_layer_rec *out);
int cairn_store_key_put(struct cairn_store *st, const char *key_hex,
                        const struct cairn_layer_rec *rec,
                        struct cairn_err *err);
/* cairn_store_key_put of key_hex[i] -> rec[i] for i < n, in one
 * transaction (one disk flush instead of n): all are recorded or none.
 * The arrays are borrowed for the call. */
int cairn_store_key_put_many(struct cairn_store *st,
                             const char *const key_hex[],
                             const struct cairn_layer_rec *const rec[],
                             size_t n, struct cairn_err *err);

/* cairn_store_key_put_many without a commit of its own: the records wait
 * in memory (cairn_store_key_get sees them) and ride along with the
 * store's next commit, whichever it is (a build's image), or are
 * committed by cairn_store_keys_commit, by the cairn_store_unlock that
 * drops the lock, or at close, whichever comes first. Each layer's blob
 * must be in the store already (cairn_store_blob_add_file); the commit
 * that records them fsyncs blobs/sha256 first, as key_put_many does. At
 * most CAIRN_STORE_PENDING_MAX wait: more commit the waiting ones first.
 * A crash before the commit loses only the records (the blobs are
 * unreferenced, as after a crash before key_put_many). Thread-safe. */
#define CAIRN_STORE_PENDING_MAX 4096
int cairn_store_key_put_later(struct cairn_store *st,
                              const char *const key_hex[],
                              const struct cairn_layer_rec *const rec[],
                              size_t n, struct cairn_err *err);
/* Commits the records key_put_later left waiting (none: returns 0 at
 * once). On failure they stay waiting for the next try. */
int cairn_store_keys_commit(struct cairn_store *st, struct cairn_err *err);

/* The image (manifest digest) a build's final key produced. get returns
 * CAIRN_E_NOTFOUND when unknown or when that image is gone. */
int cairn_store_result_get(struct cairn_store *st, const char *key_hex,
                           char manifest_digest[CAIRN_DIGEST_STR_LEN]);
int cairn_store_result_put(struct cairn_store *st, const char *key_hex,
                           const char *manifest_digest, struct cairn_err *err);

/* --- the last build of each tag (--explain, client/engine/explain.h) --- */
#define CAIRN_STORE_LASTBUILD_MAX (16u << 20)
/* Stores an opaque record (at most CAIRN_STORE_LASTBUILD_MAX bytes, else
 * CAIRN_E_TOOBIG) under ref, normalised as cairn_store_ref_normalize
 * does, replacing the previous one. */
int cairn_store_lastbuild_put(struct cairn_store *st, const char *ref,
                              const void *data, size_t len,
                              struct cairn_err *err);
/* Reads the record of ref: *data malloc'd (the caller frees it).
 * CAIRN_E_NOTFOUND when there is none. */
int cairn_store_lastbuild_get(struct cairn_store *st, const char *ref,
                              char **data, size_t *len,
                              struct cairn_err *err);
/* Removes the record of ref; none is not an error. */
int cairn_store_lastbuild_remove(struct cairn_store *st, const char *ref,
                                 struct cairn_err *err);

/* --- images and tags --- */
struct cairn_image_row {
    char manifest_digest[CAIRN_DIGEST_STR_LEN];
    char config_digest[CAIRN_DIGEST_STR_LEN]; /* the image ID */
    int64_t created; /* seconds */
    int64_t size;    /* sum of layer blob sizes */
    char **tags;     /* "repo:tag", NULL-terminated; borrowed during the
                        callback only */
    size_t ntags;
    /* Repo digests, "name@sha256:..." (the manifest or index digest a
     * registry served, name in the tags' form): filled by find and each
     * like tags; given to image_add (borrowed), they are added to the
     * image's, which a later add without them keeps. */
    char **repo_digests;
    size_t nrepo_digests;
    /* cairn_store_image_add only (the rest ignore them): records that
     * go in the image's own transaction, so a build pays one commit (one
     * disk flush) for its image, tags, result and --explain record. */
    const char *result_key; /* when set: cairn_store_result_put of
                               result_key -> this manifest */
    const void *lastbuild;  /* when set: the last build of every tag,
                               as cairn_store_lastbuild_put */
    size_t lastbuild_len;
    bool lastbuild_drop; /* when set (and lastbuild is not): every tag's
                            last build is removed instead */
};
/* Records an image whose manifest, config and layer blobs are stored
 * (each is read back and verified; a missing one is CAIRN_E_NOTFOUND).
 * The config digest, size and layers are taken from the manifest;
 * row->config_digest, when not empty, must match it. row->created <= 0
 * takes the config's "created". Tags in row->tags (may be NULL) are
 * applied as by cairn_store_tag; result_key and lastbuild are recorded
 * in the same transaction (all or nothing; a lastbuild over
 * CAIRN_STORE_LASTBUILD_MAX is CAIRN_E_TOOBIG and records nothing).
 * Callers hold the store lock (shared)
 * from their first blob until this returns, so prune cannot take the
 * blobs away in between. */
int cairn_store_image_add(struct cairn_store *st,
                          const struct cairn_image_row *row,
                          struct cairn_err *err);
/* Points ref ("name[:tag]", tag defaults to "latest") at an image; the
 * image that had it keeps its other tags or becomes dangling. Rewrites
 * index.json. */
int cairn_store_tag(struct cairn_store *st, const char *ref,
                    const char *manifest_digest, struct cairn_err *err);
int cairn_store_untag(struct cairn_store *st, const char *ref,
                      struct cairn_err *err);
/* Finds an image by ref, full "sha256:..." id or manifest digest, a
 * repo digest ("name@sha256:...", the name as cairn_store_ref_normalize
 * writes it; a tag beside the digest is ignored, as Docker does), or a
 * unique id prefix (as docker accepts). CAIRN_E_NOTFOUND otherwise;
 * CAIRN_E_INVAL for a prefix that matches several images. On success
 * out->tags and out->repo_digests are malloc'd and owned by the caller:
 * release them with cairn_store_image_row_clear. */
int cairn_store_image_find(struct cairn_store *st, const char *name,
                           struct cairn_image_row *out,
                           struct cairn_err *err);
/* Frees the tags of a row filled by cairn_store_image_find. Accepts NULL. */
void cairn_store_image_row_clear(struct cairn_image_row *row);

/* Writes into buf the stored form of ref, as docker normalises it:
 * "name" -> "name:latest", "docker.io/library/x" -> "x". Refuses
 * uppercase repositories and bad tags (CAIRN_E_INVAL) and digests
 * (CAIRN_E_UNSUPPORTED). */
int cairn_store_ref_normalize(const char *ref, char *buf, size_t len,
                              struct cairn_err *err);
/* Calls fn for every image, newest first. */
int cairn_store_image_each(struct cairn_store *st,
                           int (*fn)(void *arg,
                                     const struct cairn_image_row *row),
                           void *arg);
/* Removes an image record (and its tags). Blobs go at the next prune. */
int cairn_store_image_remove(struct cairn_store *st,
                             const char *manifest_digest,
                             struct cairn_err *err);

/* --- snapshots --- */
/* Writes into path the snapshot directory of layer, unpacking its blob
 * first when missing (verified against diff_id). Unpacks into tmp/ and
 * renames; when another process wins the rename, ours is discarded. */
int cairn_store_snapshot(struct cairn_store *st,
                         const struct cairn_layer_desc *layer, char *path,
                         size_t len, struct cairn_err *err);
/* Snapshots made by their writer (a COPY mirrors its layer while writing
 * it, cairn_layer_writer_mirror) go through the same staging:
 * cairn_store_snapshot_stage creates an empty directory tmp/snap-XXXXXX
 * (mode 0755, the root of a layer) and writes its path into buf (len
 * bytes); the caller fills it, then either hands it to
 * cairn_store_snapshot_adopt or removes it with
 * cairn_store_snapshot_discard. A crash in between leaves it in tmp/,
 * where the next prune removes it; it is never used under its final
 * name unless complete. */
int cairn_store_snapshot_stage(struct cairn_store *st, char *buf, size_t len,
                               struct cairn_err *err);
/* Renames dir, a staging directory holding the complete unpacked tree of
 * layer, to the layer's snapshot name (never replacing: when that exists
 * already, dir is removed and the existing one used) and writes the final
 * path into path (len bytes). On failure dir is removed too. */
int cairn_store_snapshot_adopt(struct cairn_store *st,
                               const struct cairn_layer_desc *layer,
                               const char *dir, char *path, size_t len,
                               struct cairn_err *err);
/* Removes a staging directory and everything in it (best effort; a NULL
 * or empty dir is ignored). */
void cairn_store_snapshot_discard(struct cairn_store *st, const char *dir);

/* --- space --- */
struct cairn_store_usage {
    uint64_t images, images_bytes;       /* bytes of blobs images use */
    uint64_t layers, layer_bytes;        /* layer blobs */
    uint64_t snapshots, snapshot_bytes;  /* unpacked */
    uint64_t keys, index_bytes;          /* key index entries; LMDB file */
    uint64_t reclaimable_bytes;          /* what prune would free */
    /* "Active" is what survives a prune (tagged images, layers they or a
     * surviving key use, snapshots of those layers, keys whose layer
     * survives); "reclaimable" is what prune frees of each kind. */
    uint64_t images_active, images_reclaimable;
    uint64_t layers_active, layers_reclaimable;
    uint64_t snapshots_active, snapshots_reclaimable;
    uint64_t keys_active;
};
int cairn_store_usage_get(struct cairn_store *st,
                          struct cairn_store_usage *out,
                          struct cairn_err *err);
/* Removes dangling images (no tag), then every blob, snapshot and key
 * index entry no remaining image or key needs... see store_prune.c for
 * the exact rule. *reclaimed gets the bytes freed. */
int cairn_store_prune(struct cairn_store *st, uint64_t *reclaimed,
                      struct cairn_err *err);
/* Same, and calls on_image (may be NULL) with the ID ("sha256:...") of
 * every image removed, after the removal is committed. Takes the
 * exclusive lock for its duration (waiting for builds to finish); a
 * shared lock this struct held is converted and given back after. */
int cairn_store_prune_with(struct cairn_store *st,
                           void (*on_image)(void *arg, const char *id),
                           void *arg, uint64_t *reclaimed,
                           struct cairn_err *err);

#endif
